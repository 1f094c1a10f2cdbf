"""Ingest manifests and input discovery: which files an ingest run looks at, and what their rows say.

A manifest is JSON Lines (``.jsonl``, ``.json``: one object per line) or CSV (``.csv``, with a
header), one row per file::

    {"path": "tracks/a.flac", "license": "CC-BY-4.0", "rights_holder": "Jane Doe", "source": "...",
     "attribution": "...", "title": "...", "tags": ["ambient", "piano"], "description": "...",
     "ai_training": "allowed", "license_expires": "2027-06-30"}

Paths are relative to the manifest's folder (absolute ones must lie inside it); in CSV, ``tags`` is
one cell separated by commas or semicolons; ``licence`` is read as ``license`` (and ``licence_expires`` as
``license_expires``); ``ai_training`` and ``license_expires`` are read by :mod:`.consent`.

A row's statement is never lost. A row that cannot be used (not UTF-8, not JSON, a value of the wrong
type, an unknown key, a ``../`` or missing path) becomes a :class:`ManifestProblem` naming the manifest
file and line, and the file it names is quarantined with that reason instead of being ingested on its own
tags; the good rows go on. For a line that is not even a JSON object, the file is the one its raw text names
after ``"path":`` (every one, if it names several). A row that names no file at all (no path to be found, a
path of the wrong type, a CSV column nobody knows) could be the row of any file in the run, so the manifest
is refused as a whole: :class:`ManifestError` names every such line, and nothing is ingested. So is a
manifest that cannot be read at all (no such file, not UTF-8 CSV, a CSV header without ``path``).

:func:`resolve_inputs` turns the command line's paths into a sorted, de-duplicated list of
:class:`InputFile`, each joined to its manifest row by resolved path. Folders are walked for audio
extensions, skipping hidden names (which covers ``.tmp-*`` leftovers of atomic writes); a file
named on the command line is taken whatever its extension, so junk is quarantined with a reason by
the decoder instead of vanishing. A symlink inside a folder stands for its target when the target is
inside that folder too; one that leads out is flagged, never followed, so an ingest of ``corpus/``
cannot be made to read ``/etc`` or another tenant's files. A file whose name is not valid UTF-8 is
quarantined (the ledger, reports and JSON keep paths as text): :func:`display_path` is how every such
path is shown, its undecodable bytes written as ``\\xNN``.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

from soundtrail.ingest.consent import parse_ai_training, parse_license_expires

AUDIO_EXTENSIONS = frozenset({".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".m4a", ".aiff", ".aif"})
TEXT_FIELDS = ("license", "rights_holder", "source", "attribution", "title", "description")
KNOWN_KEYS = ("path", *TEXT_FIELDS, "tags", "ai_training", "license_expires")
_SPELLINGS = {"licence": "license", "licence_expires": "license_expires"}
MAX_FIELD_CHARS = 10_000  # a row's text ends up in the ledger and in every shard row of the file
MAX_REFUSED_LINES_SHOWN = 10
_TAG_SEPARATORS = re.compile(r"[,;]")
# A "path" key and its string value in the raw text of a line that is not a JSON object (either quote style).
_RAW_PATH = re.compile(r"""["']path["']\s*:\s*(?:("(?:[^"\\]|\\.)*")|'((?:[^'\\]|\\.)*)')""")
_NEWLINE = re.compile(r"\r\n|\r|\n")  # what csv counts as the end of a physical line
_CSV_PROBE_CHARS = 100_000  # under csv's field size limit, so a record that broke it can be read up to its path


class ManifestError(ValueError):
    """The manifest as a whole cannot be used; the message names the file (and the lines, if it is theirs)."""


def display_path(path: str | os.PathLike[str]) -> str:
    """A path as text that is always valid UTF-8: bytes that do not decode are written ``\\xNN``.

    Python keeps such bytes of a file name as lone surrogates (PEP 383), which neither the ledger, JSON nor a
    terminal can take; this is the one form they all show. A valid name is returned unchanged.
    """
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _quoted(text: str) -> str:
    return f"'{display_path(text)}'"


@dataclass(frozen=True)
class ManifestEntry:
    """One good manifest row; ``path`` is resolved (symlinks followed, inside the manifest folder)."""

    line: int
    path: Path
    license: str | None = None
    rights_holder: str | None = None
    source: str | None = None
    attribution: str | None = None
    title: str | None = None
    description: str | None = None
    tags: tuple[str, ...] = ()
    ai_training: str | None = None  # allowed, notAllowed or constrained (see soundtrail.ingest.consent)
    license_expires: str | None = None  # ISO date: the last day the licence holds

    def to_dict(self) -> dict[str, Any]:
        return {"line": self.line, "path": display_path(self.path),
                **{name: getattr(self, name) for name in TEXT_FIELDS}, "tags": list(self.tags),
                "ai_training": self.ai_training, "license_expires": self.license_expires}


@dataclass(frozen=True)
class ManifestProblem:
    """A row that was not used. ``path`` is the file it names when that could be worked out."""

    line: int
    path: Path | None
    reason: str


@dataclass
class ManifestResult:
    """A read manifest: the rows used and the rows refused. Treat as read-only once returned."""

    path: Path
    root: Path
    entries: list[ManifestEntry] = field(default_factory=list)
    problems: list[ManifestProblem] = field(default_factory=list)

    @cached_property
    def _entries_by_path(self) -> dict[Path, ManifestEntry]:
        return {entry.path: entry for entry in self.entries}

    @cached_property
    def _problems_by_path(self) -> dict[Path, ManifestProblem]:
        by_path: dict[Path, ManifestProblem] = {}
        for problem in self.problems:
            if problem.path is not None:
                by_path.setdefault(problem.path, problem)
        return by_path

    def entry_for(self, path: Path) -> ManifestEntry | None:
        return self._entries_by_path.get(path)

    def problem_for(self, path: Path) -> ManifestProblem | None:
        """The first problem a row reported about the file at ``path`` (resolved), if any."""
        return self._problems_by_path.get(path)


@dataclass(frozen=True)
class InputFile:
    """A file an ingest run will look at; ``problem`` set means quarantine it with that reason."""

    path: Path
    entry: ManifestEntry | None = None
    problem: str | None = None


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _link_path(path: Path) -> Path:
    """An absolute path with its folders resolved but not its last component (which may be a symlink)."""
    absolute = Path(os.path.abspath(path))
    return Path(os.path.realpath(absolute.parent)) / absolute.name


# ---------------------------------------------------------------------------------------------
# Reading a manifest


class _RowReader:
    """Checks one row's fields and its path against the manifest folder."""

    def __init__(self, manifest: Path, root: Path) -> None:
        self.manifest = manifest
        self.root = root
        self.result = ManifestResult(manifest, root)
        self.first_rows: dict[Path, ManifestEntry] = {}
        self.unplaced: list[str] = []  # lines whose statement names no file: the manifest is refused

    def problem(self, line: int, path: Path | None, detail: str) -> None:
        self.result.problems.append(ManifestProblem(line, path, f"{display_path(self.manifest)} line {line}: {detail}"))

    def unreadable(self, line: int, detail: str, named: list[str]) -> None:
        """A line that is no usable row: its problem goes to every file its text names, or it refuses the manifest."""
        if not named:
            self.unplaced.append(f"line {line}: {detail}")
        for given in named:
            path, path_error = self._resolve(given)
            self.problem(line, path, f"{detail}; {path_error}" if path_error else detail)

    def add(self, line: int, row: dict[str, Any]) -> None:
        errors = []
        for spelling, key in _SPELLINGS.items():
            if spelling in row:
                value = row.pop(spelling)
                if key in row and row[key] != value:
                    errors.append(f"'{key}' and '{spelling}' are both given, with different values")
                row.setdefault(key, value)
        given = row.get("path")
        unknown = [key for key in row if key not in KNOWN_KEYS]
        if unknown:
            errors.append(f"unknown key{'s' if len(unknown) > 1 else ''} {', '.join(map(_quoted, unknown))} "
                          f"(known: {', '.join(KNOWN_KEYS)})")
        if not isinstance(given, str) or not given.strip():
            wrong_type = given is not None and not isinstance(given, str)
            errors.insert(0, f"'path' must be a string, not {type(given).__name__}" if wrong_type
                          else "missing or empty 'path'")
            self.unreadable(line, "; ".join(errors), [])
            return
        path, path_error = self._resolve(given)
        if path_error:
            self.problem(line, path, path_error)
            return
        values: dict[str, Any] = {}
        for name in TEXT_FIELDS:
            value = row.get(name)
            if isinstance(value, str) and len(value) > MAX_FIELD_CHARS:
                errors.append(f"'{name}' has {len(value)} characters, over the {MAX_FIELD_CHARS} limit")
            elif value is not None and not isinstance(value, str):
                errors.append(f"'{name}' must be a string, not {type(value).__name__}")
            else:
                values[name] = (value.strip() or None) if value else None
        for name, parse in (("ai_training", parse_ai_training), ("license_expires", parse_license_expires)):
            try:
                values[name] = parse(row.get(name))
            except ValueError as exc:
                errors.append(str(exc))
        tags = _tags(row.get("tags"))
        if tags is None:
            errors.append(f"'tags' must be a list of strings or one separated string, not {row['tags']!r:.60}")
        elif sum(map(len, tags)) > MAX_FIELD_CHARS:
            errors.append(f"'tags' have {sum(map(len, tags))} characters, over the {MAX_FIELD_CHARS} limit")
        if errors:
            self.problem(line, path, "; ".join(errors))
            return
        entry = ManifestEntry(line=line, path=path, tags=tags or (), **values)
        first = self.first_rows.setdefault(path, entry)
        if first is entry:
            self.result.entries.append(entry)
        elif replace(first, line=line) != entry:  # a row repeated word for word is harmless; a different one is not
            self.problem(line, path, f"{_quoted(given)} already has a row on line {first.line}, with different values")

    def _resolve(self, given: str) -> tuple[Path | None, str | None]:
        if "\0" in given:
            return None, "'path' contains a NUL character"
        candidate = Path(os.path.normpath(self.root / given))  # an absolute `given` replaces root here
        if not _inside(candidate, self.root):
            return candidate, f"path {_quoted(given)} lies outside the manifest folder {display_path(self.root)}"
        candidate = _link_path(candidate)
        if not candidate.exists():
            return candidate, f"path {_quoted(given)} does not exist"
        target = Path(os.path.realpath(candidate))
        if not _inside(target, self.root):
            return candidate, f"symlink points outside the ingested folder: {display_path(target)}"
        if not target.is_file():
            return candidate, f"path {_quoted(given)} is not a file"
        return target, None

    def finish(self) -> ManifestResult:
        if self.unplaced:
            shown = self.unplaced[:MAX_REFUSED_LINES_SHOWN]
            more = len(self.unplaced) - len(shown)
            raise ManifestError(
                f"manifest {display_path(self.manifest)}: {len(self.unplaced)} line(s) name no file, so what they "
                f"state could belong to any file; fix or remove them (nothing was ingested): " + "; ".join(shown)
                + (f"; and {more} more" if more else ""))
        return self.result


def _tags(value: Any) -> tuple[str, ...] | None:
    """Tags from a JSON list or one comma/semicolon separated string; None when the type is wrong."""
    if value is None:
        return ()
    if isinstance(value, str):
        value = _TAG_SEPARATORS.split(value)
    if not isinstance(value, list) or not all(isinstance(tag, str) for tag in value):
        return None
    return tuple(tag.strip() for tag in value if tag.strip())


def _named_in_raw_line(text: str) -> list[str]:
    """The paths a line that is not a usable JSON object names: its "path" value when it parses as an object,
    else every quoted value after a ``"path":`` in its raw text (a truncated or hand-broken row)."""
    try:
        row = json.loads(text)
    except ValueError:
        row = None
    if isinstance(row, dict):
        given = row.get("path")
        return [given] if isinstance(given, str) and given.strip() else []
    named = []
    for match in _RAW_PATH.finditer(text):
        double_quoted, single_quoted = match.groups()
        if double_quoted is not None:
            try:
                named.append(json.loads(double_quoted))
            except ValueError:  # a bad escape: the raw characters are the best reading
                named.append(double_quoted[1:-1])
        else:
            named.append(single_quoted)
    return [given for given in dict.fromkeys(named) if given.strip()]


def _jsonl_rows(data: bytes, reader: _RowReader) -> Iterator[tuple[int, dict[str, Any]]]:
    for line, raw in enumerate(data.split(b"\n"), start=1):
        encoding = "utf-8-sig" if line == 1 else "utf-8"
        try:
            text = raw.decode(encoding)
        except UnicodeDecodeError as exc:
            text = raw.decode(encoding, "surrogateescape")  # such bytes in a path name the file they stand for
            reader.unreadable(line, f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})",
                              _named_in_raw_line(text))
            continue
        if not text.strip():
            continue
        try:
            row = json.loads(text)
        except json.JSONDecodeError as exc:
            reader.unreadable(line, f"not valid JSON ({exc.msg} at column {exc.colno})", _named_in_raw_line(text))
            continue
        if not isinstance(row, dict):
            reader.unreadable(line, f"not a JSON object (found {type(row).__name__})", [])
            continue
        yield line, row


def _csv_rows(data: bytes, reader: _RowReader) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ManifestError(f"manifest {display_path(reader.manifest)}: not UTF-8 text (byte {exc.start})") from exc
    rows = csv.reader(io.StringIO(text, newline=""))
    header: list[str] | None = None
    while True:
        start = rows.line_num + 1  # a quoted cell may span lines: report where the record starts
        try:
            cells = next(rows)
        except StopIteration:
            return
        except csv.Error as exc:
            named = _csv_cell(_csv_record_start(text, start), header, "path") if header else None
            reader.unreadable(start, f"not valid CSV ({exc})", [named] if named else [])
            continue
        if not cells:
            continue
        if header is None:
            header = _csv_header(cells, start, reader)
            continue
        if len(cells) > len(header):
            named = cells[header.index("path")].strip()
            reader.unreadable(start, f"row has {len(cells)} cells, the header has {len(header)}",
                              [named] if named else [])
            continue
        yield start, {name: cell for name, cell in zip(header, cells, strict=False) if cell != ""}


def _csv_header(cells: list[str], line: int, reader: _RowReader) -> list[str]:
    """The column names; a header without ``path`` or with a column nobody knows refuses the manifest."""
    header = [name.strip() for name in cells]
    where = f"manifest {display_path(reader.manifest)}"
    if "path" not in header:
        raise ManifestError(f"{where}: the CSV header has no 'path' column (found {', '.join(header)})")
    unknown = [name for name in header if name not in KNOWN_KEYS and name not in _SPELLINGS]
    if unknown:
        raise ManifestError(f"{where} line {line}: unknown column{'s' if len(unknown) > 1 else ''} "
                            f"{', '.join(map(_quoted, unknown))} (known: {', '.join(KNOWN_KEYS)}); every row "
                            "would lose what it states there")
    return header


def _csv_record_start(text: str, line: int) -> str:
    """Up to ``_CSV_PROBE_CHARS`` of ``text`` from the start of physical line ``line`` (counted as csv does)."""
    offset = 0
    for _ in range(line - 1):
        newline = _NEWLINE.search(text, offset)
        if newline is None:
            return ""
        offset = newline.end()
    return text[offset:offset + _CSV_PROBE_CHARS]


def _csv_cell(record: str, header: list[str], column: str) -> str | None:
    """Column ``column`` of the record at the start of ``record``, when it lies before a cell cut off by the probe."""
    cells = next(csv.reader(io.StringIO(record, newline="")), [])
    index = header.index(column)
    complete = len(cells) if len(record) < _CSV_PROBE_CHARS else len(cells) - 1
    return (cells[index].strip() or None) if index < complete else None


def read_manifest(path: Path) -> ManifestResult:
    """Read a JSONL or CSV manifest (by extension) into good entries and per-line problems.

    Raises :class:`ManifestError` when the manifest cannot be read, or when a line names no file.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".jsonl", ".json", ".csv"):
        raise ManifestError(f"manifest {display_path(path)}: expected a .jsonl, .json or .csv file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ManifestError(f"manifest {display_path(path)}: cannot be read ({exc.strerror or exc})") from exc
    reader = _RowReader(path, Path(os.path.realpath(path.parent)))
    rows = _csv_rows(data, reader) if suffix == ".csv" else _jsonl_rows(data, reader)
    for line, row in rows:
        reader.add(line, row)
    return reader.finish()


# ---------------------------------------------------------------------------------------------
# Finding the inputs


def _walk(folder: Path) -> Iterator[InputFile]:
    """Audio files under ``folder`` (already resolved), symlinks checked against it."""
    for directory, subfolders, names in os.walk(folder):  # os.walk does not descend into symlinked folders
        subfolders[:] = [name for name in subfolders if not name.startswith(".")]
        for name in subfolders + names:
            path = Path(directory) / name
            is_audio = path.suffix.lower() in AUDIO_EXTENSIONS
            if name.startswith(".") or not (is_audio or path.is_symlink() and path.is_dir()):
                continue
            target = Path(os.path.realpath(path))
            if path.is_symlink() and not _inside(target, folder):
                yield InputFile(path, problem=f"symlink points outside the ingested folder: {target}")
            elif path.is_symlink() and not target.exists():
                yield InputFile(path, problem=f"broken symlink: {target} does not exist")
            elif is_audio and not target.is_dir():
                yield InputFile(target)  # a symlinked folder inside `folder` is walked through its real path


def _named(paths: Iterable[Path]) -> Iterator[InputFile]:
    """Inputs named by the caller; a name with nothing behind it is the caller's mistake, not a file to record."""
    for given in paths:
        path = Path(given)
        if not os.path.lexists(path):
            raise FileNotFoundError(f"input not found: {given}")
        if not path.exists():
            yield InputFile(_link_path(path), problem=f"{given} does not exist")  # a broken symlink
        elif path.is_dir():
            yield from _walk(Path(os.path.realpath(path)))
        else:
            yield InputFile(Path(os.path.realpath(path)))  # named explicitly: taken whatever its extension


def resolve_inputs(paths: list[Path], manifest: ManifestResult | None = None) -> list[InputFile]:
    """The files to ingest, sorted by path and each listed once, joined to their manifest rows.

    With no ``paths``, the manifest's rows are the inputs. A file whose row was rejected for its
    values (not for its path) carries that row's problem, so it is quarantined rather than ingested
    on its tags alone; :func:`unattached_problems` lists the manifest problems left to record. A file
    whose name is not valid UTF-8 carries that problem.
    """
    found = _named(paths) if paths else (InputFile(entry.path) for entry in manifest.entries) if manifest else ()
    unique: dict[Path, InputFile] = {}
    for item in found:
        unique.setdefault(item.path, item)
    inputs = []
    for path in sorted(unique, key=str):
        item = unique[path]
        shown = display_path(path)
        if shown != str(path):
            item = InputFile(path, problem=f"file name is not valid UTF-8: '{shown}' (the bytes that do not decode "
                                           "written as \\xNN); rename the file to ingest it")
        elif manifest is not None and item.problem is None:
            rejected = manifest.problem_for(path)
            item = InputFile(path, manifest.entry_for(path), rejected.reason if rejected else None)
        inputs.append(item)
    return inputs


def unattached_problems(manifest: ManifestResult, inputs: Iterable[InputFile]) -> list[ManifestProblem]:
    """Manifest problems not already carried by an :class:`InputFile`, one per line: the caller records these."""
    carried = {item.path for item in inputs if item.problem is not None}
    lines: dict[int, ManifestProblem] = {}
    for problem in manifest.problems:
        if problem.path is None or problem.path not in carried:
            lines.setdefault(problem.line, problem)
    return list(lines.values())
