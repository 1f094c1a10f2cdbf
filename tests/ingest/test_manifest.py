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
                       "description": "slow", "bpm": 90},
                      "",
                      {"path": "./sub/c.mp3", "licence": "CC0", "tags": None},
                      {"path": str(corpus / "b.flac"), "license": "  "})
    result = read_manifest(manifest)
    assert result.problems == []
    a, c, b = result.entries
    assert (a.line, a.path, a.license, a.tags) == (1, corpus.resolve() / "a.wav", "CC-BY-4.0", ("ambient", "piano"))
    assert (a.rights_holder, a.attribution, a.description) == ("Jane Doe", "Jane Doe, Night Tide", "slow")
    assert (c.line, c.path, c.license, c.tags) == (3, corpus.resolve() / "sub" / "c.mp3", "CC0", ())
    assert (b.line, b.license) == (4, None)  # an absolute path inside the folder is fine; a blank licence is none
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
        '["a.wav"]',
        {"license": "CC0"},
        {"path": ""},
        {"path": 7},
        {"path": "b.flac", "license": 4, "title": ["x"]},
        {"path": "b.flac", "tags": 3},
        {"path": "b.flac", "description": "d" * (MAX_FIELD_CHARS + 1)},
        {"path": "../outside/secret.wav"},
        {"path": str(corpus.parent / "outside" / "secret.wav")},
        {"path": "nope.wav"},
        {"path": "sub"},
        {"path": "a\u0000.wav"},
        {"path": "b.flac", "tags": ["t"] * (MAX_FIELD_CHARS + 1)},
    )
    with open(manifest, "ab") as handle:
        handle.write(b'{"path": "\xff.wav"}\n')
    result = read_manifest(manifest)
    assert [entry.line for entry in result.entries] == [1]
    prefix = f"{manifest} line"
    outside = corpus.resolve()
    assert _reasons(result) == {
        2: f"{prefix} 2: not valid JSON (Expecting value at column 31)",
        3: f"{prefix} 3: not a JSON object (found list)",
        4: f"{prefix} 4: missing or empty 'path'",
        5: f"{prefix} 5: missing or empty 'path'",
        6: f"{prefix} 6: 'path' must be a string, not int",
        7: f"{prefix} 7: 'license' must be a string, not int; 'title' must be a string, not list",
        8: f"{prefix} 8: 'tags' must be a list of strings or one separated string, not 3",
        9: f"{prefix} 9: 'description' has {MAX_FIELD_CHARS + 1} characters, over the {MAX_FIELD_CHARS} limit",
        10: f"{prefix} 10: path '../outside/secret.wav' lies outside the manifest folder {outside}",
        11: f"{prefix} 11: path '{corpus.parent / 'outside' / 'secret.wav'}' lies outside the manifest folder "
            f"{outside}",
        12: f"{prefix} 12: path 'nope.wav' does not exist",
        13: f"{prefix} 13: path 'sub' is not a file",
        14: f"{prefix} 14: 'path' contains a NUL character",
        15: f"{prefix} 15: 'tags' have {MAX_FIELD_CHARS + 1} characters, over the {MAX_FIELD_CHARS} limit",
        16: f"{prefix} 16: not UTF-8 text",
    }
    # a problem that could be pinned to a file says which
    assert result.problems[5].path == corpus.resolve() / "b.flac"
    assert result.problems[0].path is None


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
                                    "not json",
                                    {"path": "escape.wav", "license": "CC0"}))
    inputs = resolve_inputs([corpus], manifest)
    by_name = {item.path.name: item for item in inputs}
    assert by_name["a.wav"].entry.license == "CC0" and by_name["a.wav"].problem is None
    assert by_name["b.flac"].entry is None
    assert by_name["b.flac"].problem == f"{corpus / 'm.jsonl'} line 2: 'license' must be a string, not int"
    assert by_name["c.mp3"] == InputFile(corpus.resolve() / "sub" / "c.mp3")
    assert by_name["escape.wav"].problem.startswith("symlink points outside the ingested folder")
    # the rejected b.flac and escape.wav rows travel with their files; the others are left for the caller
    assert [problem.line for problem in unattached_problems(manifest, inputs)] == [3, 4]


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
