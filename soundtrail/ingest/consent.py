"""Consent beyond the licence id: may this recording train a generative model, and until when may it be used.

Two places state it, and the stricter statement wins:

* the manifest row: ``ai_training`` (``allowed`` or ``notAllowed``; ``yes``/``no``/``true``/``false`` and
  ``not allowed`` are read too, ``constrained`` as C2PA means it) and ``license_expires`` (an ISO date, the last
  day the licence holds, UTC);
* Content Credentials embedded in the file (C2PA, read with c2pa-python): a training-and-data-mining assertion,
  the CAWG one (``cawg.training-mining``) or the C2PA 1.x one it replaced (``c2pa.training-mining``)::

      {"entries": {"cawg.ai_generative_training": {"use": "notAllowed"},
                   "cawg.ai_training": {"use": "constrained", "constraint_info": "ask the label"}}}

soundtrail trains generative models (and a codec), so the ``ai_generative_training`` and ``ai_training``
entries are the ones that apply; ``data_mining`` and ``ai_inference`` do not. ``constrained`` counts as
``notAllowed``, as the CAWG specification says to in the absence of other information: the constraints are not
machine-checkable. Every manifest in the file's store is read (an ingredient's refusal travels with it) and
the assertion is honoured whether or not the signature validates or is trusted: a refusal costs nothing to
honour, and an ``allowed`` never overrides the licence policy.

Pure: no workspace, no ledger. The expiry of accepted assets is the ledger's business
(:mod:`soundtrail.ingest.expiry`).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import c2pa

ALLOWED, NOT_ALLOWED, CONSTRAINED = "allowed", "notAllowed", "constrained"
TRAINING_MINING_LABELS = ("cawg.training-mining", "c2pa.training-mining")
TRAINING_ENTRIES = ("ai_generative_training", "ai_training")  # after the "cawg." or "c2pa." prefix
_MANIFEST_WORDS = {
    "allowed": ALLOWED, "yes": ALLOWED, "true": ALLOWED,
    "notallowed": NOT_ALLOWED, "no": NOT_ALLOWED, "false": NOT_ALLOWED,
    "constrained": CONSTRAINED,
}


def parse_ai_training(value: Any) -> str | None:
    """A manifest's ``ai_training`` value as ``allowed``, ``notAllowed`` or ``constrained``; ValueError otherwise."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return ALLOWED if value else NOT_ALLOWED
    word = "".join(value.split()).replace("_", "").replace("-", "").lower() if isinstance(value, str) else None
    if word not in _MANIFEST_WORDS:
        raise ValueError(f"'ai_training' must be allowed or notAllowed (or constrained), not {value!r:.60}")
    return _MANIFEST_WORDS[word]


def parse_license_expires(value: Any) -> str | None:
    """A manifest's ``license_expires`` as an ISO date string (YYYY-MM-DD); ValueError otherwise."""
    if value is None or value == "":
        return None
    try:
        if not isinstance(value, str) or len(value.strip()) != 10:
            raise ValueError
        return dt.date.fromisoformat(value.strip()).isoformat()
    except ValueError:
        raise ValueError(f"'license_expires' must be a date as YYYY-MM-DD, not {value!r:.60}") from None


def expired(license_expires: str | None, today: dt.date) -> bool:
    """True once the last day the licence holds has passed."""
    return license_expires is not None and dt.date.fromisoformat(license_expires) < today


def utc_today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


@dataclass(frozen=True)
class TrainingStatement:
    """What one source says about AI training: ``use`` is allowed, notAllowed or constrained."""

    use: str
    stated_by: str  # "manifest line 3", "C2PA cawg.training-mining (cawg.ai_generative_training) in urn:..."
    constraint_info: str | None = None

    @property
    def refuses(self) -> bool:
        return self.use != ALLOWED

    def reason(self) -> str:
        what = "not allowed" if self.use == NOT_ALLOWED else "constrained (treated as not allowed)"
        info = f": {' '.join(self.constraint_info.split())[:200]}" if self.constraint_info else ""
        return f"AI training {what} by {self.stated_by}{info}"


def embedded_training_statements(path: Path) -> list[TrainingStatement]:
    """The training entries of every training-and-data-mining assertion in the file's C2PA manifest store.

    A file without credentials, or in a format c2pa cannot read (Ogg, Opus), states nothing. A store that exists
    but cannot be parsed raises :class:`ConsentError`: it may hold a refusal, so the file cannot be admitted.
    """
    context = c2pa.Context.from_dict({"verify": {"remote_manifest_fetch": False, "ocsp_fetch": False}})
    try:
        reader = c2pa.Reader.try_create(str(path), context=context)
        if reader is None:
            return []
        with reader:
            store = json.loads(reader.json())
    except c2pa.C2paError.NotSupported:
        return []
    except c2pa.C2paError as exc:
        raise ConsentError(f"unreadable content credentials (C2PA): {' '.join(str(exc).split())[:200]}") from exc
    finally:
        context.close()
    statements = []
    for label, manifest in sorted((store.get("manifests") or {}).items()):
        for assertion in manifest.get("assertions") or []:
            if str(assertion.get("label", "")).split("__")[0] not in TRAINING_MINING_LABELS:
                continue
            entries = (assertion.get("data") or {}).get("entries") or {}
            for key, entry in sorted(entries.items()):
                if key.partition(".")[2] in TRAINING_ENTRIES and isinstance(entry, dict):
                    info = entry.get("constraint_info") or entry.get("constraints_info")
                    statements.append(TrainingStatement(
                        str(entry.get("use")), f"C2PA {assertion['label']} ({key}) in {label}",
                        str(info) if info else None))
    return statements


class ConsentError(ValueError):
    """A statement about consent that cannot be read; the message is the quarantine reason."""


def training_refusal(statements: list[TrainingStatement]) -> TrainingStatement | None:
    """The first statement that refuses AI training (an unknown ``use`` refuses too), if any."""
    return next((statement for statement in statements if statement.refuses), None)
