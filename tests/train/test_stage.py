"""The training stage against a workspace: checkpoint folders, codec and model records, the step callback."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest

from soundtrail import checkpoint
from soundtrail.codec.stage import choose_codec, resolve_codec
from soundtrail.config import CodecSettings, Settings, TokenizeSettings, TrainSettings
from soundtrail.data.storage import Storage
from soundtrail.models.codec import CodecConfig
from soundtrail.provenance.ledger import Ledger, utc_now
from soundtrail.train.families import family
from soundtrail.train.loop import Placement
from soundtrail.train.stage import (
    GeneratorPlan,
    generator_settings,
    plan_generator,
    train_generator,
    train_workspace_codec,
    training_data,
)
from soundtrail.train.start import Start
from soundtrail.workspace import Workspace
from tests.audio_fixtures import melody, write
from tests.codec.test_tokenize import tiny_codec, tokenize

TINY = CodecConfig(sample_rate=8000, channels=4, strides=(4, 4, 2), latent_dim=16, num_codebooks=2, codebook_size=16)


def workspace_with_assets(root: Path, settings: Settings) -> Workspace:
    """Three accepted assets recorded as ingest records them (two train the codec, one is held out)."""
    workspace = Workspace(root, settings)
    with Ledger(workspace.ledger_url) as ledger:
        for index in range(3):
            path = write(root / "corpus" / f"a{index}.wav", melody(index, seconds=2.0, rate=8000), rate=8000)
            ledger.record("assets", f"asset{index}", {"path": str(path), "status": "accepted",
                                                      "license": "CC0-1.0", "description": f"melody {index}"},
                          "asset.test")
    return workspace


@pytest.mark.parametrize("changed", [{"batch_size": 3}, {"segment_s": 0.5}])
def test_changed_codec_training_settings_train_a_new_codec_beside_the_finished_one(
        tmp_path: Path, changed: dict[str, float]) -> None:
    """A finished run's folder is keyed by everything its resume check compares, training settings included."""
    settings = CodecSettings(steps=2, batch_size=2, segment_s=0.25)
    steps_seen: list[tuple[int, float]] = []
    first = train_workspace_codec(workspace_with_assets(tmp_path, Settings(codec=settings)), config=TINY,
                                  on_step=lambda step, loss: steps_seen.append((step, loss)))
    assert [step for step, _ in steps_seen] == [1, 2] and all(math.isfinite(loss) for _, loss in steps_seen)

    changed_settings = settings.model_copy(update=changed)
    second = train_workspace_codec(Workspace(tmp_path, Settings(codec=changed_settings)), config=TINY)

    assert second.codec.path != first.codec.path
    assert second.codec.id != first.codec.id
    assert checkpoint.is_complete(first.codec.path) and checkpoint.is_complete(second.codec.path)
    with Ledger(Workspace(tmp_path).ledger_url) as ledger:
        assert {row["id"] for row in ledger.rows("codecs")} == {first.codec.id, second.codec.id}
    again = train_workspace_codec(Workspace(tmp_path, Settings(codec=changed_settings)), config=TINY,
                                  on_step=lambda step, loss: steps_seen.append((step, loss)))
    assert again == second, "the same settings find the finished run and its record"
    assert len(steps_seen) == 2, "nothing trained again"
    assert again.codec.assets == ("asset0", "asset1") and again.held_out_assets == ["asset2"]
    assert again.codec.training == {"world_size": 1, "batch_size": changed_settings.batch_size, "grad_accum": 1,
                                    "assets_by_rank": [["asset0", "asset1"]]}
    assert again.codec.config["preset"] is None, "an architecture given directly is no preset"


def tokenize_with_tiny_codec(workspace: Workspace, folder: Path) -> tuple[str, str]:
    """Record a tiny untrained codec in ``folder`` as the workspace codec and tokenize the accepted assets with
    it: (codec path, codec id)."""
    codec_path, codec_id = tiny_codec(folder)
    with Ledger(workspace.ledger_url) as ledger:
        ledger.record("codecs", codec_id, {"kind": "soundtrail", "path": codec_path, "created_at": utc_now()},
                      "codec.trained")
        choose_codec(ledger, codec_id, "the test's codec")
        tokenize(ledger, Storage.of(workspace).shards(), codec_path, codec_id)
    return codec_path, codec_id


def workspace_with_shards(root: Path, train: TrainSettings) -> tuple[Workspace, str, list[str]]:
    """The three assets tokenized in 1 s segments by a tiny untrained codec: (workspace, codec id, shard ids)."""
    workspace = workspace_with_assets(root / "ws", Settings(tokenize=TokenizeSettings(segment_s=1.0), train=train))
    _, codec_id = tokenize_with_tiny_codec(workspace, root / "codec")
    with Ledger(workspace.ledger_url) as ledger:
        return workspace, codec_id, sorted(row["id"] for row in ledger.rows("shards", status="current"))


def test_a_generator_is_recorded_with_its_shards_and_a_rerun_finds_it(tmp_path: Path) -> None:
    workspace, codec_id, shards = workspace_with_shards(
        tmp_path, TrainSettings(ar_steps=3, batch_size=2, crop_seconds=0.25, text_encoder="learned"))

    steps: list[int] = []
    trained = train_generator(workspace, "ar", on_step=lambda step, loss: steps.append(step))
    assert steps == [1, 2, 3]
    model = trained.model
    assert (model.kind, model.codec_id, model.shards, model.steps) == ("ar", codec_id, tuple(shards), 3)
    assert model.metrics["uniform_baseline"] == pytest.approx(math.log(TINY.codebook_size))
    assert trained.to_dict() == {"model_id": model.id, "kind": "ar", "path": model.path, "codec_id": codec_id,
                                 "shards": len(shards), "metrics": dict(model.metrics), "parent": None,
                                 "predecessor": None, "base_model": None,
                                 "init_reason": "from scratch: no earlier ar model"}
    with Ledger(workspace.ledger_url) as ledger:
        head = ledger.head()
        again = train_generator(workspace, "ar", on_step=lambda step, loss: steps.append(step))
        assert ledger.head() == head, "a re-run appends nothing"
    assert again == trained and steps == [1, 2, 3], "found finished, nothing trained again"

    training = model.training
    assert (training["preset"], training["world_size"], training["ema_decay"]) == ("tiny", 1, 0.999)
    assert training["config"] == checkpoint.read_config(model.path)["config"]
    assert (training["config"]["preset"], training["config"]["n_layers"], training["config"]["d_model"]) == \
        ("tiny", 4, 256)
    assert training["shards_by_rank"] == [list(shards)]

    bigger = dataclasses.replace(generator_settings(workspace, "ar"), preset="small")
    with pytest.raises(ValueError, match=r"config\.preset: 'tiny' there, 'small' here"):
        family("ar").train(training_data(workspace), bigger, Path(model.path), None, Placement())


def test_the_pipeline_keeps_a_model_that_saw_the_current_shards_and_plans_a_new_one_when_they_change(
        tmp_path: Path) -> None:
    workspace, codec_id, _ = workspace_with_shards(
        tmp_path, TrainSettings(ar_steps=2, batch_size=2, crop_seconds=0.25, text_encoder="learned"))
    codec_path = resolve_codec(workspace).path
    assert plan_generator(workspace, "ar") == GeneratorPlan("ar", None, "no ar model yet",
                                                            Start("from scratch: no earlier ar model"))
    model = train_generator(workspace, "ar").model
    assert plan_generator(workspace, "ar") == GeneratorPlan("ar", model, "trained on the current shards already")

    path = write(workspace.root / "corpus" / "a3.wav", melody(3, seconds=2.0, rate=8000), rate=8000)
    with Ledger(workspace.ledger_url) as ledger:
        ledger.record("assets", "asset3", {"path": str(path), "status": "accepted", "license": "CC0-1.0"},
                      "asset.test")
        assert tokenize(ledger, Storage.of(workspace).shards(), codec_path, codec_id)["new_shards"] == 1
    # The plan decides whether; where the new model starts is soundtrail train's own decision ([train] init).
    plan = plan_generator(workspace, "ar")
    assert (plan.model, plan.reason, plan.start.parent) == (None, "the shards changed", model)
    settings = workspace.settings
    scratch = Workspace(workspace.root, settings.model_copy(
        update={"train": settings.train.model_copy(update={"init": "scratch"})}))
    assert (plan_generator(scratch, "ar").start.parent, plan_generator(scratch, "ar").start.predecessor) == (
        None, model.id)
    keep = Workspace(workspace.root, settings.model_copy(
        update={"pipeline": settings.pipeline.model_copy(update={"retrain_models": "never"})}))
    assert plan_generator(keep, "ar") == GeneratorPlan("ar", model, '[pipeline] retrain_models = "never"')
    continued = train_generator(workspace, "ar").model
    assert continued.parent == model.id and continued.init_reason == plan.start.reason
    assert plan_generator(workspace, "ar") == GeneratorPlan("ar", continued, "trained on the current shards already")
