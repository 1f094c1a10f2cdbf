"""Training against the workspace: which data each model trains on, where its checkpoints go, its ledger record.

Generators read only the *current* shards of the codec's shard set (superseded shards hold revoked assets), and
the model record lists exactly those shards by sha256 plus the codec, so ``audit model`` can walk back to every
licensed source and ``takedown`` forward to the model. Where a generator's weights begin (its previous model,
recorded as its parent, or afresh, and a fine-tuning family's base model) is :mod:`soundtrail.train.start`. The
codec trains on accepted assets minus a held-out set, and its record lists the assets that contributed. A
checkpoint folder is named after everything its run's resume check compares (the preset, the world size and
where it starts among it), so a changed setting trains beside a finished run instead of refusing its folder.

One process or many: the training itself goes to a :class:`~soundtrail.train.loop.Launcher`, which runs one
rank's work on each of its ``world_size`` ranks (:class:`~soundtrail.train.loop.InProcess` by default; the
flows bring Ray Train's). The record says how: ``training`` holds the preset and full config, the world size and
what each rank read (the shards of each rank for a generator, the assets of each rank for the codec), all of it
a function of the settings and the step count, so it is computed here rather than gathered from the workers.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from soundtrail import checkpoint
from soundtrail.atomic import sha256_file
from soundtrail.codec.codecs import load_codec
from soundtrail.codec.quality import evaluate_codec
from soundtrail.codec.stage import choose_codec, record_codec, resolve_codec, split_assets
from soundtrail.codec.tokenize import shard_set_dir
from soundtrail.data.shards import manifest_entries, read_codec_info
from soundtrail.data.storage import Storage
from soundtrail.models.codec import CodecConfig
from soundtrail.provenance.ledger import Ledger, utc_now
from soundtrail.provenance.records import BaseModelRecord, CodecRecord, ModelRecord
from soundtrail.train.codec import PRESETS, CodecTrainConfig, codec_result, run_codec
from soundtrail.train.families import FAMILIES, check_family_names, family
from soundtrail.train.generator import BaseModel, GeneratorSettings, TrainingData
from soundtrail.train.loop import STEPS_DIR, InProcess, Launcher, Placement, StepCallback, TrainResult
from soundtrail.train.start import Start, admit_base_model, starting_point
from soundtrail.workspace import Workspace


@dataclass(frozen=True)
class TrainedModel:
    """What ``soundtrail train`` reports: the model's record (new, or found finished)."""

    model: ModelRecord

    def to_dict(self) -> dict[str, Any]:
        """The command's JSON: the record's essentials, the shards as a count."""
        model = self.model
        return {"model_id": model.id, "kind": model.kind, "path": model.path, "codec_id": model.codec_id,
                "shards": len(model.shards), "metrics": dict(model.metrics), "parent": model.parent,
                "predecessor": model.predecessor, "base_model": model.base_model, "init_reason": model.init_reason}


@dataclass(frozen=True)
class TrainedCodec:
    """What ``soundtrail codec train`` reports: the codec's record and the assets kept out to evaluate it."""

    codec: CodecRecord
    held_out_assets: list[str]

    def to_dict(self) -> dict[str, Any]:
        codec = self.codec
        return {"codec_id": codec.id, "kind": codec.kind, "path": codec.path, "config": dict(codec.config),
                "assets": list(codec.assets), "metrics": dict(codec.metrics),
                "held_out_assets": self.held_out_assets}


def training_data(workspace: Workspace, codec_id: str | None = None) -> TrainingData:
    """Current shards of the codec's shard set, checked against the manifest's sha256s."""
    codec = resolve_codec(workspace, codec_id)
    storage = Storage.of(workspace)
    set_dir = shard_set_dir(storage.shards(), codec.id, workspace.settings.tokenize.segment_s)
    entries = manifest_entries(set_dir)
    if not entries:
        raise ValueError(f"no shards for codec {codec.id}: run `soundtrail tokenize` first")
    with Ledger(workspace.ledger_url) as ledger:  # shards and their assets as their own events say, not the tables
        shards = ledger.verified_rows("shards", status="current", codec_id=codec.id)
        ledger.verified_rows("assets", ids=[asset for shard in shards for asset in shard["asset_ids"] or []])
        current = {row["id"] for row in shards}
    files, ids = [], []
    for entry in entries:
        path = set_dir / entry.file
        if entry.sha256 not in current:
            raise ValueError(f"shard {entry.file} is not a current shard in the ledger: re-run `soundtrail tokenize`")
        if path.sha256() != entry.sha256:
            raise ValueError(f"shard {entry.file} changed since it was written (sha256 differs from the manifest)")
        files.append(path)
        ids.append(entry.sha256)
    return TrainingData(codec.id, str(storage.fetch(codec.path)), read_codec_info(files[0]), files, ids)


def _folder(workspace: Workspace, kind: str, key: dict[str, Any]) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return workspace.path("checkpoints") / kind / digest


def run_dir(workspace: Workspace, kind: str, data: TrainingData, settings: GeneratorSettings,
            world_size: int) -> Path:
    """One checkpoint folder per (family, shards, codec, settings, world size): re-running resumes it."""
    run = {key: value for key, value in asdict(settings).items() if key != "loader_workers"}  # not the data's
    return _folder(workspace, kind, {"kind": kind, "codec": data.codec_id, "shards": sorted(data.shard_ids), **run,
                                     "world_size": world_size})


def codec_run_dir(workspace: Workspace, asset_ids: list[str], config: CodecConfig, train: CodecTrainConfig,
                  steps: int, world_size: int, preset: str | None) -> Path:
    """One checkpoint folder per (assets, architecture, training settings, steps, world size): new data or new
    settings mean a new codec beside the old one."""
    return _folder(workspace, "codec", {"assets": sorted(asset_ids), "config": asdict(config), "preset": preset,
                                        "train": asdict(train), "steps": steps, "world_size": world_size})


def record_model(workspace: Workspace, model: ModelRecord, run_id: str | None = None) -> ModelRecord:
    """Record a trained model unless a re-run found it finished; returns it as the ledger holds it."""
    with Ledger(workspace.ledger_url) as ledger:
        if ledger.get("models", model.id) is None:
            ledger.record("models", model.id, model.fields(), "model.trained", run_id=run_id)
        return ModelRecord.from_row(ledger.get("models", model.id))


def resolve_model(workspace: Workspace, model: str) -> ModelRecord:
    """A model by id, or the newest model of a generator family."""
    with Ledger(workspace.ledger_url) as ledger:
        if model in FAMILIES:
            rows = sorted(ledger.rows("models", kind=model), key=lambda row: row["created_at"] or "")
            if not rows:
                raise ValueError(f"no {model} model yet: run `soundtrail train {model}`")
            return ModelRecord.from_row(rows[-1])
        row = ledger.get("models", model)
    if row is None:
        raise ValueError(f"no model {model!r} in the ledger; name a model id or a generator family "
                         f"({', '.join(FAMILIES)})")
    return ModelRecord.from_row(row)


def generator_settings(workspace: Workspace, kind: str, steps: int | None = None,
                       base: BaseModelRecord | None = None) -> GeneratorSettings:
    """How a model of family ``kind`` trains in this workspace (``[train]``, ``[model]`` for its size, and how
    ``[base_models.<kind>]`` adapts the admitted ``base`` a fine-tuning family starts from)."""
    generator = family(kind)
    train = workspace.settings.train
    adapt = workspace.settings.base_models.get(kind)
    start = None if base is None or adapt is None else BaseModel(base.path, base.id, adapt.lora_rank,
                                                                 adapt.learning_rate)
    return GeneratorSettings(steps or generator.default_steps(train), train.batch_size, train.learning_rate,
                             train.crop_seconds, train.text_encoder, train.seed,
                             preset=generator.preset(workspace.settings.model), grad_accum=train.grad_accum,
                             ema_decay=train.ema_decay, loader_workers=train.loader_workers, base=start)


@dataclass(frozen=True)
class GeneratorRun:
    """A training run of one family as this workspace makes it now: its settings (where it starts among them, so
    its checkpoint folder names its parent), the current shards, and the decision where its weights begin."""

    kind: str
    settings: GeneratorSettings
    data: TrainingData
    text_encoder: str
    start: Start
    base: BaseModelRecord | None
    directory: Path
    world_size: int


def generator_run(workspace: Workspace, kind: str, steps: int | None = None,
                  world_size: int | None = None) -> GeneratorRun:
    """The run ``soundtrail train`` would make (``steps`` overrides the family's default; ``world_size``, the
    launcher's ranks, defaults to ``[scaling] workers``); also what ``soundtrail run`` plans with, so a scheduled
    run and the command agree on the model and on where it starts."""
    generator = family(kind)
    check_family_names(workspace.settings.base_models, "[base_models]")
    base = admit_base_model(workspace, kind)
    settings = generator_settings(workspace, kind, steps, base)
    data = training_data(workspace)
    text_encoder = generator.text_encoder_id(settings)
    start = starting_point(workspace, kind, data, text_encoder, base, settings.preset)
    init = str(Storage.of(workspace).fetch(start.init)) if start.init is not None else None
    settings = dataclasses.replace(settings, init=init)
    world_size = world_size or workspace.settings.scaling.workers
    return GeneratorRun(kind, settings, data, text_encoder, start, base,
                        run_dir(workspace, kind, data, settings, world_size), world_size)


@dataclass(frozen=True)
class GeneratorPlan:
    """What ``soundtrail run`` does about one generator family: keep ``model``, or train one on the current shards
    starting where ``start`` says."""

    kind: str
    model: ModelRecord | None  # None: train one
    reason: str
    start: Start | None = None  # for a model to train: its parent, or afresh and why

    @property
    def train(self) -> bool:
        return self.model is None


def plan_generator(workspace: Workspace, kind: str) -> GeneratorPlan:
    """Keep the model that already saw the current shards with these settings; else ``[pipeline] retrain_models``
    says whether to train one.

    Whether is the pipeline's policy; where a new model starts (its previous model as parent, or afresh under
    ``[train] init = "scratch"`` and the other rules of :mod:`soundtrail.train.start`) is the decision
    ``soundtrail train`` makes, taken here from the same :func:`generator_run`.
    """
    run = generator_run(workspace, kind)
    with Ledger(workspace.ledger_url) as ledger:
        stored = Storage.of(workspace).mirror(run.directory).reference
        found = (ledger.rows("models", kind=kind, path=stored)  # or, trained before storage_uri was set:
                 or ledger.rows("models", kind=kind, path=str(run.directory)))
        previous = ledger.rows("models", kind=kind)
    if found:
        return GeneratorPlan(kind, ModelRecord.from_row(found[0]), "trained on the current shards already")
    if previous and workspace.settings.pipeline.retrain_models == "never":
        return GeneratorPlan(kind, resolve_model(workspace, kind), "[pipeline] retrain_models = \"never\"")
    return GeneratorPlan(kind, None, "the shards changed" if previous else f"no {kind} model yet", run.start)


def train_generator(workspace: Workspace, kind: str, steps: int | None = None, on_step: StepCallback | None = None,
                    run_id: str | None = None, launcher: Launcher | None = None) -> TrainedModel:
    """Train (or resume, or find finished) a model of family ``kind`` on the current shards; record it.

    It starts from the family's previous model or afresh (:func:`~soundtrail.train.start.starting_point`), a
    fine-tuning family afresh from its admitted base model. ``on_step(step, loss)`` runs after every optimizer
    step this call takes; ``launcher`` runs the training on its ranks (default: in this process).
    """
    generator = family(kind)
    launcher = launcher or InProcess()
    run = generator_run(workspace, kind, steps, launcher.world_size)
    data, settings, start, directory = run.data, run.settings, run.start, run.directory

    def work(placement: Placement, on_step: StepCallback | None) -> TrainResult:
        return generator.train(data, settings, directory, on_step, placement)

    result = launcher(work, directory, on_step)
    metrics = {"initial_loss": result.initial_loss, "final_loss": result.final_loss, "steps": result.total_steps,
               "device": result.device, **generator.baselines(data)}
    training = {"preset": settings.preset, "config": checkpoint.read_config(directory)["config"],
                "world_size": run.world_size, "batch_size": settings.batch_size, "grad_accum": settings.grad_accum,
                "ema_decay": settings.ema_decay, "shards_by_rank": settings.shards_read(data, run.world_size)}
    stored = Storage.of(workspace).publish(directory, leave_out=(STEPS_DIR,))
    model = ModelRecord(sha256_file(directory / checkpoint.WEIGHTS)[:16], kind, stored, data.codec_id,
                        tuple(sorted(data.shard_ids)), run.text_encoder, result.total_steps, metrics, utc_now(),
                        training, parent=start.parent.id if start.parent is not None else None,
                        predecessor=start.predecessor, base_model=run.base.id if run.base is not None else None,
                        init_reason=start.reason)
    return TrainedModel(record_model(workspace, model, run_id))


def check_codec_trainable(workspace: Workspace) -> None:
    """A codec trained here could not become the workspace codec while ``[codec] checkpoint`` names another."""
    if workspace.settings.codec.checkpoint:
        raise ValueError(f"[codec] checkpoint = {workspace.settings.codec.checkpoint!r} is the workspace codec: "
                         "remove it from soundtrail.toml to train one")


def train_workspace_codec(workspace: Workspace, steps: int | None = None, config: CodecConfig | None = None,
                          on_step: StepCallback | None = None, launcher: Launcher | None = None,
                          reason: str = "`soundtrail codec train`") -> TrainedCodec:
    """Train (or resume, or find finished) a codec on accepted assets, record it and choose it as the workspace
    codec, saying why (``reason``).

    ``config`` (an architecture given directly) overrides ``[model] codec``'s preset. ``on_step(step, loss)``
    runs after every optimizer step this call takes; ``launcher`` runs the training on its ranks (default: in
    this process).
    """
    check_codec_trainable(workspace)
    settings = workspace.settings.codec
    launcher = launcher or InProcess()
    steps = steps or settings.steps
    preset = None if config is not None else workspace.settings.model.codec
    config = config or PRESETS[workspace.settings.model.codec]()
    with Ledger(workspace.ledger_url) as ledger:
        train_rows, held_rows = split_assets(ledger.verified_rows("assets", status="accepted"))
    if not train_rows:
        raise ValueError("no accepted assets to train a codec on: run `soundtrail ingest` first")
    held_out = [row["id"] for row in held_rows]
    train = CodecTrainConfig(batch_size=settings.batch_size, segment_seconds=settings.segment_s,
                             grad_accum=settings.grad_accum)
    world_size = launcher.world_size
    out_dir = codec_run_dir(workspace, [row["id"] for row in train_rows], config, train, steps, world_size, preset)
    paths = sorted(row["path"] for row in train_rows)

    def work(placement: Placement, on_step: StepCallback | None) -> TrainResult:
        return run_codec(paths, out_dir, config, steps, train, on_step, placement, preset)

    result = codec_result(launcher(work, out_dir, on_step), paths, config, train, world_size)
    with Ledger(workspace.ledger_url) as ledger:
        recorded = ledger.get("codecs", result.codec_id)
        if recorded is not None:  # finished earlier: its record (and held-out scores) stand
            choose_codec(ledger, result.codec_id, reason)
            return TrainedCodec(CodecRecord.from_row(recorded), held_out)
    by_path = {row["path"]: row["id"] for row in train_rows}
    metrics: dict[str, Any] = {"initial_loss": result.run.initial_loss, "final_loss": result.run.final_loss,
                               "steps": result.run.total_steps, "device": result.run.device}
    if held_rows:
        metrics["held_out"] = evaluate_codec(load_codec(out_dir), [row["path"] for row in held_rows])
    training = {"world_size": world_size, "batch_size": train.batch_size, "grad_accum": train.grad_accum,
                "assets_by_rank": [sorted(by_path[path] for path in files) for files in result.assets_by_rank]}
    stored = Storage.of(workspace).publish(out_dir, leave_out=(STEPS_DIR,))
    codec = CodecRecord(result.codec_id, "soundtrail", stored, {"preset": preset, **dataclasses.asdict(config)},
                        tuple(sorted(by_path[path] for path in result.assets_seen)), metrics, training=training)
    with Ledger(workspace.ledger_url) as ledger:
        recorded_codec = record_codec(ledger, codec)
        choose_codec(ledger, codec.id, reason)
        return TrainedCodec(recorded_codec, held_out)
