"""What a generator trains on, and the ledger record that proves it.

Training reads only the *current* shards of the codec's shard set (superseded shards hold
revoked assets), and the model record lists exactly those shards by sha256 plus the codec, so
``audit model`` can walk back to every licensed source and ``takedown`` forward to the model.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from soundtrail.atomic import sha256_file
from soundtrail.codec.codecs import load_codec
from soundtrail.codec.quality import evaluate_codec
from soundtrail.codec.stage import record_codec, resolve_codec, split_assets
from soundtrail.codec.tokenize import shard_set_dir
from soundtrail.data.shards import CodecInfo, manifest_entries, read_codec_info
from soundtrail.models.codec import CodecConfig
from soundtrail.provenance.ledger import Ledger, utc_now
from soundtrail.train.codec import CodecTrainConfig, train_codec
from soundtrail.workspace import Workspace


@dataclass(frozen=True)
class TrainingData:
    """The shard files a model will read, their sha256s, and the codec that made them."""

    codec_id: str
    codec_path: str
    codec: CodecInfo
    files: list[Path]
    shard_ids: list[str]


def training_data(workspace: Workspace, codec_id: str | None = None) -> TrainingData:
    """Current shards of the codec's shard set, checked against the manifest's sha256s."""
    codec = resolve_codec(workspace, codec_id)
    set_dir = shard_set_dir(workspace.path("shards"), codec["id"], workspace.settings.tokenize.segment_s)
    entries = manifest_entries(set_dir)
    if not entries:
        raise ValueError(f"no shards for codec {codec['id']}: run `soundtrail tokenize` first")
    with Ledger(workspace.ledger_url) as ledger:
        current = {row["id"] for row in ledger.rows("shards", status="current", codec_id=codec["id"])}
    files, ids = [], []
    for entry in entries:
        path = set_dir / entry.file
        if entry.sha256 not in current:
            raise ValueError(f"shard {entry.file} is not a current shard in the ledger: re-run `soundtrail tokenize`")
        if sha256_file(path) != entry.sha256:
            raise ValueError(f"shard {entry.file} changed since it was written (sha256 differs from the manifest)")
        files.append(path)
        ids.append(entry.sha256)
    return TrainingData(codec["id"], codec["path"], read_codec_info(files[0]), files, ids)


def run_dir(workspace: Workspace, kind: str, data: TrainingData, identity: dict[str, Any]) -> Path:
    """One checkpoint folder per (kind, shards, codec, configuration): re-running resumes it."""
    key = json.dumps({"kind": kind, "codec": data.codec_id, "shards": sorted(data.shard_ids), **identity},
                     sort_keys=True, default=str)
    return workspace.path("checkpoints") / kind / hashlib.sha256(key.encode()).hexdigest()[:12]


def record_model(workspace: Workspace, kind: str, directory: Path, data: TrainingData, text_encoder: str,
                 steps: int, metrics: dict[str, Any], run_id: str | None = None) -> str:
    """Record a trained model; its id is the first 16 hex digits of its weights' sha256."""
    model_id = sha256_file(directory / "model.safetensors")[:16]
    with Ledger(workspace.ledger_url) as ledger:
        if ledger.get("models", model_id) is None:  # a re-run that found the finished model appends nothing
            ledger.record("models", model_id, {
                "kind": kind, "path": str(directory), "codec_id": data.codec_id, "shards": sorted(data.shard_ids),
                "text_encoder": text_encoder, "steps": steps, "metrics": metrics, "created_at": utc_now(),
            }, "model.trained", run_id=run_id)
    return model_id


def resolve_model(workspace: Workspace, model: str) -> dict[str, Any]:
    """A model row by id, or the newest model of a kind (``ar`` / ``diffusion``)."""
    with Ledger(workspace.ledger_url) as ledger:
        if model in ("ar", "diffusion"):
            rows = sorted(ledger.rows("models", kind=model), key=lambda row: row["created_at"] or "")
            if not rows:
                raise ValueError(f"no {model} model yet: run `soundtrail train {model}`")
            return rows[-1]
        row = ledger.get("models", model)
    if row is None:
        raise ValueError(f"no model {model!r} in the ledger")
    return row


def codec_run_dir(workspace: Workspace, asset_ids: list[str], config: CodecConfig, steps: int) -> Path:
    """A checkpoint folder per (assets, architecture, steps): new data means a new codec, not an overwrite."""
    key = json.dumps({"assets": sorted(asset_ids), "config": asdict(config), "steps": steps}, sort_keys=True)
    return workspace.path("checkpoints") / "codec" / hashlib.sha256(key.encode()).hexdigest()[:12]


def train_workspace_codec(workspace: Workspace, steps: int | None = None, config: CodecConfig | None = None,
                          on_step: Callable[[int, float], None] | None = None) -> dict[str, Any]:
    """Train (or resume, or find finished) the workspace codec on accepted assets and record it.

    ``on_step(step, loss)`` runs after every optimizer step this call takes.
    """
    settings = workspace.settings.codec
    steps = steps or settings.steps
    config = config or CodecConfig()
    with Ledger(workspace.ledger_url) as ledger:
        train_rows, held_rows = split_assets(ledger.rows("assets", status="accepted"))
    if not train_rows:
        raise ValueError("no accepted assets to train a codec on: run `soundtrail ingest` first")
    out_dir = codec_run_dir(workspace, [row["id"] for row in train_rows], config, steps)
    train = CodecTrainConfig(batch_size=settings.batch_size, segment_seconds=settings.segment_s)
    report = (lambda step, metrics: on_step(step, metrics["loss"])) if on_step is not None else None
    result = train_codec([row["path"] for row in train_rows], out_dir, config, steps, train, report)
    with Ledger(workspace.ledger_url) as ledger:
        recorded = ledger.get("codecs", result.codec_id)
    if recorded is not None:  # finished earlier: its record (and held-out scores) stand, nothing to append
        return {"codec_id": result.codec_id, **{key: recorded[key] for key in ("kind", "path", "config", "assets",
                                                                               "metrics")},
                "held_out_assets": [row["id"] for row in held_rows]}
    by_path = {row["path"]: row["id"] for row in train_rows}
    metrics: dict[str, Any] = {"initial_loss": result.initial_loss, "final_loss": result.final_loss,
                               "steps": result.steps, "device": result.device}
    if held_rows:
        metrics["held_out"] = evaluate_codec(load_codec(out_dir), [row["path"] for row in held_rows])
    record = {"kind": "soundtrail", "path": str(out_dir), "config": asdict(config),
              "assets": sorted(by_path[path] for path in result.assets_seen), "metrics": metrics}
    with Ledger(workspace.ledger_url) as ledger:
        record_codec(ledger, result.codec_id, record)
    return {"codec_id": result.codec_id, **record, "held_out_assets": [row["id"] for row in held_rows]}
