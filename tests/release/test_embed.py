"""Marks by hand and the outputs folder: a mark is never silently replaced, and ``outputs/`` holds only releases."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from soundtrail.audio import decode
from soundtrail.provenance.audit import write_report
from soundtrail.provenance.ledger import Ledger
from soundtrail.release.gate import AlreadyMarkedError, release, watermark_config
from soundtrail.release.watermark import detect
from soundtrail.workspace import Workspace
from tests.audio_fixtures import melody
from tests.conftest import run_cli
from tests.release.workspaces import MODEL, generated, unrelated


def test_marked_audio_is_refused_naming_its_mark_and_forcing_records_both(tmp_path: Path, capsys) -> None:
    ws = ["--workspace", tmp_path / "ws"]
    Ledger(Workspace(tmp_path / "ws").ledger_url).close()  # an existing workspace: its ledger records the forcing
    outcomes = []
    for seed in (300, 301, 302, 303):
        clip = generated(melody(seed, 6.0), tmp_path / f"clip{seed}.wav")
        first, second = tmp_path / f"first{seed}.wav", tmp_path / f"second{seed}.wav"
        assert run_cli(["watermark", "embed", clip, first, "--payload", f"aaaa{seed:04x}", *ws], capsys)[0] == 0

        code, out, err = run_cli(["watermark", "embed", first, second, "--payload", "bbbb0000", *ws], capsys)
        assert code == 1 and out == "" and f"already carries watermark aaaa{seed:04x}" in err and "--force" in err
        assert not second.exists()

        code, out, err = run_cli(["watermark", "embed", first, second, "--payload", "bbbb0000", "--force",
                                  "--reason", "relabelled for the demo", "--by", "alice", "--json", *ws], capsys)
        with Ledger(f"sqlite:///{tmp_path / 'ws' / 'ledger.db'}") as ledger:
            overrides = [row for row in ledger.rows("overrides") if row["details"]["source"] == str(first)]
            assert ledger.verify().ok
        if code == 0:  # the new mark reads back: the ledger holds both payloads
            assert json.loads(out)["replaced_payload"] == f"aaaa{seed:04x}"
            audio, rate = decode(second)
            assert detect(audio, rate, watermark_config(Workspace(tmp_path / "ws"))).payload == 0xBBBB0000
            assert [(row["kind"], row["by"], row["reason"], row["details"]["existing_payload"],
                     row["details"]["payload"]) for row in overrides] == [
                ("watermark", "alice", "relabelled for the demo", f"aaaa{seed:04x}", "bbbb0000")]
        else:  # the marks interfere: refused, nothing written, nothing recorded
            assert code == 1 and "interfere" in err and not second.exists() and overrides == []
        outcomes.append(code)
    assert 0 in outcomes, "forcing works where the second mark can be read"


def test_the_gate_refuses_a_candidate_that_already_carries_a_mark(workspace: Workspace, tmp_path: Path,
                                                                  capsys) -> None:
    marked = tmp_path / "marked.wav"
    assert run_cli(["watermark", "embed", unrelated(tmp_path), marked, "--payload", "c0ffee42", "--workspace",
                    workspace.root], capsys)[0] == 0
    with pytest.raises(AlreadyMarkedError, match="already carries watermark c0ffee42"):
        release(workspace, marked, output_id="5ea1ed01", model_id=MODEL, prompt="", seed=0, seconds=10.0)
    assert not (workspace.root / "outputs").exists()


def test_outputs_hold_only_what_the_ledger_released(workspace: Workspace, tmp_path: Path, capsys) -> None:
    ws = ["--workspace", workspace.root]
    result = release(workspace, unrelated(tmp_path), output_id="5ea1ed01", model_id=MODEL, prompt="", seed=0,
                     seconds=10.0)
    code, out, _ = run_cli(["ledger", "verify", "--json", *ws], capsys)
    assert code == 0 and json.loads(out)["outputs"] == {"ok": True, "released": 1, "unexpected": [], "missing": [],
                                                        "changed": []}

    planted = workspace.root / "outputs" / "0badc0de.wav"
    code, _, err = run_cli(["watermark", "embed", unrelated(tmp_path, seed=201), planted, "--payload", "0badc0de",
                            *ws], capsys)
    assert code == 1 and "release gate" in err and not planted.exists(), "embed never writes into outputs/"
    (workspace.root / "outputs" / "sub").mkdir()
    link = workspace.root / "outputs" / "sub" / "link.wav"
    link.symlink_to(tmp_path / "elsewhere.wav")
    code, _, err = run_cli(["watermark", "embed", unrelated(tmp_path, seed=201), link, *ws], capsys)
    assert code == 1 and "release gate" in err and not (tmp_path / "elsewhere.wav").exists()
    link.unlink()

    shutil.copyfile(result.path, planted)  # a released-looking file the ledger never released
    saved = result.path.read_bytes()
    result.path.write_bytes(saved[:-2] + b"\0\0")
    code, out, err = run_cli(["ledger", "verify", "--json", *ws], capsys)
    document = json.loads(out)
    assert code == 1 and not document["ok"] and "outputs/0badc0de.wav was not released by the ledger" in err
    assert (document["outputs"]["unexpected"], document["outputs"]["changed"]) == (["0badc0de.wav"], ["5ea1ed01"])
    report = json.loads(write_report(workspace, "json").read_text())
    assert report["outputs_check"]["unexpected"] == ["0badc0de.wav"]
    assert [row["file"] for row in report["releases"]] == ["changed"]
    assert "not released by the ledger" in write_report(workspace, "md").read_text()

    planted.unlink()
    result.path.unlink()
    code, _, err = run_cli(["ledger", "verify", *ws], capsys)
    assert code == 1 and "output 5ea1ed01 was released but its file is missing" in err
