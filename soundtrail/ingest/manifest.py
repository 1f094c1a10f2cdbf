"""Ingest manifests and input discovery: which files an ingest run looks at, and what their rows say.

A manifest is JSON Lines (``.jsonl``, ``.json``: one object per line) or CSV (``.csv``, with a
header), one row per file::

    {"path": "tracks/a.flac", "license": "CC-BY-4.0", "rights_holder": "Jane Doe", "source": "...",
     "attribution": "...", "title": "...", "tags": ["ambient", "piano"], "description": "..."}

Paths are relative to the manifest's folder (absolute ones must lie inside it); in CSV, ``tags`` is
one cell separated by commas or semicolons; ``licence`` is read as ``license``; other keys are
ignored. One bad row never sinks the manifest: it becomes a :class:`ManifestProblem` naming the
manifest file and line, and the good rows go on. Only a manifest that cannot be read at all (no
such file, not UTF-8 CSV, a CSV header without ``path``) raises :class:`ManifestError`.

:func:`resolve_inputs` turns the command line's paths into a sorted, de-duplicated list of
:class:`InputFile`, each joined to its manifest row by resolved path. Folders are walked for audio
extensions, skipping hidden names (which covers ``.tmp-*`` leftovers of atomic writes); a file
named on the command line is taken whatever its extension, so junk is quarantined with a reason by
the decoder instead of vanishing. A symlink inside a folder stands for its target when the target is
inside that folder too; one that leads out is flagged, never followed, so an ingest of ``corpus/``
cannot be made to read ``/etc`` or another tenant's files.
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

AUDIO_EXTENSIONS = frozenset({".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".m4a", ".aiff", ".aif"})
TEXT_FIELDS = ("license", "rights_holder", "source", "attribution", "title", "description")
MAX_FIELD_CHARS = 10_000  # a row's text ends up in the ledger and in every shard row of the file
_TAG_SEPARATORS = re.compile(r"[,;]")


class ManifestError(ValueError):
    """The manifest as a whole cannot be read; the message names the file."""


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

    def to_dict(self) -> dict[str, Any]:
        return {"line": self.line, "path": str(self.path), **{name: getattr(self, name) for name in TEXT_FIELDS},
                "tags": list(self.tags)}


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

    def problem(self, line: int, path: Path | None, detail: str) -> None:
        self.result.problems.append(ManifestProblem(line, path, f"{self.manifest} line {line}: {detail}"))

    def add(self, line: int, row: dict[str, Any]) -> None:
        if "license" not in row and "licence" in row:
            row = {**row, "license": row["licence"]}
        given = row.get("path")
        if not isinstance(given, str) or not given.strip():
            wrong_type = given is not None and not isinstance(given, str)
            self.problem(line, None, f"'path' must be a string, not {type(given).__name__}" if wrong_type
                         else "missing or empty 'path'")
            return
        path, path_error = self._resolve(given)
        if path_error:
            self.problem(line, path, path_error)
            return
        values: dict[str, Any] = {}
        errors = []
        for name in TEXT_FIELDS:
            value = row.get(name)
            if isinstance(value, str) and len(value) > MAX_FIELD_CHARS:
                errors.append(f"'{name}' has {len(value)} characters, over the {MAX_FIELD_CHARS} limit")
            elif value is not None and not isinstance(value, str):
                errors.append(f"'{name}' must be a string, not {type(value).__name__}")
            else:
                values[name] = (value.strip() or None) if value else None
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
            self.problem(line, path, f"{given!r} already has a row on line {first.line}, with different values")

    def _resolve(self, given: str) -> tuple[Path | None, str | None]:
        if "\0" in given:
            return None, "'path' contains a NUL character"
        candidate = Path(os.path.normpath(self.root / given))  # an absolute `given` replaces root here
        if not _inside(candidate, self.root):
            return candidate, f"path {given!r} lies outside the manifest folder {self.root}"
        candidate = _link_path(candidate)
        if not candidate.exists():
            return candidate, f"path {given!r} does not exist"
        target = Path(os.path.realpath(candidate))
        if not _inside(target, self.root):
            return candidate, f"symlink points outside the ingested folder: {target}"
        if not target.is_file():
            return candidate, f"path {given!r} is not a file"
        return target, None


def _tags(value: Any) -> tuple[str, ...] | None:
    """Tags from a JSON list or one comma/semicolon separated string; None when the type is wrong."""
    if value is None:
        return ()
    if isinstance(value, str):
        value = _TAG_SEPARATORS.split(value)
    if not isinstance(value, list) or not all(isinstance(tag, str) for tag in value):
        return None
    return tuple(tag.strip() for tag in value if tag.strip())


def _jsonl_rows(data: bytes, reader: _RowReader) -> Iterator[tuple[int, dict[str, Any]]]:
    for line, raw in enumerate(data.split(b"\n"), start=1):
        try:
            text = raw.decode("utf-8-sig" if line == 1 else "utf-8")
        except UnicodeDecodeError:
            reader.problem(line, None, "not UTF-8 text")
            continue
        if not text.strip():
            continue
        try:
            row = json.loads(text)
        except json.JSONDecodeError as exc:
            reader.problem(line, None, f"not valid JSON ({exc.msg} at column {exc.colno})")
            continue
        if not isinstance(row, dict):
            reader.problem(line, None, f"not a JSON object (found {type(row).__name__})")
            continue
        yield line, row


def _csv_rows(data: bytes, reader: _RowReader) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ManifestError(f"manifest {reader.manifest}: not UTF-8 text (byte {exc.start})") from exc
    rows = csv.reader(io.StringIO(text, newline=""))
    header: list[str] | None = None
    while True:
        start = rows.line_num + 1  # a quoted cell may span lines: report where the record starts
        try:
            cells = next(rows)
        except StopIteration:
            return
        except csv.Error as exc:
            reader.problem(start, None, f"not valid CSV ({exc})")
            continue
        if not cells:
            continue
        if header is None:
            header = [name.strip() for name in cells]
            if "path" not in header:
                raise ManifestError(f"manifest {reader.manifest}: the CSV header has no 'path' column "
                                    f"(found {', '.join(header)})")
            continue
        if len(cells) > len(header):
            reader.problem(start, None, f"row has {len(cells)} cells, the header has {len(header)}")
            continue
        yield start, {name: cell for name, cell in zip(header, cells, strict=False) if cell != ""}


def read_manifest(path: Path) -> ManifestResult:
    """Read a JSONL or CSV manifest (by extension) into good entries and per-line problems."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".jsonl", ".json", ".csv"):
        raise ManifestError(f"manifest {path}: expected a .jsonl, .json or .csv file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ManifestError(f"manifest {path}: cannot be read ({exc.strerror or exc})") from exc
    reader = _RowReader(path, Path(os.path.realpath(path.parent)))
    rows = _csv_rows(data, reader) if suffix == ".csv" else _jsonl_rows(data, reader)
    for line, row in rows:
        reader.add(line, row)
    return reader.result


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
    on its tags alone; :func:`unattached_problems` lists the manifest problems left to record.
    """
    found = _named(paths) if paths else (InputFile(entry.path) for entry in manifest.entries) if manifest else ()
    unique: dict[Path, InputFile] = {}
    for item in found:
        unique.setdefault(item.path, item)
    inputs = []
    for path in sorted(unique, key=str):
        item = unique[path]
        if manifest is not None and item.problem is None:
            rejected = manifest.problem_for(path)
            item = InputFile(path, manifest.entry_for(path), rejected.reason if rejected else None)
        inputs.append(item)
    return inputs


def unattached_problems(manifest: ManifestResult, inputs: Iterable[InputFile]) -> list[ManifestProblem]:
    """Manifest problems not already carried by an :class:`InputFile`: the caller records these itself."""
    carried = {item.path for item in inputs if item.problem is not None}
    return [problem for problem in manifest.problems if problem.path is None or problem.path not in carried]
