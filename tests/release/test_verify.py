"""``soundtrail verify``: credentials, watermark and ledger record of any file, and whether they agree."""

from __future__ import annotations

import json
from pathlib import Path

from soundtrail.audio import decode, write_wav
from soundtrail.provenance.credentials import SoftBinding, read_credentials, sign_wav
from soundtrail.provenance.ledger import Ledger
from soundtrail.provenance.lineage import training_license_summary
from soundtrail.release.gate import mark, release, signing_identity, watermark_config
from soundtrail.release.watermark import ALGORITHM
from soundtrail.workspace import Workspace
from tests.conftest import run_cli
from tests.release.workspaces import MODEL, unrelated


def verify(workspace: Workspace, path: Path, capsys) -> tuple[dict, str]:
    code, out, _ = run_cli(["verify", path, "--json", "--workspace", workspace.root], capsys)
    assert code == 0
    code, _, text = run_cli(["verify", path, "--workspace", workspace.root], capsys)
    assert code == 0
    return json.loads(out), text


def test_a_released_file_and_what_happens_to_its_copies(workspace: Workspace, tmp_path: Path, capsys) -> None:
    released = release(workspace, unrelated(tmp_path), output_id="5ea1ed01", model_id=MODEL, prompt="pluck",
                       seed=1, seconds=10.0).path
    result, text = verify(workspace, released, capsys)
    credentials, watermark, ledger = result["credentials"], result["watermark"], result["ledger"]
    assert credentials["valid"] and credentials["signer"] == "soundtrail local signer"
    assert credentials["trust"] == "this workspace's demo CA" and credentials["demo_signer"]
    assert credentials["soft_binding"] == {"alg": ALGORITHM, "payload": "5ea1ed01", "known_algorithm": True}
    assert (watermark["payload"], watermark["matches_manifest"]) == ("5ea1ed01", True)
    assert ledger["found_by"] == "watermark" and ledger["file_is_released_copy"]
    assert (ledger["output"]["status"], ledger["output"]["prompt"], ledger["model"]["id"]) == ("released", "pluck",
                                                                                              MODEL)
    with Ledger(workspace.ledger_url) as led:
        summary = training_license_summary(led, MODEL)
    assert ledger["training"]["assets"] == summary["assets"] == 3
    assert ledger["training"]["licenses"] == summary["licenses"] and ledger["training"]["digest_matches_manifest"]
    assert result["consistent"]
    assert "demo CA, untrusted outside it" in text and "consistent: yes" in text

    stripped = tmp_path / "stripped.wav"  # the audio re-saved without its manifest: the mark still names it
    audio, rate = decode(released)
    write_wav(stripped, audio, rate)
    result, text = verify(workspace, stripped, capsys)
    assert not result["credentials"]["present"] and result["watermark"]["payload"] == "5ea1ed01"
    assert result["ledger"]["output"]["id"] == "5ea1ed01" and not result["ledger"]["file_is_released_copy"]
    assert not result["consistent"] and "credentials: none" in text and "NOT byte for byte" in text

    tampered = tmp_path / "tampered.wav"
    data = bytearray(released.read_bytes())
    data[5000:5010] = bytes(10)  # inside the audio samples
    tampered.write_bytes(bytes(data))
    result, _ = verify(workspace, tampered, capsys)
    assert result["credentials"]["present"] and not result["credentials"]["valid"] and not result["consistent"]

    foreign, _ = verify(workspace, unrelated(tmp_path, seed=250, name="foreign.wav"), capsys)
    assert not foreign["credentials"]["present"] and not foreign["watermark"]["detected"]
    assert foreign["ledger"] == {"output": None, "file_is_released_copy": None, "model": None, "training": None,
                                 "found_by": None}


def test_a_mark_that_disagrees_with_its_manifest_is_reported(workspace: Workspace, tmp_path: Path, capsys) -> None:
    audio, rate = decode(unrelated(tmp_path))
    marked = tmp_path / "marked.wav"
    write_wav(marked, mark(audio, rate, 0x0BADF00D, watermark_config(workspace)), rate)
    signed = tmp_path / "signed.wav"
    with Ledger(workspace.ledger_url) as ledger:
        summary = training_license_summary(ledger, MODEL)
    sign_wav(marked, signed, signing_identity(workspace), model_id=MODEL, training_license_summary=summary,
             output_id="5ea1ed01", soft_binding=SoftBinding(ALGORITHM, "5ea1ed01", 10_000))
    assert read_credentials(signed).validation_ok
    result, text = verify(workspace, signed, capsys)
    assert result["watermark"]["payload"] == "0badf00d" and result["watermark"]["matches_manifest"] is False
    assert not result["consistent"] and "NOT the one the manifest declares" in text


def test_an_unreadable_file_is_one_line_and_exit_1(workspace: Workspace, tmp_path: Path, capsys) -> None:
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF not really")
    code, out, err = run_cli(["verify", junk, "--workspace", workspace.root], capsys)
    assert code == 1 and out == "" and len(err.strip().splitlines()) == 1 and "junk.wav" in err
