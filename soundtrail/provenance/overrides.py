"""Operator overrides: a person passing a guard on record, never silently.

Two guards can be passed: ``generate`` with a model a takedown affects (``--override-takedown``), and
``watermark embed`` into audio that already carries a mark (``--force``). Each pass is a row of ``overrides``
written through a chained event (kind ``override.<kind>``) naming who, why and what was overridden, so the audit
lists it and ``ledger verify`` replays it. Recording the same decision again appends nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from soundtrail.provenance.ledger import Ledger, utc_now


class OverrideError(ValueError):
    """An override without a person or a reason."""


@dataclass(frozen=True)
class Override:
    """Who passes a guard and why (``soundtrail ... --by NAME --reason TEXT``; ``by`` defaults to the login name)."""

    by: str
    reason: str

    def __post_init__(self) -> None:
        if not self.by.strip():
            raise OverrideError("an override names who decides (--by NAME)")
        if not self.reason.strip():
            raise OverrideError("an override needs a reason (--reason TEXT)")


def record_override(ledger: Ledger, override_id: str, kind: str, override: Override,
                    details: Mapping[str, Any]) -> dict[str, Any]:
    """Record ``override`` of guard ``kind`` as row ``override_id``; the row as the ledger holds it.

    The same person, reason and details recorded again keep the first row and its time.
    """
    with ledger.writer() as writer:
        existing = writer.get("overrides", override_id)
        fields = {"kind": kind, "by": override.by, "reason": override.reason, "details": dict(details)}
        if existing is None or any(existing.get(key) != value for key, value in fields.items()):
            writer.record("overrides", override_id, {**fields, "created_at": utc_now()}, f"override.{kind}")
    return ledger.get("overrides", override_id)
