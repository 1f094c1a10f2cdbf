"""The release gate on a small real workspace: ingest, tokenize, then screen, watermark, sign and record."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from soundtrail.atomic import sha256_file
from soundtrail.audio import decode
from soundtrail.provenance.credentials import TRAINED_ALGORITHMIC_MEDIA, read_credentials, training_digest
from soundtrail.provenance.ledger import Ledger
from soundtrail.provenance.lineage import training_license_summary
from soundtrail.provenance.takedown import revoke
from soundtrail.release.gate import ReleaseError, new_output_id, release, watermark_config
from soundtrail.release.watermark import detect
from soundtrail.screening import stage as screen_index
from soundtrail.screening.screener import ScreenThresholds
from soundtrail.screening.stage import asset_codes, screen_file, screening_index
from soundtrail.workspace import Workspace
from tests.audio_fixtures import RATE, melody, write, write_manifest
from tests.conftest import run_cli
from tests.ingest.test_catalog import ingest
from tests.release.workspaces import ASSET_SECONDS, MODEL, asset_ids, copied_excerpt, unrelated


def gate(workspace: Workspace, candidate: Path, output_id: str):
    return release(workspace, candidate, output_id=output_id, model_id=MODEL, prompt="plucked melody", seed=7,
                   seconds=10.0)


def test_copied_excerpt_is_blocked_with_evidence_and_nothing_released(workspace: Workspace, tmp_path: Path) -> None:
    copied = asset_ids(workspace)["track12.flac"]
    result = gate(workspace, copied_excerpt(tmp_path), "0badc0de")
    assert result.status == "blocked" and result.verdict == "block"
    assert result.path is None and result.credential is None
    best = result.matches[0]
    assert best["asset_id"] == copied
    assert best["query_offset_s"] == pytest.approx(2.0, abs=1.0)
    assert best["asset_offset_s"] == pytest.approx(2.0, abs=1.0)
    assert best["duration_s"] >= 5.0
    assert not list(workspace.root.glob("outputs/*"))
    evidence = json.loads(result.evidence.read_text())
    assert evidence["output_id"] == "0badc0de" and evidence["verdict"] == "block"
    assert evidence["matches"] == result.matches and evidence["model_id"] == MODEL
    assert evidence["methods"] == ["chromaprint", "landmarks", "tokens"]  # registry order
    ledger = Ledger(workspace.ledger_url)
    row = ledger.get("outputs", "0badc0de")
    assert (row["status"], row["verdict"], row["path"]) == ("blocked", "block", None)
    assert row["screening"]["matches"] == result.matches
    assert [e["kind"] for e in ledger.events("outputs", "0badc0de")] == ["output.screened", "output.blocked"]
    head = ledger.head()
    again = gate(workspace, copied_excerpt(tmp_path), "0badc0de")
    assert again == result and ledger.head() == head
    assert ledger.verify().ok
    ledger.close()


def test_unrelated_clip_is_released_marked_signed_and_chained(workspace: Workspace, tmp_path: Path) -> None:
    result = gate(workspace, unrelated(tmp_path), "5ea1ed01")
    assert (result.status, result.verdict, result.payload_hex) == ("released", "pass", "5ea1ed01")
    assert result.path == workspace.root / "outputs" / "5ea1ed01.wav"
    assert sorted(p.name for p in result.path.parent.iterdir()) == ["5ea1ed01.wav"]  # no staging left behind
    audio, rate = decode(result.path)
    found = detect(audio, rate, watermark_config(workspace))
    assert found.detected and found.payload == 0x5EA1ED01 and found.p_value < 1e-6
    report = read_credentials(result.path)
    assert report.validation_ok and report.output_id == "5ea1ed01" and report.model_id == MODEL
    assert report.digital_source_type == TRAINED_ALGORITHMIC_MEDIA
    ledger = Ledger(workspace.ledger_url)
    assert report.training_digest == training_digest(training_license_summary(ledger, MODEL))
    row = ledger.get("outputs", "5ea1ed01")
    assert (row["status"], row["verdict"], row["watermark_payload"]) == ("released", "pass", "5ea1ed01")
    assert row["sha256"] == sha256_file(result.path) == row["credential"]["signed_sha256"]
    assert row["credential"]["manifest_label"] == report.manifest_label
    assert (row["model_id"], row["prompt"], row["seed"], row["seconds"]) == (MODEL, "plucked melody", 7, 10.0)
    kinds = [e["kind"] for e in ledger.events("outputs", "5ea1ed01")]
    assert kinds == ["output.screened", "output.watermarked", "output.credentialed", "output.released"]
    head, released_bytes = ledger.head(), result.path.read_bytes()
    assert gate(workspace, unrelated(tmp_path), "5ea1ed01") == result
    assert ledger.head() == head and result.path.read_bytes() == released_bytes
    with pytest.raises(ReleaseError, match="already used"):
        gate(workspace, unrelated(tmp_path, seed=201, name="other.wav"), "5ea1ed01")
    assert ledger.verify().ok
    ledger.close()


def test_generator_codes_that_repeat_a_training_asset_are_blocked(workspace: Workspace, tmp_path: Path) -> None:
    index = screening_index(workspace)
    copied = asset_ids(workspace)["track12.flac"]
    memorised = asset_codes(index.snapshot.tokens, {copied})[copied]
    frame_rate = index.snapshot.tokens.frame_rate
    codes = memorised[None, int(2 * frame_rate):int(9 * frame_rate)]  # 7 s of its first codebook, from 2 s
    result = release(workspace, unrelated(tmp_path), output_id="70ce4500", model_id=MODEL, prompt="", seed=0,
                     seconds=10.0, codes=codes)
    assert result.status == "blocked"
    tokens = [m for m in result.matches if m["method"] == "tokens"]
    assert tokens[0]["asset_id"] == copied and tokens[0]["score"] > 0.9
    assert (tokens[0]["query_offset_s"], tokens[0]["asset_offset_s"]) == (0.0, pytest.approx(2.0))


def test_a_flagged_clip_is_released_with_the_flag_recorded(workspace: Workspace, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    never_block = ScreenThresholds.declared(chromaprint_block=2.0, tokens_block=2.0, landmarks_block=2.0)
    monkeypatch.setattr(screen_index, "screen_thresholds", lambda _workspace: never_block)
    result = gate(workspace, copied_excerpt(tmp_path), "00f1a900")
    assert (result.status, result.verdict) == ("released", "flag") and result.matches
    ledger = Ledger(workspace.ledger_url)
    row = ledger.get("outputs", "00f1a900")
    assert (row["status"], row["verdict"]) == ("released", "flag")
    assert row["screening"]["matches"][0]["asset_id"] == asset_ids(workspace)["track12.flac"]
    ledger.close()


def test_unknown_model_and_bad_output_id_are_refused_before_anything_is_recorded(workspace: Workspace,
                                                                                 tmp_path: Path) -> None:
    clip = unrelated(tmp_path)
    with pytest.raises(LookupError, match="no-such-model"):
        release(workspace, clip, output_id="12345678", model_id="no-such-model", prompt="", seed=0, seconds=1.0)
    with pytest.raises(ValueError, match="8 hex digits"):
        gate(workspace, clip, "xyz")
    ledger = Ledger(workspace.ledger_url)
    assert ledger.rows("outputs") == []
    assert re.fullmatch("[0-9a-f]{8}", new_output_id(ledger))
    ledger.close()


def test_a_clip_that_cannot_carry_the_mark_is_refused(workspace: Workspace, tmp_path: Path) -> None:
    silent = tmp_path / "silent.wav"
    sf.write(str(silent), np.zeros(6 * RATE, np.float32), RATE)
    with pytest.raises(ReleaseError, match="not detectable"):
        gate(workspace, silent, "511e0000")
    assert not list((workspace.root / "outputs").glob("*.wav"))
    ledger = Ledger(workspace.ledger_url)
    assert ledger.get("outputs", "511e0000")["status"] == "screened"  # screened, never released
    ledger.close()


def test_index_is_cached_and_rebuilt_when_the_corpus_changes(workspace: Workspace, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    decoded: list[str] = []
    monkeypatch.setattr(screen_index, "decode", lambda path: decoded.append(Path(path).name) or decode(path))
    first = screening_index(workspace)
    stamp = (first.directory / "screener.json").stat().st_mtime_ns
    assert len(first.screener) == 3 and len(first.screener.methods["tokens"]) == 3
    assert screening_index(workspace).directory == first.directory
    assert (first.directory / "screener.json").stat().st_mtime_ns == stamp  # loaded, not rebuilt

    newcomer = tmp_path / "more" / "track14.flac"
    write(newcomer, melody(14, ASSET_SECONDS))
    excerpt = tmp_path / "excerpt14.wav"
    sf.write(str(excerpt), np.concatenate([melody(103, 2.0), melody(14, ASSET_SECONDS)[RATE:9 * RATE]]), RATE)
    assert screen_file(workspace, excerpt).verdict == "pass"
    decoded.clear()
    ingest(workspace, [newcomer.parent], write_manifest(newcomer.parent, [
        {"path": newcomer.name, "license": "CC0-1.0", "rights_holder": "Label 14"}]))
    second = screening_index(workspace)
    assert second.directory != first.directory and not first.directory.exists()
    assert len(second.screener) == 4 and len(second.screener.methods["tokens"]) == 3  # not tokenized yet
    assert decoded == ["track14.flac"]  # the previous index was extended, not rebuilt
    blocked = screen_file(workspace, excerpt)
    assert blocked.verdict == "block" and blocked.matches[0].asset_id == asset_ids(workspace)["track14.flac"]

    track14 = asset_ids(workspace)["track14.flac"]
    with Ledger(workspace.ledger_url) as ledger:  # neither accepted nor protected (say, held in a dispute)
        ledger.record("assets", track14, {"status": "quarantined"}, "asset.quarantined")
    decoded.clear()
    third = screening_index(workspace)  # the corpus is the first one again: so is the key
    assert third.directory == first.directory and not second.directory.exists() and len(third.screener) == 3
    assert sorted(decoded) == ["track11.flac", "track12.flac", "track13.flac"]  # rebuilt without it

    with Ledger(workspace.ledger_url) as ledger:
        takedown = revoke(ledger, track14, "Label 14 opted out")
    decoded.clear()
    fourth = screening_index(workspace)  # taken down: indexed again, as a protected work, by extending the last
    assert fourth.directory != first.directory and len(fourth.screener) == 4 and decoded == ["track14.flac"]
    screened = fourth.screen(excerpt)
    assert screened.result.verdict == "block" and screened.result.matches[0].asset_id == track14
    assert screened.protected == [{"work": track14, "protected_by": "takedown", "takedown_id": takedown.takedown_id,
                                   "reason": "Label 14 opted out"}]


def test_cli_screen_and_watermark_json(workspace: Workspace, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    ws = ["--workspace", workspace.root]
    code, out, _ = run_cli(["screen", copied_excerpt(tmp_path), "--json", *ws], capsys)
    document = json.loads(out)
    assert code == 0 and set(document) == {"verdict", "matches"} and document["verdict"] == "block"
    assert set(document["matches"][0]) == {"asset_id", "query_offset_s", "asset_offset_s", "duration_s", "score",
                                           "method"}
    code, out, _ = run_cli(["screen", unrelated(tmp_path), "--json", *ws], capsys)
    assert code == 0 and json.loads(out) == {"verdict": "pass", "matches": []}

    marked = tmp_path / "marked.wav"
    code, out, _ = run_cli(["watermark", "embed", unrelated(tmp_path), marked, "--payload", "C0FFEE42", *ws], capsys)
    assert code == 0 and out.strip() == "c0ffee42"
    code, out, _ = run_cli(["watermark", "detect", marked, "--json", *ws], capsys)
    document = json.loads(out)
    assert code == 0 and document["detected"] is True and document["payload"] == "c0ffee42"
    assert set(document) == {"detected", "payload", "p_value"} and document["p_value"] < 1e-6
    code, out, _ = run_cli(["watermark", "detect", unrelated(tmp_path), "--json", *ws], capsys)
    document = json.loads(out)
    assert code == 0 and document["detected"] is False and document["payload"] is None
    code, out, _ = run_cli(["watermark", "embed", unrelated(tmp_path), tmp_path / "random.wav", *ws], capsys)
    assert code == 0 and len(out.strip()) == 8 and int(out.strip(), 16) >= 0
    code, _, err = run_cli(["watermark", "embed", unrelated(tmp_path), marked, "--payload", "nothex", *ws], capsys)
    assert code == 2 and "8 hex digits" in err
