"""Ingest, step 3: keep each asset's consent terms in the ledger, and revoke assets whose licence has expired.

A manifest row may say until when its licence holds (``license_expires``); a file may say, in its row or in
its Content Credentials, whether it may train AI (:mod:`soundtrail.ingest.consent`). The analysis carries
those statements; this stage records them per asset (``consents``, one row per asset id), then revokes every
asset that may still reach training (accepted or disputed) whose licence ended before today, or whose terms
now refuse AI training (a later row withdrew consent for an asset accepted earlier), through
:func:`soundtrail.provenance.takedown.revoke`: the same two events and the same lineage record (shards,
codecs, models and outputs derived from it) as a rights holder's takedown, so the next ``tokenize`` leaves it
out and the audit names what was made while the licence held.

The ingest driver (:mod:`soundtrail.ingest.stage`) records each batch's terms after deciding it, and revokes at
the end of every ingest, over every asset with recorded terms, so the first run after the date
revokes the asset whatever that run's inputs are: terms stated once stay in force until a later row for the
same file replaces them. A file analysed without a row (and without credentials saying anything) leaves its
recorded terms as they are.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from soundtrail.ingest.analyze import manifest_row
from soundtrail.ingest.consent import ALLOWED, TrainingStatement, expired, utc_today
from soundtrail.provenance.ledger import Ledger
from soundtrail.provenance.takedown import TakedownResult, revoke

STILL_USABLE = ("accepted", "disputed")  # statuses that may reach a training set


def record_terms(ledger: Ledger, analyses: list[dict[str, Any]], run_id: str | None) -> int:
    """One ``consents`` row per admitted asset that states terms, or whose recorded terms its row now changes."""
    ids = [analysis["asset_id"] for analysis in analyses]
    written = 0
    with ledger.writer(run_id) as writer:
        writer.prefetch("assets", ids)
        writer.prefetch("consents", ids)
        for analysis in analyses:
            asset_id = analysis["asset_id"]
            states = analysis["ai_training"] or analysis["license_expires"]
            had_terms = writer.get("consents", asset_id) is not None
            has_row = analysis["manifest_line"] is not None
            if writer.get("assets", asset_id) is None or not (states or had_terms and has_row):
                continue
            expires = analysis["license_expires"]
            row = manifest_row(analysis["manifest"], analysis["manifest_line"])
            written += writer.record("consents", asset_id, {
                "ai_training": analysis["ai_training"], "ai_training_by": analysis["ai_training_by"],
                "license_expires": expires, "license_expires_by": row if expires else None,
            }, "consent.stated")
    return written


def revoke_withdrawn(ledger: Ledger, today: dt.date | None, run_id: str | None) -> list[TakedownResult]:
    """Revoke every still-usable asset whose licence's last day is before ``today`` (UTC today by default) or whose
    terms refuse training."""
    today = today or utc_today()
    revoked = []
    for terms in ledger.rows("consents"):
        reason = withdrawal(terms, today)
        asset = ledger.get("assets", terms["id"]) if reason else None
        if asset is not None and asset["status"] in STILL_USABLE:
            revoked.append(revoke(ledger, terms["id"], reason, run_id))
    return revoked


def withdrawal(terms: dict[str, Any], today: dt.date) -> str | None:
    """Why recorded ``terms`` no longer let their asset be used, or None."""
    if expired(terms["license_expires"], today):
        return f"licence expired on {terms['license_expires']} ({terms['license_expires_by']})"
    if terms["ai_training"] and terms["ai_training"] != ALLOWED:
        return TrainingStatement(terms["ai_training"], terms["ai_training_by"] or "a recorded statement").reason()
    return None
