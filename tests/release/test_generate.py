"""Generate with a real (tiny) model, then the gate: what stays on disk, and what a takedown does to the model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from soundtrail.audio import decode, load_mono
from soundtrail.config import Settings
from soundtrail.provenance.credentials import read_credentials
from soundtrail.provenance.ledger import Ledger
from soundtrail.provenance.outputs import OutputsPathError, check_outputs
from soundtrail.provenance.overrides import Override
from soundtrail.provenance.takedown import revoke
from soundtrail.release import generate as generate_module
from soundtrail.release.gate import watermark_config
from soundtrail.release.generate import TakedownHoldError, generate, output_id_for
from soundtrail.release.watermark import detect
from soundtrail.train.families import Generated
from soundtrail.workspace import Workspace
from tests.conftest import run_cli
from tests.release.workspaces import asset_ids, train_tiny_ar

SECONDS = 5.0
AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".mp3", ".opus", ".m4a"}


@pytest.fixture(scope="module")
def trained(base: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The release workspace with a tiny AR model trained on its shards; (folder, model id)."""
    root = shutil.copytree(base, tmp_path_factory.mktemp("generate") / "ws")
    return root, train_tiny_ar(Workspace(root, Settings())).id


@pytest.fixture
def workspace_and_model(trained: tuple[Path, str], tmp_path: Path) -> tuple[Workspace, str]:
    root, model_id = trained
    return Workspace(shutil.copytree(root, tmp_path / "ws"), Settings()), model_id


def audio_files(root: Path) -> list[Path]:
    return sorted(path for path in root.rglob("*") if path.suffix.lower() in AUDIO_SUFFIXES)


def test_released_and_blocked_generations_leave_only_the_released_file(workspace_and_model, monkeypatch) -> None:
    workspace, model_id = workspace_and_model
    released = generate(workspace, model_id, "plucked melody", SECONDS, seed=0)
    assert released["status"] == "released", released

    copied = asset_ids(workspace)["track12.flac"]
    with Ledger(workspace.ledger_url) as ledger:
        copied_path = ledger.get("assets", copied)["path"]

    def copying_model(record, model_folder, codec_folder, prompt, seconds, seed):  # a model that memorised track12
        audio = load_mono(copied_path, 16_000)[2 * 16_000:10 * 16_000]
        return Generated(audio.astype(np.float32), 16_000, None, 0.0)

    monkeypatch.setattr(generate_module.families, "generate", copying_model)
    blocked = generate(workspace, model_id, "plucked melody", SECONDS, seed=1)
    assert blocked["status"] == "blocked" and blocked["matches"][0]["asset_id"] == copied

    final = workspace.root / "outputs" / f"{released['output_id']}.wav"
    assert audio_files(workspace.root) == [final], "no raw, marked or signed copy anywhere else in the workspace"
    assert not list((workspace.root / "staging").iterdir()), "staging keeps nothing once the gate has decided"
    audio, rate = decode(final)
    assert detect(audio, rate, watermark_config(workspace)).payload == int(released["output_id"], 16)
    assert read_credentials(final).validation_ok
    evidence = json.loads(Path(blocked["evidence"]).read_text())
    assert evidence["matches"][0]["asset_id"] == copied and evidence["verdict"] == "block"
    with Ledger(workspace.ledger_url) as ledger:
        assert check_outputs(workspace, ledger).ok and ledger.verify().ok
        head = ledger.head()

    def no_model(*_args):
        raise AssertionError("a decided request is answered from the ledger, not generated again")

    monkeypatch.setattr(generate_module.families, "generate", no_model)
    assert generate(workspace, model_id, "plucked melody", SECONDS, seed=0)["path"] == released["path"]
    assert generate(workspace, model_id, "plucked melody", SECONDS, seed=1)["status"] == "blocked"
    with Ledger(workspace.ledger_url) as ledger:
        assert ledger.head() == head


def test_a_model_trained_on_a_taken_down_asset_generates_only_on_record(workspace_and_model, capsys) -> None:
    workspace, model_id = workspace_and_model
    asset = asset_ids(workspace)["track13.flac"]
    with Ledger(workspace.ledger_url) as ledger:
        takedown = revoke(ledger, asset, "Label 13 withdrew the track")
        head = ledger.head()
    with pytest.raises(TakedownHoldError, match=f"takedown {takedown.takedown_id} of asset {asset}"):
        generate(workspace, model_id, "plucked melody", SECONDS, seed=2)

    ws = ["--workspace", workspace.root, "--model", model_id, "--prompt", "plucked melody", "--seed", "2"]
    code, out, err = run_cli(["generate", "--out", workspace.root.parent / "x.wav", *ws], capsys)
    assert code == 1 and out == "" and len(err.strip().splitlines()) == 1
    assert takedown.takedown_id in err and "--override-takedown --reason" in err and "Traceback" not in err
    code, _, err = run_cli(["generate", "--out", workspace.root.parent / "x.wav", "--override-takedown", *ws], capsys)
    assert code == 2 and "--reason" in err
    with Ledger(workspace.ledger_url) as ledger:
        assert ledger.head() == head and ledger.rows("outputs") == [], "a refusal records nothing"

    result = generate(workspace, model_id, "plucked melody", SECONDS, seed=2,
                      override=Override("alice", "rights holder agreed to this demo in writing, ref 42"))
    assert result["status"] == "released"
    output_id = output_id_for(model_id, "plucked melody", 2, SECONDS)
    with Ledger(workspace.ledger_url) as ledger:
        row = ledger.get("overrides", f"takedown-{output_id}")
        assert (row["kind"], row["by"], row["reason"]) == ("takedown", "alice",
                                                           "rights holder agreed to this demo in writing, ref 42")
        assert row["details"]["takedowns"] == [takedown.takedown_id] and row["details"]["model_id"] == model_id
        assert [e["kind"] for e in ledger.events("overrides")] == ["override.takedown"]
        assert ledger.verify().ok


def test_generate_never_writes_into_outputs(workspace_and_model, capsys) -> None:
    workspace, model_id = workspace_and_model
    inside = workspace.root / "outputs" / "mine.wav"
    with pytest.raises(OutputsPathError, match="only what the release gate released"):
        generate(workspace, model_id, "plucked melody", SECONDS, seed=3, out=inside)
    code, _, err = run_cli(["generate", "--out", inside, "--model", model_id, "--prompt", "x", "--workspace",
                            workspace.root], capsys)
    assert code == 1 and "release gate" in err
    assert not inside.exists()
