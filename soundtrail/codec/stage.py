"""The codec stage against the ledger: which assets train it, which codec tokenizes, its record.

:mod:`soundtrail.codec.codecs` runs a codec on audio (training one is :mod:`soundtrail.train.codec`); this
module decides *which* assets (accepted ones, minus a held-out set for evaluation), which codec the workspace
uses, and records codecs as :class:`~soundtrail.provenance.records.CodecRecord`, so that any shard can be
traced to the codec and the assets behind it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from soundtrail.codec.codecs import load_codec
from soundtrail.codec.quality import evaluate_codec
from soundtrail.provenance.ledger import Ledger, utc_now
from soundtrail.provenance.records import CodecRecord
from soundtrail.workspace import Workspace

HELD_OUT_EVERY = 8  # every 8th accepted asset (by id) is kept out of codec training for `codec eval`


def split_assets(assets: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(train, held out): deterministic by asset id; at least one of each once there are two assets."""
    ordered = sorted(assets, key=lambda row: row["id"])
    held = [row for index, row in enumerate(ordered) if index % HELD_OUT_EVERY == HELD_OUT_EVERY - 1]
    if not held and len(ordered) >= 2:
        held = [ordered[-1]]
    train = [row for row in ordered if row not in held]
    return train, held


def record_codec(ledger: Ledger, record: CodecRecord) -> CodecRecord:
    """Record a trained or imported codec (keeping the first ``created_at``); returns it as the ledger holds it."""
    existing = ledger.get("codecs", record.id)
    fields = dict(record.fields(), created_at=existing["created_at"] if existing else utc_now())
    ledger.record("codecs", record.id, fields, "codec.trained" if record.kind == "soundtrail" else "codec.imported")
    return CodecRecord.from_row(ledger.get("codecs", record.id))


def register_pretrained(ledger: Ledger, path: Path) -> CodecRecord:
    """Record a user's local pretrained codec (soundtrail or transformers Encodec dir)."""
    codec = load_codec(path)
    return record_codec(ledger, CodecRecord(
        codec.codec_id, "pretrained", str(Path(path).resolve()),
        config={"sample_rate": codec.sample_rate, "frame_rate": codec.frame_rate,
                "num_codebooks": codec.num_codebooks, "codebook_size": codec.codebook_size}))


def resolve_codec(workspace: Workspace, codec_id: str | None = None) -> CodecRecord:
    """The codec to use: the one named, else the configured pretrained one, else the newest trained."""
    with Ledger(workspace.ledger_url) as ledger:
        if codec_id is None and workspace.settings.codec.checkpoint:
            return register_pretrained(ledger, Path(workspace.settings.codec.checkpoint))
        if codec_id is not None:
            row = ledger.get("codecs", codec_id)
            if row is None:
                raise ValueError(f"no codec {codec_id!r} in the ledger")
            return CodecRecord.from_row(row)
        rows = sorted(ledger.rows("codecs"), key=lambda row: row["created_at"] or "")
    if not rows:
        raise ValueError("no codec yet: run `soundtrail codec train` or set codec.checkpoint in soundtrail.toml")
    return CodecRecord.from_row(rows[-1])


def evaluate_workspace_codec(workspace: Workspace, codec_id: str | None = None) -> dict[str, Any]:
    """SI-SNR, mel distance and bitrate of a codec on the held-out accepted assets."""
    codec = resolve_codec(workspace, codec_id)
    with Ledger(workspace.ledger_url) as ledger:
        _, held = split_assets(ledger.rows("assets", status="accepted"))
    paths = [asset["path"] for asset in held if asset["id"] not in set(codec.assets)]
    if not paths:
        raise ValueError("no held-out accepted asset to evaluate on")
    return {"codec_id": codec.id, "held_out": len(paths), **evaluate_codec(load_codec(Path(codec.path)), paths)}
