"""Manifests (JSONL and CSV), every per-line problem, and input discovery with hostile paths."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from soundtrail.ingest.manifest import (
    MAX_FIELD_CHARS,
    InputFile,
    ManifestError,
    display_path,
    read_manifest,
    resolve_inputs,
    unattached_problems,
)


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """corpus/{a.wav, b.flac, sub/c.mp3} plus an outside folder with one file."""
    root = tmp_path / "corpus"
    (root / "sub").mkdir(parents=True)
    for name in ("a.wav", "b.flac", "sub/c.mp3"):
        (root / name).write_bytes(b"audio")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.wav").write_bytes(b"not yours")
    return root


def _jsonl(path: Path, *lines: object) -> Path:
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")
    return path


def _reasons(result) -> dict[int, str]:
    return {problem.line: problem.reason for problem in result.problems}


def test_jsonl_rows_become_typed_entries(corpus: Path) -> None:
    manifest = _jsonl(corpus / "manifest.jsonl",
                      {"path": "a.wav", "license": "CC-BY-4.0", "rights_holder": "Jane Doe", "source": "https://x",
                       "attribution": "Jane Doe, Night Tide", "title": "Night Tide", "tags": ["ambient", " piano "],
                       "description": "slow", "ai_training": "not allowed", "license_expires": "2030-02-28"},
                      "",
                      {"path": "./sub/c.mp3", "licence": "CC0", "tags": None, "ai_training": True,
                       "licence_expires": ""},
                      {"path": str(corpus / "b.flac"), "license": "  ", "ai_training": "notAllowed"})
    result = read_manifest(manifest)
    assert result.problems == []
    a, c, b = result.entries
    assert (a.line, a.path, a.license, a.tags) == (1, corpus.resolve() / "a.wav", "CC-BY-4.0", ("ambient", "piano"))
    assert (a.rights_holder, a.attribution, a.description) == ("Jane Doe", "Jane Doe, Night Tide", "slow")
    assert (a.ai_training, a.license_expires) == ("notAllowed", "2030-02-28")
    assert (c.line, c.path, c.license, c.tags) == (3, corpus.resolve() / "sub" / "c.mp3", "CC0", ())
    assert (c.ai_training, c.license_expires) == ("allowed", None)
    assert (b.line, b.license, b.ai_training) == (4, None, "notAllowed")  # an absolute path inside is fine
    assert json.loads(json.dumps(a.to_dict()))["tags"] == ["ambient", "piano"]


def test_csv_rows_with_separated_tags_and_multiline_cells(corpus: Path) -> None:
    manifest = corpus / "manifest.csv"
    manifest.write_text(
        "path,license,rights_holder,tags,description\n"
        "a.wav,CC BY 4.0,Jane Doe,\"ambient, piano; slow\",\n"
        "\n"
        "b.flac,CC0,,,\"two\nlines\"\n"
        "sub/c.mp3,CC0,x,y,z,extra\n"
        "missing.wav,CC0,,,\n",
        encoding="utf-8-sig",
    )
    result = read_manifest(manifest)
    a, b = result.entries
    assert (a.line, a.license, a.tags, a.description) == (2, "CC BY 4.0", ("ambient", "piano", "slow"), None)
    assert (b.line, b.rights_holder, b.description) == (4, None, "two\nlines")
    assert _reasons(result) == {
        6: f"{manifest} line 6: row has 6 cells, the header has 5",
        7: f"{manifest} line 7: path 'missing.wav' does not exist",
    }


def test_every_bad_line_is_a_problem_naming_file_and_line(corpus: Path) -> None:
    manifest = _jsonl(
        corpus / "m.jsonl",
        {"path": "a.wav", "license": "CC0"},
        '{"path": "b.flac", "license": ',
        {"path": "b.flac", "license": 4, "title": ["x"]},
        {"path": "b.flac", "tags": 3},
        {"path": "b.flac", "description": "d" * (MAX_FIELD_CHARS + 1)},
        {"path": "../outside/secret.wav"},
        {"path": str(corpus.parent / "outside" / "secret.wav")},
        {"path": "nope.wav"},
        {"path": "sub"},
        {"path": "a\u0000.wav"},
        {"path": "b.flac", "tags": ["t"] * (MAX_FIELD_CHARS + 1)},
        {"path": "b.flac", "bpm": 90, "Licence": "CC0"},
        {"path": "b.flac", "ai_training": "maybe", "license_expires": "next year"},
        {"path": "b.flac", "license": "CC0", "licence": "CC-BY-NC-4.0"},
    )
    with open(manifest, "ab") as handle:
        handle.write(b'{"path": "\xff.wav"}\n')
    result = read_manifest(manifest)
    assert [entry.line for entry in result.entries] == [1]
    prefix = f"{manifest} line"
    outside = corpus.resolve()
    assert _reasons(result) == {
        2: f"{prefix} 2: not valid JSON (Expecting value at column 31)",
        3: f"{prefix} 3: 'license' must be a string, not int; 'title' must be a string, not list",
        4: f"{prefix} 4: 'tags' must be a list of strings or one separated string, not 3",
        5: f"{prefix} 5: 'description' has {MAX_FIELD_CHARS + 1} characters, over the {MAX_FIELD_CHARS} limit",
        6: f"{prefix} 6: path '../outside/secret.wav' lies outside the manifest folder {outside}",
        7: f"{prefix} 7: path '{corpus.parent / 'outside' / 'secret.wav'}' lies outside the manifest folder "
           f"{outside}",
        8: f"{prefix} 8: path 'nope.wav' does not exist",
        9: f"{prefix} 9: path 'sub' is not a file",
        10: f"{prefix} 10: 'path' contains a NUL character",
        11: f"{prefix} 11: 'tags' have {MAX_FIELD_CHARS + 1} characters, over the {MAX_FIELD_CHARS} limit",
        12: f"{prefix} 12: unknown keys 'bpm', 'Licence' (known: path, license, rights_holder, source, attribution, "
            "title, description, tags, ai_training, license_expires)",
        13: f"{prefix} 13: 'ai_training' must be allowed or notAllowed (or constrained), not 'maybe'; "
            "'license_expires' must be a date as YYYY-MM-DD, not 'next year'",
        14: f"{prefix} 14: 'license' and 'licence' are both given, with different values",
        15: f"{prefix} 15: not UTF-8 text (byte 0xff at column 11); path '\\xff.wav' does not exist",
    }
    # every problem names the file its line is about, the not-JSON line's recovered from its raw text
    named = {problem.line: problem.path for problem in result.problems}
    assert named[2] == named[14] == corpus.resolve() / "b.flac"
    assert named[15] == corpus.resolve() / os.fsdecode(b"\xff.wav") and named[10] is None


@pytest.mark.parametrize(("line", "names"), [
    ('{"path": "b.flac", "license": "CC-BY-NC-4.0",}', ["b.flac"]),  # trailing comma
    ("{'path': 'b.flac', 'license': 'CC-BY-NC-4.0'}", ["b.flac"]),  # a Python dict, not JSON
    ('{"path": "a.wav", "path": "sub/c.mp3", "license": "CC-BY-NC"', ["a.wav", "sub/c.mp3"]),
    ('{"path": "sub\\/c.mp3" "license": "CC0"}', ["sub/c.mp3"]),  # escapes decoded
    (b'{"path": "b.flac", "title": "Caf\xe9"}', ["b.flac"]),  # Latin-1 text in an otherwise good row
])
def test_a_line_that_is_no_row_quarantines_every_file_it_names(corpus: Path, line: str | bytes,
                                                                 names: list[str]) -> None:
    manifest = corpus / "m.jsonl"
    manifest.write_bytes(b'{"path": "b.flac", "license": "CC0"}\n' + (line if isinstance(line, bytes) else
                                                                      line.encode()) + b"\n")
    result = read_manifest(manifest)
    assert [problem.path for problem in result.problems] == [corpus.resolve() / name for name in names]
    assert all(problem.line == 2 for problem in result.problems)
    inputs = {item.path.name: item for item in resolve_inputs([corpus], result)}
    for name in names:
        assert inputs[Path(name).name].problem.startswith(f"{manifest} line 2: not ")


def test_lines_that_name_no_file_refuse_the_manifest_naming_each(corpus: Path) -> None:
    manifest = _jsonl(corpus / "m.jsonl", {"path": "a.wav", "license": "CC0"}, '["a.wav"]', {"license": "CC0"},
                      {"path": ""}, {"path": 7}, {"Path": "a.wav"}, "not json at all", '{"path": "a.w')
    with pytest.raises(ManifestError) as refused:
        read_manifest(manifest)
    assert str(refused.value) == (
        f"manifest {manifest}: 7 line(s) name no file, so what they state could belong to any file; fix or remove "
        "them (nothing was ingested): line 2: not a JSON object (found list); line 3: missing or empty 'path'; "
        "line 4: missing or empty 'path'; line 5: 'path' must be a string, not int; line 6: missing or empty "
        "'path'; unknown key 'Path' (known: path, license, rights_holder, source, attribution, title, description, "
        "tags, ai_training, license_expires); line 7: not valid JSON (Expecting value at column 1); line 8: not "
        "valid JSON (Unterminated string starting at at column 10)")
    many = _jsonl(corpus / "many.jsonl", *(["{}"] * 12))
    with pytest.raises(ManifestError, match=r"12 line\(s\) .* line 10: missing or empty 'path'; and 2 more$"):
        read_manifest(many)


def test_dotdot_that_stays_inside_is_fine(corpus: Path) -> None:
    result = read_manifest(_jsonl(corpus / "sub" / "m.jsonl", {"path": "../sub/c.mp3"}))
    assert result.problems == [] and result.entries[0].path == corpus.resolve() / "sub" / "c.mp3"
    nested = _jsonl(corpus / "m.jsonl", {"path": "sub/../a.wav"})
    assert read_manifest(nested).entries[0].path == corpus.resolve() / "a.wav"


def test_duplicate_rows(corpus: Path) -> None:
    manifest = _jsonl(corpus / "m.jsonl",
                      {"path": "a.wav", "license": "CC0"},
                      {"path": "./a.wav", "license": "CC0"},  # the same row again: harmless
                      {"path": "a.wav", "license": "CC-BY-NC-4.0"})
    result = read_manifest(manifest)
    assert [entry.line for entry in result.entries] == [1]
    assert _reasons(result) == {3: f"{manifest} line 3: 'a.wav' already has a row on line 1, with different values"}


def test_symlink_rows_pointing_outside_are_refused(corpus: Path) -> None:
    (corpus / "link.wav").symlink_to(corpus.parent / "outside" / "secret.wav")
    (corpus / "inner.wav").symlink_to(corpus / "a.wav")
    result = read_manifest(_jsonl(corpus / "m.jsonl", {"path": "link.wav"}, {"path": "inner.wav"}))
    assert [p.reason.split(": ", 1)[1] for p in result.problems] == [
        f"symlink points outside the ingested folder: {(corpus.parent / 'outside' / 'secret.wav').resolve()}"]
    assert result.entries[0].path == corpus.resolve() / "a.wav"


def test_an_oversized_csv_cell_loses_only_its_row(corpus: Path) -> None:
    manifest = corpus / "m.csv"
    manifest.write_text(f"path,description\na.wav,{'x' * 200_000}\nb.flac,fine\n")
    result = read_manifest(manifest)
    assert [(entry.line, entry.description) for entry in result.entries] == [(3, "fine")]
    assert _reasons(result)[2].startswith(f"{manifest} line 2: not valid CSV (field larger than field limit")
    assert result.problems[0].path == corpus.resolve() / "a.wav", "the row's path, read before the oversized cell"
    manifest.write_text(f"description,path\n{'x' * 200_000},a.wav\n")  # the path after it: nothing to go by
    with pytest.raises(ManifestError, match=r"line 2: not valid CSV \(field larger than field limit"):
        read_manifest(manifest)


def test_unreadable_manifests_raise(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="expected a .jsonl, .json or .csv file"):
        read_manifest(tmp_path / "m.yaml")
    with pytest.raises(ManifestError, match="cannot be read"):
        read_manifest(tmp_path / "absent.jsonl")
    (tmp_path / "m.csv").write_text("file,license\na.wav,CC0\n")
    with pytest.raises(ManifestError, match=r"the CSV header has no 'path' column \(found file, license\)"):
        read_manifest(tmp_path / "m.csv")
    (tmp_path / "latin.csv").write_bytes(b"path,license\n\xe9.wav,CC0\n")
    with pytest.raises(ManifestError, match="not UTF-8 text"):
        read_manifest(tmp_path / "latin.csv")
    (tmp_path / "m.csv").write_text("path,license,bpm,ai_training\na.wav,CC0,90,no\n")
    with pytest.raises(ManifestError, match=rf"manifest {tmp_path / 'm.csv'} line 1: unknown column 'bpm' \(known: "):
        read_manifest(tmp_path / "m.csv")


# ---------------------------------------------------------------------------------------------
# resolve_inputs


def test_folders_expand_to_sorted_audio_files(corpus: Path) -> None:
    (corpus / "notes.txt").write_text("x")
    (corpus / ".hidden.wav").write_bytes(b"x")
    (corpus / ".tmp-a.wav.123").write_bytes(b"x")
    (corpus / ".git").mkdir()
    (corpus / ".git" / "x.wav").write_bytes(b"x")
    (corpus / "UPPER.FLAC").write_bytes(b"x")
    for ext in (".ogg", ".oga", ".opus", ".m4a", ".aiff", ".aif"):
        (corpus / "sub" / f"d{ext}").write_bytes(b"x")
    root = corpus.resolve()
    inputs = resolve_inputs([corpus, corpus / "a.wav", corpus / "sub"])  # overlapping arguments
    assert [item.path.relative_to(root).as_posix() for item in inputs] == [
        "UPPER.FLAC", "a.wav", "b.flac", "sub/c.mp3", "sub/d.aif", "sub/d.aiff", "sub/d.m4a", "sub/d.oga",
        "sub/d.ogg", "sub/d.opus"]
    assert all(item.problem is None and item.entry is None for item in inputs)


def test_files_named_on_the_command_line_are_taken_whatever_their_extension(corpus: Path) -> None:
    (corpus / "notes.txt").write_text("x")
    (corpus / "dangling.wav").symlink_to(corpus / "gone.wav")
    inputs = resolve_inputs([corpus / "notes.txt", corpus / "dangling.wav"])
    assert inputs[0].path.name == "dangling.wav" and inputs[0].problem.endswith("dangling.wav does not exist")
    assert inputs[1] == InputFile(corpus.resolve() / "notes.txt")


def test_a_named_input_with_nothing_there_is_refused_not_recorded(corpus: Path) -> None:
    with pytest.raises(FileNotFoundError, match="input not found: .*gone.wav"):
        resolve_inputs([corpus / "a.wav", corpus / "gone.wav"])


def test_symlinks_outside_the_folder_are_flagged_not_followed(corpus: Path) -> None:
    outside = (corpus.parent / "outside").resolve()
    (corpus / "escape.wav").symlink_to(outside / "secret.wav")
    (corpus / "escape_dir").symlink_to(outside, target_is_directory=True)
    (corpus / "alias.wav").symlink_to(corpus / "a.wav")  # inside: stands for its target
    (corpus / "loop").symlink_to(corpus / "sub", target_is_directory=True)  # inside: walked once, as sub/
    (corpus / "dangling.wav").symlink_to(corpus / "gone.wav")
    (corpus / "escape.txt").symlink_to(outside / "secret.wav")  # not audio: skipped like any other
    root = corpus.resolve()
    inputs = {item.path.relative_to(root).as_posix(): item.problem for item in resolve_inputs([corpus])}
    assert inputs == {
        "a.wav": None, "b.flac": None, "sub/c.mp3": None,
        "dangling.wav": f"broken symlink: {root / 'gone.wav'} does not exist",
        "escape.wav": f"symlink points outside the ingested folder: {outside / 'secret.wav'}",
        "escape_dir": f"symlink points outside the ingested folder: {outside}",
    }


def test_manifest_rows_join_to_files_by_resolved_path(corpus: Path) -> None:
    (corpus / "alias.wav").symlink_to(corpus / "a.wav")
    (corpus / "escape.wav").symlink_to(corpus.parent / "outside" / "secret.wav")
    manifest = read_manifest(_jsonl(corpus / "m.jsonl",
                                    {"path": "alias.wav", "license": "CC0"},
                                    {"path": "b.flac", "license": 5},
                                    {"path": "missing.wav"},
                                    '{"path": "sub/c.mp3", "license": "CC-BY-NC-4.0",}',
                                    {"path": "escape.wav", "license": "CC0"}))
    inputs = resolve_inputs([corpus], manifest)
    by_name = {item.path.name: item for item in inputs}
    assert by_name["a.wav"].entry.license == "CC0" and by_name["a.wav"].problem is None
    assert by_name["b.flac"].entry is None
    assert by_name["b.flac"].problem == f"{corpus / 'm.jsonl'} line 2: 'license' must be a string, not int"
    assert by_name["c.mp3"].problem == f"{corpus / 'm.jsonl'} line 4: not valid JSON (Expecting property name " \
                                       "enclosed in double quotes at column 49)"
    assert by_name["escape.wav"].problem.startswith("symlink points outside the ingested folder")
    # the rejected b.flac, c.mp3 and escape.wav rows travel with their files; the missing one is left for the caller
    assert [problem.line for problem in unattached_problems(manifest, inputs)] == [3]


def test_without_paths_the_manifest_rows_are_the_inputs(corpus: Path) -> None:
    (corpus / "readme.md").write_text("x")
    manifest = read_manifest(_jsonl(corpus / "m.jsonl", {"path": "readme.md", "license": "CC0"},
                                    {"path": "sub/c.mp3", "license": "CC-BY-4.0"}))
    inputs = resolve_inputs([], manifest)
    assert [(item.path.name, item.entry.line) for item in inputs] == [("readme.md", 1), ("c.mp3", 2)]
    assert resolve_inputs([]) == []


def test_resolution_does_not_depend_on_the_working_directory(corpus: Path, monkeypatch) -> None:
    monkeypatch.chdir(corpus.parent)
    relative = resolve_inputs([Path("corpus")])
    monkeypatch.chdir(corpus / "sub")
    assert resolve_inputs([Path(os.pardir)]) == relative


def test_names_that_are_not_utf8_are_flagged_and_shown_escaped(corpus: Path) -> None:
    root = os.fsencode(corpus)
    for name in (b"caf\xe9.wav", b"dir\xff/inner.flac", b"ok/\xc3\xa9t\xc3\xa9.wav"):
        os.makedirs(os.path.dirname(root + b"/" + name), exist_ok=True)
        with open(root + b"/" + name, "wb") as handle:
            handle.write(b"audio")
    named = os.fsdecode(root + b"/caf\xe9.wav")  # as the command line gives it
    inputs = {display_path(item.path.relative_to(corpus.resolve())): item.problem
              for item in resolve_inputs([corpus, Path(named)])}
    assert inputs["caf\\xe9.wav"] == ("file name is not valid UTF-8: "
                                      f"'{corpus.resolve()}/caf\\xe9.wav' (the bytes that do not decode written as "
                                      "\\xNN); rename the file to ingest it")
    assert inputs["dir\\xff/inner.flac"].startswith(f"file name is not valid UTF-8: '{corpus.resolve()}/dir\\xff/")
    assert inputs["ok/été.wav"] is None, "valid UTF-8 beyond ASCII is a name like any other"
    assert display_path("plain/name.wav") == "plain/name.wav"
    assert display_path(Path(named)).encode("utf-8").endswith(b"caf\\xe9.wav")
