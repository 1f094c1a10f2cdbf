"""The codec stage against the ledger: which assets train it, where it lives, which codec tokenizes.

:mod:`soundtrail.tasks.codec` knows how to train and run a codec on files; this module decides
*which* files (accepted assets, minus a held-out set for evaluation), where the checkpoint goes,
and records the result, so that any shard can be traced to the codec and the assets behind it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from soundtrail.config import Workspace
from soundtrail.models.codec import CodecConfig
from soundtrail.provenance.ledger import Ledger, utc_now
from soundtrail.tasks.codec import CodecTrainConfig, evaluate_codec, load_codec, train_codec

HELD_OUT_EVERY = 8  # every 8th accepted asset (by id) is kept out of codec training for `codec eval`


def split_assets(assets: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(train, held out): deterministic by asset id; at least one of each once there are two assets."""
    ordered = sorted(assets, key=lambda row: row["id"])
    held = [row for index, row in enumerate(ordered) if index % HELD_OUT_EVERY == HELD_OUT_EVERY - 1]
    if not held and len(ordered) >= 2:
        held = [ordered[-1]]
    train = [row for row in ordered if row not in held]
    return train, held


def codec_run_dir(workspace: Workspace, asset_ids: list[str], config: CodecConfig, steps: int) -> Path:
    """A checkpoint folder per (assets, architecture, steps): new data means a new codec, not an overwrite."""
    key = json.dumps({"assets": sorted(asset_ids), "config": asdict(config), "steps": steps}, sort_keys=True)
    return workspace.path("checkpoints") / "codec" / hashlib.sha256(key.encode()).hexdigest()[:12]


def train_workspace_codec(workspace: Workspace, steps: int | None = None,
                          config: CodecConfig | None = None) -> dict[str, Any]:
    """Train (or resume, or find finished) the workspace codec on accepted assets and record it."""
    settings = workspace.settings.codec
    steps = steps or settings.steps
    config = config or CodecConfig()
    ledger = Ledger(workspace.ledger_url)
    train_rows, held_rows = split_assets(ledger.rows("assets", status="accepted"))
    if not train_rows:
        raise ValueError("no accepted assets to train a codec on: run `soundtrail ingest` first")
    out_dir = codec_run_dir(workspace, [row["id"] for row in train_rows], config, steps)
    train = CodecTrainConfig(batch_size=settings.batch_size, segment_seconds=settings.segment_s)
    result = train_codec([row["path"] for row in train_rows], out_dir, config, steps, train)
    recorded = ledger.get("codecs", result.codec_id)
    if recorded is not None:  # finished earlier: its record (and held-out scores) stand, nothing to append
        ledger.close()
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
    _record_codec(ledger, result.codec_id, record)
    ledger.close()
    return {"codec_id": result.codec_id, **record, "held_out_assets": [row["id"] for row in held_rows]}


def _record_codec(ledger: Ledger, codec_id: str, record: dict[str, Any]) -> None:
    existing = ledger.get("codecs", codec_id)
    fields = dict(record, created_at=existing["created_at"] if existing else utc_now())
    ledger.record("codecs", codec_id, fields, "codec.trained" if record["kind"] == "soundtrail" else "codec.imported")


def register_pretrained(ledger: Ledger, path: Path) -> str:
    """Record a user's local pretrained codec (soundtrail or transformers Encodec dir); returns its id."""
    codec = load_codec(path)
    _record_codec(ledger, codec.codec_id, {"kind": "pretrained", "path": str(Path(path).resolve()),
                                           "config": {"sample_rate": codec.sample_rate, "frame_rate": codec.frame_rate,
                                                      "num_codebooks": codec.num_codebooks,
                                                      "codebook_size": codec.codebook_size},
                                           "assets": [], "metrics": {}})
    return codec.codec_id


def resolve_codec(workspace: Workspace, codec_id: str | None = None) -> dict[str, Any]:
    """The codec to use: the one named, else the configured pretrained one, else the newest trained."""
    ledger = Ledger(workspace.ledger_url)
    try:
        if codec_id is None and workspace.settings.codec.checkpoint:
            codec_id = register_pretrained(ledger, Path(workspace.settings.codec.checkpoint))
        if codec_id is not None:
            row = ledger.get("codecs", codec_id)
            if row is None:
                raise ValueError(f"no codec {codec_id!r} in the ledger")
            return row
        rows = sorted(ledger.rows("codecs"), key=lambda row: row["created_at"] or "")
        if not rows:
            raise ValueError("no codec yet: run `soundtrail codec train` or set codec.checkpoint in soundtrail.toml")
        return rows[-1]
    finally:
        ledger.close()


def evaluate_workspace_codec(workspace: Workspace, codec_id: str | None = None) -> dict[str, Any]:
    """SI-SNR, mel distance and bitrate of a codec on the held-out accepted assets."""
    row = resolve_codec(workspace, codec_id)
    ledger = Ledger(workspace.ledger_url)
    _, held = split_assets(ledger.rows("assets", status="accepted"))
    ledger.close()
    paths = [asset["path"] for asset in held if asset["id"] not in set(row["assets"] or [])]
    if not paths:
        raise ValueError("no held-out accepted asset to evaluate on")
    return {"codec_id": row["id"], "held_out": len(paths), **evaluate_codec(load_codec(Path(row["path"])), paths)}
