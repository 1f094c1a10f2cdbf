"""Ledger tables (SQLAlchemy 2.0): the append-only event chain and the projections audits read.

Every projection row is produced by replaying ``events``: an event names an ``entity`` (a
table below), an ``entity_id`` (the row's primary key) and a JSON patch of column values.
The projections exist so audits can query with SQL; the chain is the source of truth, and
``ledger verify`` rebuilds the projections from it to catch a row edited behind its back.

Columns hold only JSON-plain values (strings, numbers, lists, dicts, null) and timestamps
are ISO-8601 strings, so a row and the event that wrote it compare exactly.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Float, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Event(Base):
    """One link of the hash chain. ``hash = sha256(canonical_json(all other fields))``."""

    __tablename__ = "events"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    kind: Mapped[str] = mapped_column(String(64), index=True)
    entity: Mapped[str] = mapped_column(String(32), index=True)
    entity_id: Mapped[str] = mapped_column(String(128), index=True)
    payload: Mapped[str] = mapped_column(Text)
    run_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[str] = mapped_column(String(40))
    prev_hash: Mapped[str] = mapped_column(String(64), unique=True)
    hash: Mapped[str] = mapped_column(String(64), unique=True)


class Projection(Base):
    """A table whose rows are rebuilt from events; ``id`` is the event's ``entity_id``."""

    __abstract__ = True
    id: Mapped[str] = mapped_column(String(128), primary_key=True)

    def as_dict(self) -> dict[str, Any]:
        return {column.name: getattr(self, column.name) for column in self.__table__.columns}


def _text() -> Mapped[str | None]:
    return mapped_column(Text, nullable=True)


def _json() -> Mapped[Any]:
    return mapped_column(JSON, nullable=True)


def _float() -> Mapped[float | None]:
    return mapped_column(Float, nullable=True)


def _int() -> Mapped[int | None]:
    return mapped_column(Integer, nullable=True)


class Source(Projection):
    """Where a file came from and who holds its rights (a manifest row or the file itself)."""

    __tablename__ = "sources"
    path: Mapped[str | None] = _text()
    manifest: Mapped[str | None] = _text()
    manifest_line: Mapped[int | None] = _int()
    source: Mapped[str | None] = _text()
    rights_holder: Mapped[str | None] = _text()
    attribution: Mapped[str | None] = _text()


class Licence(Projection):
    """An SPDX licence seen in the corpus, with the policy decision at the time it was seen."""

    __tablename__ = "licences"
    name: Mapped[str | None] = _text()
    policy: Mapped[str | None] = _text()
    requires_attribution: Mapped[int | None] = _int()


class Asset(Projection):
    """One ingested file, whatever its outcome (accepted, quarantined, duplicate, blocked, disputed, rejected,
    revoked).

    ``size_bytes`` and ``mtime_ns`` are the file's as it was read, and ``decision_inputs`` a digest of what its
    decision read besides the file (its manifest row, the licence and ingest settings): a later run that finds
    all three unchanged knows the decision stands without reading the file again.
    """

    __tablename__ = "assets"
    path: Mapped[str | None] = _text()
    status: Mapped[str | None] = mapped_column(String(16), index=True, nullable=True)
    reason: Mapped[str | None] = _text()
    sha256: Mapped[str | None] = mapped_column(String(64), index=True, nullable=True)
    pcm_hash: Mapped[str | None] = mapped_column(String(64), index=True, nullable=True)  # "xxh3-128:<hex>"
    duration_s: Mapped[float | None] = _float()
    sample_rate: Mapped[int | None] = _int()
    channels: Mapped[int | None] = _int()
    container: Mapped[str | None] = _text()
    codec: Mapped[str | None] = _text()
    file_tags: Mapped[Any] = _json()
    license: Mapped[str | None] = _text()
    rights_holder: Mapped[str | None] = _text()
    attribution: Mapped[str | None] = _text()
    source_id: Mapped[str | None] = _text()
    title: Mapped[str | None] = _text()
    description: Mapped[str | None] = _text()
    tags: Mapped[Any] = _json()
    duplicate_of: Mapped[str | None] = _text()
    ingested_at: Mapped[str | None] = _text()
    flow_run_id: Mapped[str | None] = _text()
    size_bytes: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    mtime_ns: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    decision_inputs: Mapped[str | None] = mapped_column(String(64), nullable=True)


class Consent(Projection):
    """What a rights holder stated beyond the licence id about one asset (``id`` is the asset id): AI training
    (allowed, notAllowed, constrained) and who said so (a manifest line, a C2PA assertion), and the last day the
    licence holds (an ISO date), after which the next ingest revokes the asset."""

    __tablename__ = "consents"
    ai_training: Mapped[str | None] = _text()
    ai_training_by: Mapped[str | None] = _text()
    license_expires: Mapped[str | None] = mapped_column(String(10), index=True, nullable=True)
    license_expires_by: Mapped[str | None] = _text()


class Fingerprint(Projection):
    """Chromaprint of an asset or of a blocklisted work (``id`` is the asset or block id)."""

    __tablename__ = "fingerprints"
    owner: Mapped[str | None] = _text()
    algorithm: Mapped[str | None] = _text()
    items: Mapped[str | None] = _text()
    item_count: Mapped[int | None] = _int()
    duration_s: Mapped[float | None] = _float()


class BlockedWork(Projection):
    """A protected reference work that must never be ingested."""

    __tablename__ = "blocklist"
    path: Mapped[str | None] = _text()
    reason: Mapped[str | None] = _text()
    sha256: Mapped[str | None] = _text()
    duration_s: Mapped[float | None] = _float()
    added_at: Mapped[str | None] = _text()


class CodecRow(Projection):
    """A trained or imported codec and the assets it saw.

    ``status`` and ``takedowns`` are written by takedowns only (``affected-by-takedown`` and the takedown ids),
    never by the stage that records the codec, so recording it again cannot clear them; empty means current.
    """

    __tablename__ = "codecs"
    kind: Mapped[str | None] = _text()
    path: Mapped[str | None] = _text()
    config: Mapped[Any] = _json()
    assets: Mapped[Any] = _json()
    metrics: Mapped[Any] = _json()
    created_at: Mapped[str | None] = _text()
    training: Mapped[Any] = _json()  # how it was trained: world size, the assets each rank read
    status: Mapped[str | None] = _text()
    takedowns: Mapped[Any] = _json()


class Choice(Projection):
    """What the workspace uses where several candidates exist (``id`` names the role, e.g. ``codec``).

    The choice is its own event, so which codec tokenizes is stated by whoever chose it (``codec train``,
    ``codec use``, ``[codec] checkpoint``, the pipeline's retrain policy); only a workspace from before choices
    were recorded has its newest codec recorded as the choice, once.
    """

    __tablename__ = "choices"
    chosen_id: Mapped[str | None] = _text()
    reason: Mapped[str | None] = _text()
    chosen_at: Mapped[str | None] = _text()


class Shard(Projection):
    """A Parquet shard (``id`` is its sha256) and the assets whose segments it holds."""

    __tablename__ = "shards"
    shard_set: Mapped[str | None] = _text()
    status: Mapped[str | None] = _text()  # "current", or "superseded" once rewritten without revoked assets
    path: Mapped[str | None] = _text()
    rows: Mapped[int | None] = _int()
    asset_ids: Mapped[Any] = _json()
    codec_id: Mapped[str | None] = _text()
    created_at: Mapped[str | None] = _text()


class ModelRow(Projection):
    """A trained generator: exactly which shards (by sha256) and which codec it saw, and where its weights began.

    ``parent`` is the model whose weights its training continued from (so it carries what the parent saw);
    ``predecessor`` the family's previous model when it was *not* continued from (``init_reason`` says why: a
    takedown, another codec, the ``[train] init`` policy); ``base_model`` the pretrained model (``base_models``)
    its weights descend from, directly or through its parents. ``status`` and ``takedowns``: as for
    :class:`CodecRow`, written by takedowns only.
    """

    __tablename__ = "models"
    kind: Mapped[str | None] = _text()
    path: Mapped[str | None] = _text()
    codec_id: Mapped[str | None] = _text()
    shards: Mapped[Any] = _json()
    text_encoder: Mapped[str | None] = _text()
    steps: Mapped[int | None] = _int()
    metrics: Mapped[Any] = _json()
    created_at: Mapped[str | None] = _text()
    training: Mapped[Any] = _json()  # preset and full config, world size, the shards each rank read
    parent: Mapped[str | None] = mapped_column(String(128), index=True, nullable=True)
    predecessor: Mapped[str | None] = _text()
    base_model: Mapped[str | None] = _text()
    init_reason: Mapped[str | None] = _text()
    status: Mapped[str | None] = _text()
    takedowns: Mapped[Any] = _json()


class BaseModelRow(Projection):
    """A pretrained model from outside the workspace that a generator is fine-tuned from: an input, like an asset.

    ``id`` is the digest of its weight files. ``status`` is ``accepted`` or ``refused`` (``reason`` says why: its
    licence under the policy, no licence or training-data statement); ``policy`` is what the licence policy said
    (``allow``, ``exception`` when ``[licenses] allow_base_models`` names it despite the policy, or ``refuse``).
    """

    __tablename__ = "base_models"
    name: Mapped[str | None] = _text()
    path: Mapped[str | None] = _text()
    architecture: Mapped[str | None] = _text()
    license: Mapped[str | None] = _text()
    license_source: Mapped[str | None] = _text()  # "config" or "model card"
    training_data: Mapped[str | None] = _text()
    status: Mapped[str | None] = _text()
    policy: Mapped[str | None] = _text()
    reason: Mapped[str | None] = _text()
    recorded_at: Mapped[str | None] = _text()


class Output(Projection):
    """A generated clip, its prompt and seed, and what the release gate decided."""

    __tablename__ = "outputs"
    model_id: Mapped[str | None] = _text()
    prompt: Mapped[str | None] = _text()
    seed: Mapped[int | None] = _int()
    seconds: Mapped[float | None] = _float()
    status: Mapped[str | None] = _text()
    path: Mapped[str | None] = _text()
    sha256: Mapped[str | None] = _text()
    verdict: Mapped[str | None] = _text()
    screening: Mapped[Any] = _json()
    watermark_payload: Mapped[str | None] = _text()
    credential: Mapped[Any] = _json()
    created_at: Mapped[str | None] = _text()


class Takedown(Projection):
    """A revoked source and everything found derived from it at the time."""

    __tablename__ = "takedowns"
    asset_id: Mapped[str | None] = _text()
    reason: Mapped[str | None] = _text()
    affected: Mapped[Any] = _json()
    created_at: Mapped[str | None] = _text()


class Override(Projection):
    """An operator's decision, on record, to pass a guard: generating with a model a takedown affects
    (``kind`` "takedown"), or marking audio that already carries a watermark ("watermark")."""

    __tablename__ = "overrides"
    kind: Mapped[str | None] = _text()
    by: Mapped[str | None] = _text()
    reason: Mapped[str | None] = _text()
    details: Mapped[Any] = _json()  # what was overridden: the model and takedowns, or both watermark payloads
    created_at: Mapped[str | None] = _text()


class Review(Projection):
    """A person's decision on a disputed asset (``soundtrail review resolve``) and what it changed."""

    __tablename__ = "reviews"
    asset_id: Mapped[str | None] = _text()
    decision: Mapped[str | None] = _text()  # "accept" or "reject"
    reason: Mapped[str | None] = _text()
    by: Mapped[str | None] = _text()
    affected: Mapped[Any] = _json()  # {asset id: new status} for every asset the decision changed
    created_at: Mapped[str | None] = _text()


PROJECTIONS: dict[str, type[Projection]] = {
    cls.__tablename__: cls
    for cls in (Source, Licence, Asset, Consent, Fingerprint, BlockedWork, CodecRow, Choice, Shard, ModelRow,
                BaseModelRow, Output, Takedown, Override, Review)
}
