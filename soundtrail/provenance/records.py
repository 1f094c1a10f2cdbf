"""Typed records of what the stages hand each other: a codec and a model, as the ledger holds them.

Small frozen dataclasses in the manner of lhotse's manifests: :meth:`from_row` reads a ledger projection row
(``Ledger.get`` / ``Ledger.rows``), :meth:`to_dict` gives that row back, JSON-plain, and :meth:`fields` is the part
a ledger write takes (everything but the ``id``). Columns a row leaves empty read as empty values, so a record
written by an older version still loads. Sequences are tuples here and lists in the dicts, as JSON has them.

``status`` and ``takedowns`` are the governance state a takedown writes (:mod:`soundtrail.provenance.takedown`):
``current``, or ``affected-by-takedown`` with the takedown ids. They are read with the record but are not part of
:meth:`fields`, so the stage that records a codec or model again never clears them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

CURRENT = "current"
AFFECTED_BY_TAKEDOWN = "affected-by-takedown"


@dataclass(frozen=True)
class CodecRecord:
    """A codec the workspace tokenizes with (ledger table ``codecs``)."""

    id: str  # first 16 hex digits of its weights' sha256
    kind: str  # "soundtrail": trained here; "pretrained": a user's local codec, imported
    path: str  # its checkpoint folder
    config: Mapping[str, Any] = field(default_factory=dict)
    assets: tuple[str, ...] = ()  # the accepted assets it trained on (none for a pretrained codec)
    metrics: Mapping[str, Any] = field(default_factory=dict)
    created_at: str | None = None
    training: Mapping[str, Any] = field(default_factory=dict)  # world_size, assets_by_rank (trained here only)
    status: str = CURRENT
    takedowns: tuple[str, ...] = ()

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> CodecRecord:
        return cls(id=row["id"], kind=row["kind"], path=row["path"], config=dict(row.get("config") or {}),
                   assets=tuple(row.get("assets") or ()), metrics=dict(row.get("metrics") or {}),
                   created_at=row.get("created_at"), training=dict(row.get("training") or {}),
                   status=row.get("status") or CURRENT, takedowns=tuple(row.get("takedowns") or ()))

    def fields(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": self.path, "config": dict(self.config), "assets": list(self.assets),
                "metrics": dict(self.metrics), "created_at": self.created_at, "training": dict(self.training)}

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, **self.fields(), "status": self.status, "takedowns": list(self.takedowns)}


@dataclass(frozen=True)
class ModelRecord:
    """A trained generator and exactly what it saw (ledger table ``models``)."""

    id: str  # first 16 hex digits of its weights' sha256
    kind: str  # its generator family
    path: str  # its checkpoint folder
    codec_id: str
    shards: tuple[str, ...] = ()  # sha256 of every shard of the set it trained on (its lineage: takedowns follow it)
    text_encoder: str | None = None
    steps: int | None = None
    metrics: Mapping[str, Any] = field(default_factory=dict)
    created_at: str | None = None
    # preset, config (the full architecture), world_size, batch_size (per rank), grad_accum, ema_decay,
    # shards_by_rank (the sha256s each data-parallel rank actually read over the run; within ``shards``)
    training: Mapping[str, Any] = field(default_factory=dict)
    status: str = CURRENT
    takedowns: tuple[str, ...] = ()

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> ModelRecord:
        return cls(id=row["id"], kind=row["kind"], path=row["path"], codec_id=row["codec_id"],
                   shards=tuple(row.get("shards") or ()), text_encoder=row.get("text_encoder"),
                   steps=row.get("steps"), metrics=dict(row.get("metrics") or {}), created_at=row.get("created_at"),
                   training=dict(row.get("training") or {}), status=row.get("status") or CURRENT,
                   takedowns=tuple(row.get("takedowns") or ()))

    def fields(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": self.path, "codec_id": self.codec_id, "shards": list(self.shards),
                "text_encoder": self.text_encoder, "steps": self.steps, "metrics": dict(self.metrics),
                "created_at": self.created_at, "training": dict(self.training)}

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, **self.fields(), "status": self.status, "takedowns": list(self.takedowns)}
