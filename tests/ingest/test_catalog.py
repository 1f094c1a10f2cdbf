"""Ingest analysis and decisions in-process: every kind of bad input, duplicates, blocklist, idempotence."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import mutagen
import numpy as np
import pytest
import soundfile as sf

from soundtrail.config import Settings
from soundtrail.ingest.blocklist import add_to_blocklist
from soundtrail.provenance.ledger import Ledger
from soundtrail.workspace import Workspace
from tests.audio_fixtures import RATE, melody, wav_with_header, write, write_manifest
from tests.ingest.driver import Killed, ingest  # other test modules import ingest from here too


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    return Workspace(tmp_path / "ws", Settings())


def _ok(folder: Path, name: str, seed: int) -> dict:
    write(folder / name, melody(seed))
    return {"path": name, "license": "CC0-1.0", "rights_holder": "Test Label"}


def test_bad_inputs_are_quarantined_with_reasons_and_the_batch_goes_on(tmp_path: Path, workspace: Workspace) -> None:
    corpus = tmp_path / "corpus"
    rows = [_ok(corpus, "good.flac", 1)]
    (corpus / "empty.wav").write_bytes(b"")
    (corpus / "text.wav").write_text("this is not audio\n" * 50)
    ogg = write(corpus / "full.ogg", melody(2), format="OGG", subtype="VORBIS")
    (corpus / "truncated.ogg").write_bytes(ogg.read_bytes()[: ogg.stat().st_size // 3])
    ogg.unlink()
    nan = melody(3)
    nan[1000:1010] = np.nan
    sf.write(str(corpus / "nan.wav"), nan, RATE, subtype="FLOAT")
    inf = melody(4)
    inf[5] = np.inf
    sf.write(str(corpus / "inf.wav"), inf, RATE, subtype="FLOAT")
    sf.write(str(corpus / "silence.wav"), np.zeros(RATE * 3, np.float32), RATE)
    sf.write(str(corpus / "short.wav"), melody(5, seconds=0.6), RATE)
    wav_with_header(corpus / "zero_hz.wav", 0, 2)
    wav_with_header(corpus / "many_channels.wav", RATE, 1000)
    tagged = write(corpus / "huge_tags.flac", melody(6))
    tags = mutagen.File(tagged)
    tags["COMMENT"] = "x" * 5_000_000
    tags.save()
    outside = tmp_path / "elsewhere.wav"
    write(outside, melody(7))
    os.symlink(outside, corpus / "link.wav")
    rows += [{"path": name, "license": "CC0-1.0"} for name in
             ("empty.wav", "text.wav", "truncated.ogg", "nan.wav", "inf.wav", "silence.wav", "short.wav",
              "zero_hz.wav", "many_channels.wav", "huge_tags.flac")]
    rows += [{"path": "../elsewhere.wav", "license": "CC0-1.0"}, {"path": "missing.wav", "license": "CC0-1.0"}]
    manifest = write_manifest(corpus, rows, extra_lines=['{"path": "gone.flac", "license": ',
                                                         '{"path": "nul\\u0000.wav", "license": "CC0-1.0"}'])

    items = ingest(workspace, [corpus], manifest)

    assert items["good.flac"]["status"] == "accepted"
    expected = {
        "empty.wav": "empty file", "text.wav": "not a readable audio file", "truncated.ogg": "",
        "nan.wav": "NaN or Inf", "inf.wav": "NaN or Inf", "silence.wav": "digital silence",
        "short.wav": "too short", "zero_hz.wav": "sample rate", "many_channels.wav": "channel",
        "huge_tags.flac": "oversized tag block", "link.wav": "symlink points outside the ingested folder",
        "elsewhere.wav": "outside the manifest folder", "missing.wav": "does not exist",
        "gone.flac": f"{manifest} line {len(rows) + 1}: not valid JSON",
    }
    for name, reason in expected.items():
        assert items[name]["status"] == "quarantined", (name, items[name])
        assert reason in items[name]["reason"], (name, items[name]["reason"])
    line_items = [item for key, item in items.items() if key.startswith("manifest.jsonl:")]
    assert [item["reason"] for item in line_items] == [f"{manifest} line {len(rows) + 2}: 'path' contains a NUL "
                                                        "character"]
    ledger = Ledger(workspace.ledger_url)
    quarantined = ledger.rows("assets", status="quarantined")
    assert len(quarantined) == len(expected) + 1 and all(row["reason"] for row in quarantined)
    assert ledger.verify().ok


def test_licence_policy_from_manifest_and_tags(tmp_path: Path, workspace: Workspace) -> None:
    corpus = tmp_path / "c"
    rows = [
        {"path": "cc0.flac", "license": "Creative Commons Zero 1.0"},
        {"path": "by.flac", "license": "https://creativecommons.org/licenses/by/4.0/"},
        {"path": "nc.flac", "license": "CC BY-NC 4.0"},
        {"path": "none.flac"},
        {"path": "vague.flac", "license": "CC BY"},
        {"path": "mit.flac", "license": "MIT"},
        {"path": "tagged.flac"},
        {"path": "nc_suffix.flac", "license": "CC BY 4.0 NC"},
        {"path": "reserved.flac", "license": "CC-BY-4.0"},
    ]
    for seed, row in enumerate(rows):
        write(corpus / row["path"], melody(10 + seed))
    for name, key, value in (("tagged.flac", "LICENSE", "cc-by-sa-4.0"),
                             ("reserved.flac", "COPYRIGHT", "(c) 2024 Jane Doe. All rights reserved.")):
        tagged = mutagen.File(corpus / name)
        tagged[key] = value
        tagged.save()
    items = ingest(workspace, [corpus], write_manifest(corpus, rows))
    assert items["cc0.flac"]["status"] == "accepted"
    assert items["by.flac"]["status"] == "accepted"
    assert items["tagged.flac"]["status"] == "accepted"
    assert "denied by policy" in items["nc.flac"]["reason"]
    assert items["none.flac"]["reason"] == "no licence in the manifest or the file's tags"
    assert "ambiguous" in items["vague.flac"]["reason"]
    assert "not in the allow list" in items["mit.flac"]["reason"]
    # a restriction beside a licence name, or in the file's own copyright tag, is never read as CC BY
    assert items["nc_suffix.flac"]["status"] == "quarantined"
    assert items["nc_suffix.flac"]["reason"] == \
        "unclear licence 'CC BY 4.0 NC': 'NC' is a restriction outside any licence name (manifest)"
    assert items["reserved.flac"]["reason"] == ("unclear licence '(c) 2024 Jane Doe. All rights reserved.': 'All "
                                                "rights reserved' is a restriction outside any licence name (file tag)")
    ledger = Ledger(workspace.ledger_url)
    assert ledger.get("assets", items["tagged.flac"]["asset_id"])["license"] == "CC-BY-SA-4.0"
    assert {row["id"] for row in ledger.rows("licences")} >= {"CC0-1.0", "CC-BY-4.0", "CC-BY-NC-4.0"}


def test_exact_and_near_copies_are_duplicates(tmp_path: Path, workspace: Workspace) -> None:
    corpus = tmp_path / "c"
    original = melody(20, seconds=10)
    rows = [_ok(corpus, "a_original.flac", 20)]
    write(corpus / "a_original.flac", original)
    (corpus / "b_same_bytes.flac").write_bytes((corpus / "a_original.flac").read_bytes())
    write(corpus / "c_same_pcm.wav", original, subtype="PCM_16")
    write(corpus / "d_quieter.ogg", original * 0.5, format="OGG", subtype="VORBIS")
    mp3 = corpus / "e_reencoded.mp3"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(corpus / "c_same_pcm.wav"), "-b:a", "128k",
                    str(mp3)], check=True)
    rows += [{"path": name, "license": "CC0-1.0"} for name in
             ("b_same_bytes.flac", "c_same_pcm.wav", "d_quieter.ogg", "e_reencoded.mp3")]
    rows.append(_ok(corpus, "f_other.flac", 21))
    items = ingest(workspace, [corpus], write_manifest(corpus, rows))
    original_id = items["a_original.flac"]["asset_id"]
    assert items["a_original.flac"]["status"] == "accepted"
    assert items["f_other.flac"]["status"] == "accepted", items["f_other.flac"]
    assert items["b_same_bytes.flac"]["reason"] == f"same bytes as asset {original_id}"
    for name in ("c_same_pcm.wav", "d_quieter.ogg", "e_reencoded.mp3"):
        assert items[name]["status"] == "duplicate", (name, items[name])
        assert original_id in items[name]["reason"]
    ledger = Ledger(workspace.ledger_url)
    assert ledger.get("assets", items["d_quieter.ogg"]["asset_id"])["duplicate_of"] == original_id


@pytest.mark.parametrize("seconds", [3.5, 6.0])
def test_short_files_have_their_near_copies_found_too(tmp_path: Path, workspace: Workspace, seconds: float) -> None:
    """A file of a few seconds has fewer Chromaprint items than seconds; the overlap rule must allow for it."""
    corpus = tmp_path / "c"
    write(corpus / "a.flac", melody(30, seconds=seconds))
    write(corpus / "b_reencoded.ogg", melody(30, seconds=seconds) * 0.7, format="OGG", subtype="VORBIS")
    others = [f"c_other{seed}.flac" for seed in range(31, 36)]
    for seed, name in enumerate(others, start=31):
        write(corpus / name, melody(seed, seconds=seconds))
    rows = [{"path": name, "license": "CC0-1.0"} for name in ("a.flac", "b_reencoded.ogg", *others)]
    items = ingest(workspace, [corpus], write_manifest(corpus, rows))
    assert items["b_reencoded.ogg"]["status"] == "duplicate", items["b_reencoded.ogg"]
    assert items["a.flac"]["asset_id"] in items["b_reencoded.ogg"]["reason"]
    assert [items[name]["status"] for name in others] == ["accepted"] * len(others), "other short music is new"


def test_blocklisted_work_and_its_excerpt_are_blocked(tmp_path: Path, workspace: Workspace) -> None:
    protected = write(tmp_path / "protected" / "hit.wav", melody(30, seconds=45))
    add_to_blocklist(workspace, [protected], "label catalogue")
    corpus = tmp_path / "c"
    excerpt = melody(30, seconds=45)[10 * RATE: 40 * RATE] * 0.8
    write(corpus / "excerpt.ogg", excerpt, format="OGG", subtype="VORBIS")
    rows = [{"path": "excerpt.ogg", "license": "CC0-1.0"}, _ok(corpus, "fine.flac", 31)]
    items = ingest(workspace, [corpus], write_manifest(corpus, rows))
    assert items["excerpt.ogg"]["status"] == "blocked"
    assert "label catalogue" in items["excerpt.ogg"]["reason"]
    assert items["fine.flac"]["status"] == "accepted"


def test_ingesting_again_changes_nothing(tmp_path: Path, workspace: Workspace) -> None:
    corpus = tmp_path / "c"
    rows = [_ok(corpus, f"t{i}.flac", 40 + i) for i in range(3)] + [{"path": "bad.wav", "license": "CC0-1.0"}]
    (corpus / "bad.wav").write_bytes(b"RIFF")
    manifest = write_manifest(corpus, rows)
    first = ingest(workspace, [corpus], manifest)
    ledger = Ledger(workspace.ledger_url)
    head = ledger.head()
    second = ingest(workspace, [corpus], manifest)
    assert second == first
    assert ledger.head() == head, "a second identical ingest must append nothing"


def test_a_run_killed_half_way_ends_in_the_uninterrupted_state(tmp_path: Path) -> None:
    corpus = tmp_path / "c"
    rows = [_ok(corpus, f"t{i}.flac", 50 + i) for i in range(4)]
    write(corpus / "t4_copy.ogg", melody(50) * 0.7, format="OGG", subtype="VORBIS")
    rows.append({"path": "t4_copy.ogg", "license": "CC0-1.0"})
    manifest = write_manifest(corpus, rows)
    whole = Workspace(tmp_path / "whole", Settings())
    ingest(whole, [corpus], manifest)

    def state(ws: Workspace) -> dict:
        ledger = Ledger(ws.ledger_url)
        assert ledger.verify().ok
        return {row["path"]: (row["status"], row["reason"]) for row in ledger.rows("assets")}

    for kill_at in (0, 3, 4):
        root = tmp_path / f"killed{kill_at}"
        root.mkdir()
        (root / "soundtrail.toml").write_text("[ingest]\nbatch_size = 2\n")  # one ledger transaction per 2 files
        killed = Workspace(root)
        with pytest.raises(Killed):
            ingest(killed, [corpus], manifest, kill_at=kill_at)
        committed = kill_at // 2 * 2
        assert len(Ledger(killed.ledger_url).rows("assets")) == committed, "the open transaction left nothing"
        ingest(killed, [corpus], manifest)
        assert state(killed) == state(whole)
