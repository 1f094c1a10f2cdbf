"""Takedown: revoke one source and record everything that was derived from it.

A rights holder's opt-out (or a licence found to be wrong) becomes ledger events in one transaction::

    assets/<asset id>      status -> "revoked", reason -> the request        kind asset.revoked
    takedowns/<takedown>   asset_id, reason, affected, created_at           kind takedown.recorded
    codecs/<codec id>      status -> "affected-by-takedown", takedowns += id  kind codec.affected-by-takedown
    models/<model id>      status -> "affected-by-takedown", takedowns += id  kind model.affected-by-takedown

``affected`` is :func:`~soundtrail.provenance.lineage.asset_descendants` at the time: the shards
holding the asset's segments, the codecs and models trained on it and those models' outputs.
Revocation removes no file: the next ``soundtrail tokenize`` rewrites every shard holding a
non-accepted asset and marks the old one superseded, and training reads current shards only, so
later models no longer see it. The codecs and models listed keep what they learned, so they are
marked: ``generate`` refuses a marked model, or one whose codec is marked, unless an operator
overrides on record.

Revoking an asset twice changes nothing: the second call finds the asset revoked and returns the
takedown already on record, appending only marks its codecs or models lack.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from typing import Any

from soundtrail.provenance.ledger import Ledger, LedgerWriter, utc_now
from soundtrail.provenance.lineage import LineageError, asset_descendants
from soundtrail.provenance.records import AFFECTED_BY_TAKEDOWN, CodecRecord, ModelRecord


class TakedownError(LookupError):
    """The asset to revoke is not in the ledger, or the request is malformed."""


@dataclass(frozen=True)
class TakedownResult:
    """One takedown as recorded; ``already_revoked`` when this call found it done and wrote nothing."""

    takedown_id: str
    asset_id: str
    reason: str
    created_at: str
    affected: dict[str, Any]
    already_revoked: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def takedown_id_for(asset_id: str) -> str:
    """A stable id per asset: revoking the same asset again finds the same record."""
    return "t" + hashlib.sha256(asset_id.encode("utf-8")).hexdigest()[:15]


def same_recording(ledger: Ledger, asset_id: str) -> list[str]:
    """Other assets the ledger knows to be the same recording (duplicates of it, or the one it duplicates).

    A takedown names one file; the same work ingested from another path survives it unless the
    operator revokes that asset too, so the record lists them.
    """
    asset = ledger.get("assets", asset_id) or {}
    related = {row["id"] for row in ledger.rows("assets", duplicate_of=asset_id)}
    if asset.get("duplicate_of"):
        related.add(asset["duplicate_of"])
    return sorted(related - {asset_id})


def revoke(ledger: Ledger, asset_id: str, reason: str, run_id: str | None = None) -> TakedownResult:
    """Revoke ``asset_id`` for ``reason`` and record what was derived from it (idempotent)."""
    if not reason.strip():
        raise TakedownError("a takedown needs a reason (the request, its sender, a reference)")
    try:
        affected = asset_descendants(ledger, asset_id)
    except LineageError:
        raise TakedownError(f"no asset {asset_id!r} in the ledger (see `soundtrail assets list`)") from None
    affected = {**affected, "same_recording": same_recording(ledger, asset_id)}
    takedown_id = takedown_id_for(asset_id)
    with ledger.writer(run_id) as writer:
        asset = writer.get("assets", asset_id)
        existing = writer.get("takedowns", takedown_id)
        if asset is not None and asset["status"] == "revoked" and existing is not None:
            _mark_affected(writer, takedown_id, existing["affected"])
            return TakedownResult(takedown_id, asset_id, existing["reason"], existing["created_at"],
                                  existing["affected"], already_revoked=True)
        created_at = utc_now()
        writer.record("assets", asset_id, {"status": "revoked", "reason": f"takedown: {reason}"}, "asset.revoked")
        writer.record("takedowns", takedown_id, {"asset_id": asset_id, "reason": reason, "affected": affected,
                                                 "created_at": created_at}, "takedown.recorded")
        _mark_affected(writer, takedown_id, affected)
    return TakedownResult(takedown_id, asset_id, reason, created_at, affected, already_revoked=False)


def _mark_affected(writer: LedgerWriter, takedown_id: str, affected: dict[str, Any]) -> None:
    """Mark every codec and model the takedown lists as affected by it (a mark already there appends nothing)."""
    for table, noun in (("codecs", "codec"), ("models", "model")):
        for item in affected.get(table, []):
            row = writer.get(table, item["id"]) or {}
            takedowns = sorted({*(row.get("takedowns") or []), takedown_id})
            writer.record(table, item["id"], {"status": AFFECTED_BY_TAKEDOWN, "takedowns": takedowns},
                          f"{noun}.affected-by-takedown")


def takedown_holds(ledger: Ledger, model: ModelRecord, codec: CodecRecord | None) -> list[dict[str, Any]]:
    """The takedowns that hold ``model`` back: those marked on it and on its codec (whose weights carry what
    it was trained on into everything the model generates). ``[{"takedown_id", "asset_id", "reason", "via"}]``."""
    via: dict[str, set[str]] = {}
    for source, record in (("model", model), ("codec", codec)):
        if record is not None and record.status == AFFECTED_BY_TAKEDOWN:
            for takedown_id in record.takedowns:
                via.setdefault(takedown_id, set()).add(source)
    holds = []
    for takedown_id in sorted(via):
        row = ledger.get("takedowns", takedown_id) or {}
        holds.append({"takedown_id": takedown_id, "asset_id": row.get("asset_id"), "reason": row.get("reason"),
                      "via": sorted(via[takedown_id])})
    return holds
