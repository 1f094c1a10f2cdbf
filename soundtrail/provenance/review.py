"""Disputes: copies of one recording that make different claims, held until a person decides.

Ingest (:mod:`soundtrail.ingest.catalog`) compares a copy's claims with those of the asset it copies, the
recording's original. When the licence or the rights holder differs, both are put in ``disputed``: an accepted
original leaves training (tokenize, training and screening read accepted assets only) and the copy is not admitted,
each reason naming both claims. A dispute is an original and every disputed copy pointing at it (``duplicate_of``).

A person closes it with ``soundtrail review resolve ASSET``; the decision is a ``reviews`` row (who, why, when,
what it changed) next to the status changes it makes, so the audit shows open and resolved disputes alike::

    --accept   ASSET's claims are the recording's: ASSET is accepted and becomes the original its copies point
               at. Every other open asset of the dispute becomes a ``duplicate`` of it when it claims the same,
               else ``rejected``: a claim that contradicts the upheld one cannot stand beside it.
    --reject   ASSET's claim is refused: ASSET is ``rejected``; the rest of the dispute stays open for its own
               decision (rejecting the copy does not by itself say that the original's claim is right).

A claim is a licence and a rights holder. A side that states none does not conflict (it claims nothing); rights
holders compare without case and repeated spaces.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from soundtrail.provenance.ledger import Ledger, utc_now

OPEN = "disputed"
DECISIONS = ("accept", "reject")
ASSET_KEYS = ("id", "path", "status", "license", "rights_holder", "reason", "duplicate_of", "ingested_at")


class ReviewError(LookupError):
    """The asset is not in the ledger, not disputed, or cannot be decided as asked."""


def _holder(value: str | None) -> str | None:
    return " ".join(value.split()).casefold() if value and value.strip() else None


def claims_conflict(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether two records claim different licences or rights holders (a missing claim conflicts with none)."""
    licences = a.get("license"), b.get("license")
    holders = _holder(a.get("rights_holder")), _holder(b.get("rights_holder"))
    return any(x is not None and y is not None and x != y for x, y in (licences, holders))


def describe_claims(record: Mapping[str, Any]) -> str:
    """``CC-BY-4.0 from rights holder "X"`` (what a dispute reason quotes)."""
    holder = record.get("rights_holder")
    return (f"{record.get('license') or 'no licence'} from "
            f"{f'rights holder {holder!r}' if holder else 'no stated rights holder'}")


@dataclass
class Dispute:
    """An open dispute: the recording's original and the disputed copies pointing at it (original first)."""

    original: str
    assets: list[dict[str, Any]]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Resolution:
    """One recorded decision and every status it changed (``affected``: asset id -> new status)."""

    review_id: str
    asset_id: str
    decision: str
    reason: str
    by: str
    created_at: str
    affected: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def open_disputes(ledger: Ledger) -> list[Dispute]:
    """Every open dispute, by original id."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in ledger.rows("assets", status=OPEN):
        groups.setdefault(row["duplicate_of"] or row["id"], []).append(row)
    disputes = []
    for original_id, rows in sorted(groups.items()):
        if all(row["id"] != original_id for row in rows):  # the original was rejected; its copies are still open
            original = ledger.get("assets", original_id)
            rows = rows + ([original] if original else [])
        rows.sort(key=lambda row: (row["id"] != original_id, row["ingested_at"] or "", row["id"]))
        disputes.append(Dispute(original_id, [{key: row[key] for key in ASSET_KEYS} for row in rows]))
    return disputes


def resolved_disputes(ledger: Ledger) -> list[dict[str, Any]]:
    """Every recorded decision, oldest first."""
    return sorted(ledger.rows("reviews"), key=lambda row: (row["created_at"] or "", row["id"]))


def resolve(ledger: Ledger, asset_id: str, decision: str, reason: str, by: str,
            allowed_licences: Collection[str], run_id: str | None = None) -> Resolution:
    """Record ``by``'s ``decision`` ("accept" or "reject") on disputed ``asset_id`` and apply it (see module)."""
    if decision not in DECISIONS:
        raise ValueError(f"decision must be one of {DECISIONS}, not {decision!r}")
    if not reason.strip() or not by.strip():
        raise ReviewError("a review decision needs a reason and the name of who decided")
    asset = ledger.get("assets", asset_id)
    if asset is None:
        raise ReviewError(f"no asset {asset_id!r} in the ledger (see `soundtrail review list`)")
    original_id = asset["duplicate_of"] or asset_id
    # Read outside the lock to find the dispute's members; each is read again, under it, before it changes.
    members = [original_id] + [row["id"] for row in ledger.rows("assets", duplicate_of=original_id)]
    created_at = utc_now()
    review_id = "r" + hashlib.sha256(f"{asset_id}|{decision}|{created_at}".encode()).hexdigest()[:15]
    affected: dict[str, str] = {}
    with ledger.writer(run_id) as writer:
        asset = writer.get("assets", asset_id)
        if asset is None or asset["status"] != OPEN:
            raise ReviewError(f"asset {asset_id} is not disputed (status {asset['status'] if asset else None})")
        note = f"review {review_id} by {by}: {reason}"
        if decision == "reject":
            writer.record("assets", asset_id, {"status": "rejected", "reason": f"rejected on {note}"}, "asset.rejected")
            affected[asset_id] = "rejected"
        else:
            if asset["license"] not in allowed_licences:
                raise ReviewError(f"asset {asset_id} claims {asset['license'] or 'no licence'}, which the licence "
                                  "policy does not allow: it cannot be accepted (resolve it with --reject)")
            writer.record("assets", asset_id, {"status": "accepted", "duplicate_of": None,
                                               "reason": f"accepted on {note}"}, "asset.accepted")
            affected[asset_id] = "accepted"
            for member_id in members:
                if member_id != asset_id:
                    _follow_accepted(writer, member_id, asset, note, affected)
        writer.record("reviews", review_id, {"asset_id": asset_id, "decision": decision, "reason": reason, "by": by,
                                             "affected": affected, "created_at": created_at}, "review.recorded")
    return Resolution(review_id, asset_id, decision, reason, by, created_at, affected)


def _follow_accepted(writer: Any, member_id: str, upheld: dict[str, Any], note: str,
                     affected: dict[str, str]) -> None:
    """After ``upheld`` was accepted: an open member takes the status its claims now earn, and every member points
    at ``upheld`` as its original (a plain copy whose claims contradict the upheld ones is rejected with it)."""
    member = writer.get("assets", member_id)
    if member is None:
        return
    fields: dict[str, Any] = {"duplicate_of": upheld["id"]}
    conflict = claims_conflict(member, upheld)
    if member["status"] == OPEN or (member["status"] == "duplicate" and conflict):
        if conflict:
            fields.update(status="rejected", reason=f"rejected: claims {describe_claims(member)} against "
                                                    f"{describe_claims(upheld)} of asset {upheld['id']}, upheld on "
                                                    f"{note}")
        else:
            fields.update(status="duplicate", reason=f"duplicate of asset {upheld['id']}, upheld on {note}")
    if writer.record("assets", member_id, fields, f"asset.{fields.get('status', 'relinked')}"):
        affected[member_id] = fields.get("status", member["status"])
