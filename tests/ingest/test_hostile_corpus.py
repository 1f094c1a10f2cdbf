"""A hostile-input corpus, generated here, through the real ingest (``soundtrail ingest --json``: the Prefect flow,
its analysis on Ray workers, the ledger): every case of issue 23 parts 1-3 and 5 and the consent cases of issue
20 part 4, each with the status and reason it must get. ``CASES`` is the one table to read; a new case is one row.

Most files carry a permissive licence in their own tags (``LICENSE=CC-BY-4.0``): a manifest row whose statement
got lost would let them in on their tags, which is the failure these cases guard against.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import mutagen
import pytest

from soundtrail.cli import main
from soundtrail.ingest.consent import utc_today
from soundtrail.ingest.manifest import display_path
from soundtrail.provenance.ledger import Ledger
from soundtrail.provenance.takedown import takedown_id_for
from tests.audio_fixtures import melody, sign_training_mining, write
from tests.test_audio_stream import sparse_wav

pytestmark = pytest.mark.slow

TOMORROW = (utc_today() + dt.timedelta(days=1)).isoformat()
Maker = Callable[[Path, int], None]


def tagged(licence: str = "CC-BY-4.0") -> Maker:
    """A FLAC of its own music whose tags state ``licence``."""
    def make(path: Path, seed: int) -> None:
        write(path, melody(seed, seconds=5.0))
        tags = mutagen.File(path)
        tags["LICENSE"] = licence
        tags.save()
    return make


def signed(suffix: str, entries: dict[str, str], label: str = "cawg.training-mining") -> Maker:
    """A WAV or MP3 with signed Content Credentials carrying a training-and-data-mining assertion."""
    def make(path: Path, seed: int) -> None:
        source = write(path.with_name(f".{path.stem}.src.wav"), melody(seed, seconds=5.0), subtype="PCM_16")
        if suffix == ".mp3":
            mp3 = source.with_suffix(".mp3")
            subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(source), "-b:a", "128k", str(mp3)],
                           check=True)
            source = mp3
        sign_training_mining(source, path, entries, path.parent / ".identity", label=label)
    return make


def sparse(data_bytes: int, channels: int = 1) -> Maker:
    """A WAV whose header claims ``data_bytes`` of 16-bit samples; a few kB on disk (a sparse file)."""
    return lambda path, _seed: sparse_wav(path, data_bytes, channels) and None


@dataclass(frozen=True)
class Case:
    """One hostile input. ``file`` is its name in the corpus (bytes where it is not valid UTF-8); ``row`` its
    manifest line (a dict is written as JSON, str/bytes as they are; None for no row); ``reason`` must appear in
    the reason given, with ``{manifest}``, ``{line}`` (the row's line) and ``{folder}`` filled in."""

    file: str | bytes
    make: Maker | None
    row: dict | str | bytes | None
    status: str
    reason: str = ""
    marks: tuple = ()


def row_for(name: str, **fields: object) -> dict:
    return {"path": name, **fields}


CASES = [
    Case("good.flac", tagged(), row_for("good.flac", license="CC-BY-4.0"), "accepted"),
    # issue 23 part 2: a bad manifest row never loses its statement (each says CC-BY-NC; the tags say CC-BY)
    Case("row_trailing_comma.flac", tagged(), '{"path": "row_trailing_comma.flac", "license": "CC-BY-NC-4.0",}',
         "quarantined", "{manifest} line {line}: not valid JSON (Expecting property name"),
    Case("row_python_dict.flac", tagged(), "{'path': 'row_python_dict.flac', 'license': 'CC-BY-NC-4.0'}",
         "quarantined", "{manifest} line {line}: not valid JSON"),
    Case("row_cut_off.flac", tagged(), '{"path": "row_cut_off.flac", "license": "CC-BY-NC-4',
         "quarantined", "{manifest} line {line}: not valid JSON (Unterminated string"),
    Case("row_latin1.flac", tagged(), b'{"path": "row_latin1.flac", "license": "CC-BY-NC-4.0", "title": "Caf\xe9"}',
         "quarantined", "{manifest} line {line}: not UTF-8 text (byte 0xe9 at column 69)"),
    Case("row_unknown_key.flac", tagged(), row_for("row_unknown_key.flac", license="CC-BY-4.0", ai_traning="no"),
         "quarantined", "{manifest} line {line}: unknown key 'ai_traning' (known: path, license,"),
    Case("row_wrong_type.flac", tagged(), row_for("row_wrong_type.flac", license=["CC-BY-NC-4.0"]),
         "quarantined", "{manifest} line {line}: 'license' must be a string, not list"),
    Case("row_missing.flac", None, row_for("row_missing.flac", license="CC0-1.0"),
         "quarantined", "{manifest} line {line}: path 'row_missing.flac' does not exist"),
    Case("../outside.flac", None, row_for("../outside.flac", license="CC0-1.0"),
         "quarantined", "{manifest} line {line}: path '../outside.flac' lies outside the manifest folder"),
    # issue 23 part 1: a licence string with a restriction is never read as a permissive licence
    *(Case(f"licence_{index}.flac", tagged("CC0-1.0"), row_for(f"licence_{index}.flac", license=text),
           "quarantined", "unclear licence")
      for index, text in enumerate(["CC BY 4.0 NC", "CC-BY-4.0-NC-SA", "CC BY 4.0 (NonCommercial)",
                                    "https://creativecommons.org/licenses/by/4.0/ NC",
                                    "(c) 2024 X. All rights reserved. CC BY 4.0"])),
    # issue 23 part 3: one bad file name never stops a run
    Case(b"caf\xe9.flac", tagged(), None, "quarantined",
         "file name is not valid UTF-8: '{folder}/caf\\xe9.flac' (the bytes that do not decode written as \\xNN)"),
    Case(b"folder_\xff/inner.flac", tagged(), None, "quarantined",
         "file name is not valid UTF-8: '{folder}/folder_\\xff/inner.flac'"),
    Case("été.flac", tagged(), None, "accepted"),
    # issue 23 part 5: bounded cost per file
    Case("claims_4gib.wav", sparse(4 * 2**30 - 64), row_for("claims_4gib.wav", license="CC0-1.0"), "quarantined",
         "too long: the header states 13 h 31 min (48,696 s), over the limit of 30 min 00 s (1,800 s) "
         "([ingest] max_duration_s)"),
    Case("claims_64_channels.wav", sparse(2_400_000_000, channels=64),
         row_for("claims_64_channels.wav", license="CC0-1.0"), "quarantined",
         "too large: the header states 4,800 MB of decoded samples (64 channels at 44100 Hz), over the limit of "
         "4,000 MB ([ingest] max_decoded_mb)"),
    # issue 20 part 4: consent beyond the licence id
    Case("ai_not_allowed.flac", tagged(), row_for("ai_not_allowed.flac", license="CC-BY-4.0", ai_training="notAllowed"),
         "quarantined", "AI training not allowed by {manifest} line {line}"),
    Case("ai_allowed.flac", tagged(), row_for("ai_allowed.flac", license="CC-BY-4.0", ai_training="allowed"),
         "accepted"),
    Case("ai_maybe.flac", tagged(), row_for("ai_maybe.flac", license="CC-BY-4.0", ai_training="maybe"),
         "quarantined", "{manifest} line {line}: 'ai_training' must be allowed or notAllowed (or constrained)"),
    Case("expired.flac", tagged(), row_for("expired.flac", license="CC-BY-4.0", license_expires="2001-01-01"),
         "quarantined", "licence expired on 2001-01-01 ({manifest} line {line})"),
    Case("expires_tomorrow.flac", tagged(), row_for("expires_tomorrow.flac", license="CC-BY-4.0",
                                                    license_expires=TOMORROW), "accepted"),
    Case("c2pa_cawg_not_allowed.wav", signed(".wav", {"cawg.ai_generative_training": "notAllowed"}),
         row_for("c2pa_cawg_not_allowed.wav", license="CC-BY-4.0"), "quarantined",
         "AI training not allowed by C2PA cawg.training-mining (cawg.ai_generative_training) in urn:"),
    Case("c2pa_c2pa_constrained.mp3", signed(".mp3", {"c2pa.ai_training": "constrained"}, "c2pa.training-mining"),
         row_for("c2pa_c2pa_constrained.mp3", license="CC-BY-4.0"), "quarantined",
         "AI training constrained (treated as not allowed) by C2PA c2pa.training-mining (c2pa.ai_training)"),
    Case("c2pa_allowed.mp3", signed(".mp3", {"cawg.ai_generative_training": "allowed"}),
         row_for("c2pa_allowed.mp3", license="CC-BY-4.0"), "accepted"),
    Case("c2pa_mining_only.wav", signed(".wav", {"cawg.data_mining": "notAllowed"}),
         row_for("c2pa_mining_only.wav", license="CC-BY-4.0"), "accepted"),
    Case("c2pa_allowed_row_refuses.wav", signed(".wav", {"cawg.ai_generative_training": "allowed"}),
         row_for("c2pa_allowed_row_refuses.wav", license="CC-BY-4.0", ai_training="no"), "quarantined",
         "AI training not allowed by {manifest} line {line}"),
]


def _name(case: Case) -> str:
    """The case's file as the ingest shows it, relative to the corpus folder."""
    return display_path(os.fsdecode(case.file))


def _line(row: dict | str | bytes) -> bytes:
    return json.dumps(row).encode() if isinstance(row, dict) else row.encode() if isinstance(row, str) else row


def build(folder: Path) -> tuple[Path, dict[str, int]]:
    """The corpus: every case's file (its seed is its index: distinct music) and the manifest of their rows."""
    lines, line_of = [], {}
    for seed, case in enumerate(CASES):
        if case.make is not None:
            raw = os.fsencode(folder) + b"/" + os.fsencode(case.file)
            made = folder / f".made{seed}{Path(_name(case)).suffix}"  # written under a UTF-8 name, then renamed
            case.make(made, 200 + seed)
            os.makedirs(os.path.dirname(raw), exist_ok=True)
            os.rename(made, raw)
        if case.row is not None:
            lines.append(_line(case.row))
            line_of[_name(case)] = len(lines)
    manifest = folder / "manifest.jsonl"
    manifest.write_bytes(b"\n".join(lines) + b"\n")
    return manifest, line_of


def ingest(folder: Path, manifest: Path, workspace: Path) -> tuple[int, dict]:
    """``soundtrail ingest FOLDER --manifest M --json`` in this process; (exit code, the JSON summary)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["ingest", str(folder), "--manifest", str(manifest), "--workspace", str(workspace), "--json"])
    return code, json.loads(out.getvalue()) if code == 0 else {}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, prefect_server: str) -> dict:
    root = tmp_path_factory.mktemp("hostile")
    folder = root / "corpus"
    folder.mkdir()
    manifest, line_of = build(folder)
    workspace = root / "ws"
    workspace.mkdir()
    (workspace / "soundtrail.toml").write_text("[ingest]\nworkers = 2\n")
    code, summary = ingest(folder, manifest, workspace)
    assert code == 0
    items = {os.path.relpath(item["path"], folder): item for item in summary["items"]}
    return {"folder": folder, "manifest": manifest, "line_of": line_of, "workspace": workspace, "items": items,
            "summary": summary}


@pytest.mark.parametrize("case", [pytest.param(case, id=_name(case), marks=case.marks) for case in CASES])
def test_each_hostile_input_gets_its_status_and_reason(run: dict, case: Case) -> None:
    item = run["items"][_name(case)]
    assert item["status"] == case.status, item
    expected = case.reason.format(manifest=run["manifest"], line=run["line_of"].get(_name(case)),
                                  folder=run["folder"])
    assert expected in (item["reason"] or ""), item


def test_the_run_records_every_case_as_text_and_verifies(run: dict) -> None:
    summary = run["summary"]
    assert len(summary["items"]) == len(CASES)
    assert summary["accepted"] + summary["quarantined"] == len(CASES), "nothing duplicate or blocked here"
    ledger = Ledger(f"sqlite:///{run['workspace'] / 'ledger.db'}")
    paths = {row["path"] for row in ledger.rows("assets")}
    assert {os.path.relpath(path, run["folder"]) for path in paths} == {_name(case) for case in CASES}
    assert all(path.encode("utf-8") for path in paths), "every path stored is valid UTF-8 text"
    assert ledger.verify().ok


def test_the_next_run_revokes_an_expired_licence_and_changes_nothing_else(run: dict,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    ledger = Ledger(f"sqlite:///{run['workspace'] / 'ledger.db'}")
    head = ledger.head()
    expiring = run["items"]["expires_tomorrow.flac"]["asset_id"]
    monkeypatch.setattr("soundtrail.ingest.expiry.utc_today", lambda: utc_today() + dt.timedelta(days=2))
    code, summary = ingest(run["folder"], run["manifest"], run["workspace"])
    assert code == 0
    assert {item["asset_id"]: item["status"] for item in summary["items"]} == {
        item["asset_id"]: item["status"] for item in run["summary"]["items"]}, "the ingest decides as before"
    asset = ledger.get("assets", expiring)
    assert (asset["status"], asset["reason"]) == (
        "revoked", f"takedown: licence expired on {TOMORROW} ({run['manifest']} line "
                   f"{run['line_of']['expires_tomorrow.flac']})")
    new_events = [(event["kind"], event["entity_id"]) for event in ledger.events() if event["seq"] > head[0]]
    assert new_events == [("asset.revoked", expiring), ("takedown.recorded", takedown_id_for(expiring))]


def test_a_manifest_line_that_names_no_file_refuses_the_run(tmp_path: Path) -> None:
    """Refused before Prefect or Ray start: one line on stderr, exit 1, nothing recorded."""
    folder = tmp_path / "corpus"
    tagged()(folder / "good.flac", 1)
    manifest = folder / "refused.jsonl"
    manifest.write_text('{"path": "good.flac", "license": "CC-BY-4.0"}\n{"license": "CC-BY-NC-4.0"}\n[1, 2]\n')
    workspace = tmp_path / "ws"
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code, _ = ingest(folder, manifest, workspace)
    assert code == 1
    assert err.getvalue() == (
        f"error: manifest {manifest}: 2 line(s) name no file, so what they state could belong to any file; fix or "
        "remove them (nothing was ingested): line 2: missing or empty 'path'; line 3: not a JSON object (found "
        "list)\n")
    assert Ledger(f"sqlite:///{workspace / 'ledger.db'}").rows("assets") == []
