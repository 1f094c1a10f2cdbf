"""Typed records of what the stages hand each other: an asset, a codec, a model and a base model, as the ledger
holds them (an output travels as the release gate's ``ReleaseResult``).

Small frozen dataclasses in the manner of lhotse's manifests: :meth:`from_row` reads a ledger projection row
(``Ledger.get`` / ``Ledger.rows``), :meth:`to_dict` gives that row back, JSON-plain, and :meth:`fields` is the part
a ledger write takes (everything but the ``id``). :class:`AssetRecord` is read only: ingest writes an asset's
row, and the stages after it need only what it names. Columns a row leaves empty read as empty values, so a record
written by an older version still loads. Sequences are tuples here and lists in the dicts, as JSON has them.

A codec's and a model's ``status`` and ``takedowns`` are the governance state a takedown writes
(:mod:`soundtrail.provenance.takedown`):
``current``, or ``affected-by-takedown`` with the takedown ids. They are read with the record but are not part of
:meth:`fields`, so the stage that records a codec or model again never clears them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

CURRENT = "current"
AFFECTED_BY_TAKEDOWN = "affected-by-takedown"


def caption_for(row: Mapping[str, Any]) -> str:
    """The conditioning text of an asset row: its description, else title and tags."""
    if row.get("description"):
        return str(row["description"])
    parts = [row.get("title") or "", ", ".join(row.get("tags") or [])]
    return ". ".join(part for part in parts if part)


@dataclass(frozen=True)
class AssetRecord:
    """An admitted recording as tokenize and evaluation see it (ledger table ``assets``): where its audio is,
    the caption it is conditioned on, and the terms every segment cut from it carries into a shard."""

    id: str
    path: str
    caption: str = ""
    tags: tuple[str, ...] = ()
    license: str | None = None
    rights_holder: str | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> AssetRecord:
        return cls(id=row["id"], path=row["path"], caption=caption_for(row), tags=tuple(row.get("tags") or ()),
                   license=row.get("license"), rights_holder=row.get("rights_holder"))


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
    parent: str | None = None  # the model whose weights its training continued from
    predecessor: str | None = None  # the family's previous model, not continued from (init_reason: why)
    base_model: str | None = None  # the pretrained model its weights descend from (ledger table base_models)
    init_reason: str | None = None  # where its training started, and why there
    status: str = CURRENT
    takedowns: tuple[str, ...] = ()

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> ModelRecord:
        return cls(id=row["id"], kind=row["kind"], path=row["path"], codec_id=row["codec_id"],
                   shards=tuple(row.get("shards") or ()), text_encoder=row.get("text_encoder"),
                   steps=row.get("steps"), metrics=dict(row.get("metrics") or {}), created_at=row.get("created_at"),
                   training=dict(row.get("training") or {}), parent=row.get("parent"),
                   predecessor=row.get("predecessor"), base_model=row.get("base_model"),
                   init_reason=row.get("init_reason"), status=row.get("status") or CURRENT,
                   takedowns=tuple(row.get("takedowns") or ()))

    def fields(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": self.path, "codec_id": self.codec_id, "shards": list(self.shards),
                "text_encoder": self.text_encoder, "steps": self.steps, "metrics": dict(self.metrics),
                "created_at": self.created_at, "training": dict(self.training), "parent": self.parent,
                "predecessor": self.predecessor, "base_model": self.base_model, "init_reason": self.init_reason}

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, **self.fields(), "status": self.status, "takedowns": list(self.takedowns)}


@dataclass(frozen=True)
class BaseModelRecord:
    """A pretrained model a generator is fine-tuned from, admitted like an asset (ledger table ``base_models``)."""

    id: str  # digest of its weight files
    name: str
    path: str
    architecture: str  # the transformers class its config.json names
    license: str | None  # SPDX id, when one was declared and read
    license_source: str | None  # "config" or "model card"
    training_data: str  # its publisher's statement of what it was trained on
    status: str  # "accepted" or "refused"
    policy: str  # "allow", "exception" (allowed by name despite the policy) or "refuse"
    reason: str | None = None
    recorded_at: str | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> BaseModelRecord:
        return cls(id=row["id"], name=row["name"], path=row["path"], architecture=row["architecture"],
                   license=row.get("license"), license_source=row.get("license_source"),
                   training_data=row.get("training_data") or "", status=row["status"], policy=row["policy"],
                   reason=row.get("reason"), recorded_at=row.get("recorded_at"))

    def fields(self) -> dict[str, Any]:
        return {"name": self.name, "path": self.path, "architecture": self.architecture, "license": self.license,
                "license_source": self.license_source, "training_data": self.training_data, "status": self.status,
                "policy": self.policy, "reason": self.reason, "recorded_at": self.recorded_at}

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, **self.fields()}
