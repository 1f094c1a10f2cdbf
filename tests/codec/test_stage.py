"""The workspace codec: a recorded choice that `codec train`, `codec use` and `[codec] checkpoint` make, and the
pipeline's plan that keeps it unless `[codec] retrain` asks for a new one."""

from __future__ import annotations

import json
from pathlib import Path
from unittest import mock

import pytest

from soundtrail.codec.stage import plan_codec, resolve_codec, use_codec
from soundtrail.config import CodecSettings, Settings
from soundtrail.provenance.ledger import Ledger
from soundtrail.train.stage import train_workspace_codec
from soundtrail.workspace import Workspace
from tests.audio_fixtures import melody, write
from tests.codec.test_codecs import save_tiny_encodec
from tests.codec.test_tokenize import tiny_codec
from tests.conftest import run_cli
from tests.train.test_stage import TINY, workspace_with_assets

CODEC = CodecSettings(steps=2, batch_size=2, segment_s=0.25)


def _choices(workspace: Workspace) -> list[tuple[str, str]]:
    with Ledger(workspace.ledger_url) as ledger:
        return [(event["payload"]["chosen_id"], event["payload"]["reason"])
                for event in ledger.events("choices", kind="codec.chosen")]


def _add_asset(workspace: Workspace, asset_id: str, seed: int) -> None:
    path = write(workspace.root / "corpus" / f"{asset_id}.wav", melody(seed, seconds=2.0, rate=8000), rate=8000)
    with Ledger(workspace.ledger_url) as ledger:
        ledger.record("assets", asset_id, {"path": str(path), "status": "accepted", "license": "CC0-1.0"},
                      "asset.test")


def test_codec_train_chooses_its_codec_and_runs_keep_it_until_the_policy_says_otherwise(tmp_path: Path) -> None:
    workspace = workspace_with_assets(tmp_path, Settings(codec=CODEC))
    assert plan_codec(workspace).train and plan_codec(workspace).reason == "the workspace has no codec yet"
    first = train_workspace_codec(workspace, config=TINY).codec
    assert _choices(workspace) == [(first.id, "`soundtrail codec train`")]
    assert resolve_codec(workspace) == first

    with Ledger(workspace.ledger_url) as ledger:
        head = ledger.head()
    assert plan_codec(workspace).codec == first
    when_changed = Workspace(tmp_path, Settings(codec=CODEC.model_copy(update={"retrain": "when-assets-change"})))
    assert plan_codec(when_changed).codec == first, "the assets it trained on are the accepted ones"
    with Ledger(workspace.ledger_url) as ledger:
        assert ledger.head() == head, "planning appends nothing"

    _add_asset(workspace, "asset3", seed=7)  # asset3 is held out now, and asset2 joins the codec's training set
    kept = plan_codec(workspace)
    assert kept.codec == first and "never" in kept.reason, "by default a new asset does not replace the codec"
    retrain = plan_codec(when_changed)
    assert retrain.train and f"accepted assets changed since codec {first.id}" in retrain.reason

    second = train_workspace_codec(when_changed, config=TINY, reason=retrain.reason).codec
    assert second.id != first.id and set(second.assets) <= {"asset0", "asset1", "asset2"}
    assert _choices(workspace) == [(first.id, "`soundtrail codec train`"), (second.id, retrain.reason)]
    assert resolve_codec(workspace) == second and plan_codec(when_changed).codec == second

    assert use_codec(workspace, first.id) == (first, True)
    assert use_codec(workspace, first.id) == (first, False), "choosing the chosen codec again records nothing"
    assert resolve_codec(workspace) == first and len(_choices(workspace)) == 3
    with pytest.raises(ValueError, match="no codec 'c0ffee'"):
        use_codec(workspace, "c0ffee")


def test_a_workspace_from_before_choices_keeps_its_newest_codec_and_codec_use_changes_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    workspace = Workspace(tmp_path / "ws")
    older_path, older_id = tiny_codec(tmp_path / "older")
    newer_path, newer_id = tiny_codec(tmp_path / "newer", seed=1)
    assert older_id != newer_id
    with Ledger(workspace.ledger_url) as ledger:  # recorded by a version that used the newest row, no choice
        ledger.record("codecs", newer_id, {"kind": "soundtrail", "path": newer_path,
                                           "created_at": "2026-11-02T00:00:00+00:00"}, "codec.trained")
        ledger.record("codecs", older_id, {"kind": "soundtrail", "path": older_path,
                                           "created_at": "2026-11-01T00:00:00+00:00"}, "codec.trained")
    assert resolve_codec(workspace, older_id).id == older_id and _choices(workspace) == [], \
        "a codec named by id needs no choice"
    assert resolve_codec(workspace).id == newer_id
    assert _choices(workspace) == [(newer_id, "the newest codec, the workspace codec before choices were recorded")]
    assert resolve_codec(workspace).id == newer_id and len(_choices(workspace)) == 1, "chosen once"

    code, out, err = run_cli(["codec", "use", "c0ffee", "--workspace", workspace.root], capsys)
    assert (code, out, err) == (1, "", "error: ValueError: no codec 'c0ffee' in the ledger\n")
    code, out, _ = run_cli(["codec", "use", older_id, "--workspace", workspace.root, "--json"], capsys)
    assert code == 0 and json.loads(out) == {"codec_id": older_id, "kind": "soundtrail", "path": older_path,
                                             "changed": True}
    assert resolve_codec(workspace).id == older_id and _choices(workspace)[-1] == (older_id, "`soundtrail codec use`")


def test_a_configured_pretrained_codec_is_recorded_and_chosen_on_first_use_and_never_trained_over(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "ws"
    save_tiny_encodec(root / "models" / "encodec")
    settings = Settings(codec=CodecSettings(checkpoint="models/encodec", retrain="when-assets-change"))
    workspace = workspace_with_assets(root, settings)

    plan = plan_codec(workspace)
    assert not plan.train and plan.reason == "[codec] checkpoint names it"
    codec = plan.codec
    assert (codec.kind, codec.path) == ("pretrained", str(root / "models" / "encodec")), "relative to the workspace"
    assert codec.config["num_codebooks"] == 2 and codec.config["sample_rate"] == 8000
    assert _choices(workspace) == [(codec.id, "[codec] checkpoint = models/encodec")]

    with Ledger(workspace.ledger_url) as ledger:
        head = ledger.head()
    with mock.patch("soundtrail.codec.stage.load_codec", side_effect=AssertionError("loaded again")):
        assert resolve_codec(workspace) == codec, "once recorded, finding it hashes its weights and loads nothing"
        assert plan_codec(workspace).codec == codec
    with Ledger(workspace.ledger_url) as ledger:
        assert ledger.head() == head

    with pytest.raises(ValueError, match=r"\[codec\] checkpoint = 'models/encodec' is the workspace codec"):
        train_workspace_codec(workspace, config=TINY)
    (root / "soundtrail.toml").write_text('[codec]\ncheckpoint = "models/encodec"\n')
    capsys.readouterr()  # transformers' own progress from saving the model
    code, out, err = run_cli(["codec", "train", "--workspace", root], capsys)  # refused before Prefect or Ray
    assert (code, out, err) == (1, "", "error: [codec] checkpoint = 'models/encodec' is the workspace codec: remove "
                                       "it from soundtrail.toml to train one\n")
    with pytest.raises(ValueError, match=r"\[codec\] checkpoint names the workspace codec"):
        use_codec(workspace, codec.id)
