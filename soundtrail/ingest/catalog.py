"""Ingest, step 2: decide each analysed file's status against the ledger and record it.

The order of checks is the order of precedence a rights reviewer would apply:

1. the file could not be used (unreadable, truncated, silent, too short, bad manifest row)
   -> ``quarantined`` with that reason;
2. it is, or contains, a blocklisted protected work -> ``blocked``;
3. it is the same bytes, the same decoded audio, or a near copy (re-encode, gain, container) of a recording the
   ledger already holds, *whatever that recording's status*. The recording is represented by its original (the
   asset its copies point at with ``duplicate_of``), and the original decides:

   - accepted or disputed, and the copy claims the same licence and rights holder -> ``duplicate``;
   - accepted or disputed, and the copy claims another -> ``disputed``, and an accepted original becomes
     ``disputed`` too: conflicting claims are held for a person (:mod:`soundtrail.provenance.review`), never
     settled by which file came first;
   - refused (quarantined for its licence, rejected on review, revoked) -> ``quarantined`` with it, and blocked
     -> ``blocked`` with it: a refused work cannot come back as a relabelled copy;

4. its licence is missing, unknown, ambiguous, unclear, denied or not allowed -> ``quarantined``;
5. otherwise ``accepted``.

Which file is a recording's original is the curator's order (manifest line, then path; the driver decides files
in that order, :mod:`soundtrail.ingest.stage`), and a status in ``FINAL_STATUSES`` is never decided again, so a
re-run appends nothing.

Concurrency: the in-memory index says only *which assets hold which audio* (sha256, PCM hash, Chromaprint). What
those assets are (status, claims, original) is read from the ledger inside the writer's lock, and every
transaction first adds to the index the rows other ingests committed since it was loaded
(:meth:`Catalog.transaction`), so two ingests running at once admit a recording once. Rows the index remembers
from a transaction that rolled back are harmless: the ledger has no such asset, and a match on it is skipped.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from soundtrail.config import IngestSettings, LicenseSettings
from soundtrail.licenses import LicensePolicy, license_name, requires_attribution
from soundtrail.provenance.ledger import Ledger, LedgerWriter, utc_now
from soundtrail.provenance.review import claims_conflict, describe_claims
from soundtrail.screening.chromaprint import FingerprintIndex, decode_fingerprint, match_span_s

FINAL_STATUSES = ("accepted", "duplicate", "blocked", "revoked", "disputed", "rejected")
HELD_STATUSES = ("accepted", "disputed")  # a copy of an original in one of these is judged by its claims
MIN_NEAR_COPY_S = 0.5  # a near copy spans at least 3 Chromaprint items (96 bits) under the BER threshold
_ASSET_FIELDS = ("path", "sha256", "pcm_hash", "duration_s", "sample_rate", "channels", "container", "codec",
                 "file_tags", "license", "rights_holder", "attribution", "title", "description", "tags")
_FILE_FIELDS = ("size_bytes", "mtime_ns", "decision_inputs")  # absent from manifest-problem records


@dataclass
class IngestItem:
    """One line of the ingest summary (the CLI contract's ``items`` entries)."""

    path: str
    status: str
    reason: str | None
    asset_id: str

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "status": self.status, "reason": self.reason, "asset_id": self.asset_id}

    @classmethod
    def standing(cls, record: dict[str, Any]) -> IngestItem:
        """The item of a record that carries the ledger's standing decision (``known``)."""
        return cls(record["path"], record["status"], record["reason"], record["asset_id"])


@dataclass(frozen=True)
class Decision:
    """A file's status; ``original_update`` is what a dispute changes on the original it copies."""

    status: str
    reason: str | None = None
    duplicate_of: str | None = None
    original_update: dict[str, str] | None = None


def _refusal(original: dict[str, Any]) -> str:
    return f", which is {original['status']}: {original['reason']}"


def still_refused_with(copy_reason: str | None, original: dict[str, Any] | None) -> bool:
    """Whether a copy refused with ``original`` (its reason ending as :meth:`Catalog.decide` writes it) would be
    decided the same way today: the original is still refused, for the same reason."""
    return (original is not None and original["status"] not in HELD_STATUSES
            and (copy_reason or "").endswith(_refusal(original)))


class Catalog:
    """The ledger's audio and blocklist, indexed for the copy and blocklist checks; decides and records files."""

    def __init__(self, ledger: Ledger, ingest: IngestSettings, licenses: LicenseSettings) -> None:
        self.ledger = ledger
        self.ingest = ingest
        self.licenses = LicensePolicy(allow=licenses.allow, deny=licenses.deny)
        self._by_sha: dict[str, str] = {}
        self._by_pcm: dict[str, str] = {}
        self._audio = FingerprintIndex()
        self._blocked = FingerprintIndex()
        self._indexed: set[str] = set()
        self._writer: LedgerWriter | None = None
        self._disputed_originals: dict[str, str] = {}  # asset id -> reason, since take_disputed_originals()
        # The head first, then the rows: a row committed in between is read twice, never missed.
        self._seq = ledger.head()[0]
        for asset_id, sha, pcm in ledger.scan("assets", ("id", "sha256", "pcm_hash")):
            self._remember_hashes(asset_id, sha, pcm)
        for owner_id, owner, items in ledger.scan("fingerprints", ("id", "owner", "items")):
            self._remember_fingerprint(owner_id, owner, items)

    def _remember_hashes(self, asset_id: str, sha: str | None, pcm: str | None) -> None:
        if sha:
            self._by_sha.setdefault(sha, asset_id)
        if pcm:
            self._by_pcm.setdefault(pcm, asset_id)

    def _remember_fingerprint(self, owner_id: str, owner: str | None, items: str | None) -> None:
        if items and owner_id not in self._indexed:
            self._indexed.add(owner_id)
            (self._blocked if owner == "blocklist" else self._audio).add(owner_id, decode_fingerprint(items))

    @contextlib.contextmanager
    def transaction(self, run_id: str | None = None) -> Iterator[LedgerWriter]:
        """A ledger transaction, the index first brought up to date under its lock; decide and record inside."""
        with self.ledger.writer(run_id) as writer:
            self._catch_up(writer)
            self._writer = writer
            try:
                yield writer
            finally:
                self._writer = None
        self._seq = writer.seq  # committed: this transaction's own rows are already in the index

    def _catch_up(self, writer: LedgerWriter) -> None:
        """Index the assets and fingerprints that other writers committed since the index last saw the ledger."""
        if writer.seq == self._seq:
            return
        changed = writer.changed_since(self._seq, ("assets", "fingerprints"))
        writer.prefetch("assets", changed["assets"])
        writer.prefetch("fingerprints", changed["fingerprints"])
        for asset_id in sorted(changed["assets"]):
            row = writer.get("assets", asset_id) or {}
            self._remember_hashes(asset_id, row.get("sha256"), row.get("pcm_hash"))
        for owner_id in sorted(changed["fingerprints"]):
            row = writer.get("fingerprints", owner_id) or {}
            self._remember_fingerprint(owner_id, row.get("owner"), row.get("items"))
        self._seq = writer.seq

    def _in_transaction(self, writer: LedgerWriter) -> None:
        if writer is not self._writer:
            raise RuntimeError("decide and record inside Catalog.transaction(), which brings the index up to date")

    def decide(self, analysis: dict[str, Any], writer: LedgerWriter) -> Decision:
        """One analysed file's decision, by the module's precedence, against the ledger as ``writer`` sees it."""
        self._in_transaction(writer)
        if analysis["problem"]:
            return Decision("quarantined", analysis["problem"])
        fingerprint = decode_fingerprint(analysis["fingerprint"]) if analysis["fingerprint"] else None
        blocked = self._near_copies(self._blocked, fingerprint) if fingerprint is not None else []
        if blocked:
            work, detail = blocked[0]
            entry = writer.get("blocklist", work) or {}
            return Decision("blocked", f"matches blocklisted work {work} ({entry.get('reason') or 'protected work'}): "
                                       f"{detail}")
        copy = self._copy_of(analysis, fingerprint, writer)
        if copy is not None:
            return self._copy_decision(analysis, *copy)
        if analysis["license_problem"]:
            return Decision("quarantined", analysis["license_problem"])
        return Decision("accepted")

    def _copy_of(self, analysis: dict[str, Any], fingerprint: np.ndarray | None,
                 writer: LedgerWriter) -> tuple[dict[str, Any], str] | None:
        """The original of the recording this file copies, and how it copies it; None for new audio.

        A match on this asset itself, or on one of its own copies, is no match: re-deciding a quarantined original
        must never make it a copy of the copies that were refused with it.
        """
        asset_id = analysis["asset_id"]
        candidates = [(self._by_sha.get(analysis["sha256"]), "same bytes as asset {}", ""),
                      (self._by_pcm.get(analysis["pcm_hash"]), "same decoded audio as asset {}", "")]
        if fingerprint is not None:
            candidates += [(match, "near copy of asset {}", f": {detail}")
                           for match, detail in self._near_copies(self._audio, fingerprint)]
        for candidate, label, detail in candidates:
            if candidate is None or candidate == asset_id:
                continue
            original = _original(writer, candidate)
            if original is None or original["id"] == asset_id:
                continue
            link = f" (itself a copy of asset {original['id']})" if original["id"] != candidate else ""
            return original, label.format(candidate) + detail + link
        return None

    @staticmethod
    def _copy_decision(analysis: dict[str, Any], original: dict[str, Any], how: str) -> Decision:
        status, original_id = original["status"], original["id"]
        if status in HELD_STATUSES:
            if not claims_conflict(analysis, original):
                return Decision("duplicate", how, original_id)
            ours, theirs = describe_claims(analysis), describe_claims(original)
            update = None
            if status == "accepted":
                update = {"status": "disputed",
                          "reason": f"disputed: asset {analysis['asset_id']} ({analysis['path']}) copies this "
                                    f"recording and claims {ours}; this asset claims {theirs}"}
            return Decision("disputed", f"disputed: {how}; this file claims {ours}, asset {original_id} claims "
                                        f"{theirs}", original_id, update)
        return Decision("blocked" if status == "blocked" else "quarantined", how + _refusal(original), original_id)

    def _near_copies(self, index: FingerprintIndex, fingerprint: np.ndarray) -> list[tuple[str, str]]:
        """``(owner id, detail)`` of every stretch covering most of the shorter work (an excerpt counts), best first.

        "Most" is measured against what the query's fingerprint can cover (its first item needs 2.7 s of audio),
        not against its duration: a 5 s file's items span 2.9 s, so 80 % of 5 s would let every re-encode of a
        short file through as new. Files under 2.7 s have no items and only the exact checks apply.
        """
        min_overlap = min(self.ingest.min_overlap_s, 0.8 * match_span_s(len(fingerprint)))
        matches = index.query(fingerprint, min_duration_s=max(min_overlap, MIN_NEAR_COPY_S),
                              max_ber=self.ingest.near_duplicate_ber)
        return [(match.asset_id, f"bit error rate {match.details['ber']:.3f} over {match.duration_s:.1f} s "
                                 f"(query {match.query_offset_s:.1f} s, original {match.asset_offset_s:.1f} s)")
                for match in sorted(matches, key=lambda match: match.details["ber"])]

    @staticmethod
    def prefetch(analyses: list[dict[str, Any]], writer: LedgerWriter) -> None:
        """Look up, in one query per table, every row that admitting ``analyses`` will read or write."""
        asset_ids = [analysis["asset_id"] for analysis in analyses]
        writer.prefetch("assets", asset_ids)
        writer.prefetch("fingerprints", asset_ids)
        writer.prefetch("sources", [_source_id(analysis) for analysis in analyses])
        writer.prefetch("licences", [analysis["license"] for analysis in analyses if analysis["license"]])

    def admit_batch(self, records: list[dict[str, Any]], flow_run_id: str | None) -> list[IngestItem]:
        """Decide and record ``records`` (in curator order) in one transaction.

        A record the driver found unchanged (``known``) already carries the ledger's standing decision and needs
        no transaction at all, so a re-run over unchanged files writes and locks nothing.
        """
        pending = [record for record in records if not record.get("known")]
        if not pending:
            return [IngestItem.standing(record) for record in records]
        with self.transaction(flow_run_id) as writer:
            self.prefetch(pending, writer)
            return [IngestItem.standing(record) if record.get("known") else self.admit(record, writer, flow_run_id)
                    for record in records]

    def admit(self, analysis: dict[str, Any], writer: LedgerWriter, flow_run_id: str | None) -> IngestItem:
        """Decide and record one file; a file already decided for good keeps its ledger status."""
        asset_id = analysis["asset_id"]
        existing = writer.get("assets", asset_id)
        if existing is not None and existing["status"] in FINAL_STATUSES:
            if not analysis["problem"]:  # read again because its statement changed: keep what it was read with
                writer.record("assets", asset_id, {key: analysis.get(key) for key in _FILE_FIELDS}, "asset.restated")
            return IngestItem(analysis["path"], existing["status"], existing["reason"], asset_id)
        decision = self.decide(analysis, writer)
        facts = {key: analysis[key] for key in _ASSET_FIELDS}
        facts.update({key: analysis.get(key) for key in _FILE_FIELDS})
        facts.update(status=decision.status, reason=decision.reason, duplicate_of=decision.duplicate_of,
                     source_id=_source_id(analysis))
        item = IngestItem(analysis["path"], decision.status, decision.reason, asset_id)
        if existing is not None and all(existing[key] == value for key, value in facts.items()):
            return item
        _record_source(writer, analysis)
        if analysis["license"]:
            _record_licence(writer, analysis["license"], self.licenses)
        writer.record("assets", asset_id, {**facts, "ingested_at": utc_now(), "flow_run_id": flow_run_id},
                      f"asset.{decision.status}")
        if decision.original_update is not None:
            writer.record("assets", decision.duplicate_of, decision.original_update, "asset.disputed")
            self._disputed_originals[decision.duplicate_of] = decision.original_update["reason"]
        if analysis["fingerprint"]:
            writer.record("fingerprints", asset_id, {
                "owner": "asset", "algorithm": "chromaprint", "items": analysis["fingerprint"],
                "item_count": len(decode_fingerprint(analysis["fingerprint"])), "duration_s": analysis["duration_s"],
            }, "fingerprint.computed")
        self._remember_hashes(asset_id, analysis["sha256"], analysis["pcm_hash"])
        self._remember_fingerprint(asset_id, "asset", analysis["fingerprint"])
        return item

    def take_disputed_originals(self) -> dict[str, str]:
        """Originals put in dispute since the last call (asset id -> reason): a run reports what it changed."""
        taken, self._disputed_originals = self._disputed_originals, {}
        return taken

    def block(self, analysis: dict[str, Any], reason: str, writer: LedgerWriter) -> str:
        """Record a protected reference work; returns its blocklist id."""
        self._in_transaction(writer)
        if analysis["problem"] or not analysis["fingerprint"]:
            raise ValueError(f"{analysis['path']}: cannot fingerprint a blocklist reference: {analysis['problem']}")
        work_id = "b" + analysis["sha256"][:15]
        writer.record("blocklist", work_id, {"path": analysis["path"], "reason": reason, "sha256": analysis["sha256"],
                                             "duration_s": analysis["duration_s"]}, "blocklist.added")
        writer.record("fingerprints", work_id, {
            "owner": "blocklist", "algorithm": "chromaprint", "items": analysis["fingerprint"],
            "item_count": len(decode_fingerprint(analysis["fingerprint"])), "duration_s": analysis["duration_s"],
        }, "fingerprint.computed")
        self._remember_fingerprint(work_id, "blocklist", analysis["fingerprint"])
        return work_id


def _original(writer: LedgerWriter, asset_id: str) -> dict[str, Any] | None:
    """The asset at the end of ``asset_id``'s ``duplicate_of`` chain, as this transaction sees it."""
    seen: set[str] = set()
    row = writer.get("assets", asset_id)
    while row is not None and row["duplicate_of"] and row["duplicate_of"] not in seen:
        seen.add(row["id"])
        row = writer.get("assets", row["duplicate_of"])
    return row


def _source_id(analysis: dict[str, Any]) -> str:
    origin = f"{analysis['manifest']}:{analysis['manifest_line']}" if analysis["manifest"] else analysis["path"]
    return hashlib.sha256(origin.encode("utf-8")).hexdigest()[:16]


def _record_source(writer: LedgerWriter, analysis: dict[str, Any]) -> None:
    writer.record("sources", _source_id(analysis), {
        "path": analysis["path"], "manifest": analysis["manifest"], "manifest_line": analysis["manifest_line"],
        "source": analysis["source"], "rights_holder": analysis["rights_holder"],
        "attribution": analysis["attribution"],
    }, "source.seen")


def _record_licence(writer: LedgerWriter, spdx_id: str, licenses: LicensePolicy) -> None:
    policy = "allow" if spdx_id in licenses.allow else "deny" if spdx_id in licenses.deny else "other"
    writer.record("licences", spdx_id, {"name": license_name(spdx_id), "policy": policy,
                                        "requires_attribution": int(requires_attribution(spdx_id))}, "licence.seen")
