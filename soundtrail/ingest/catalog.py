"""Ingest, step 2: decide each analysed file's status against the ledger and record it.

The order of checks is the order of precedence a rights reviewer would apply:

1. the file could not be used (unreadable, truncated, silent, too short, bad manifest row)
   -> ``quarantined`` with that reason;
2. it is, or contains, a blocklisted protected work -> ``blocked``;
3. it is the same bytes, the same decoded audio, or a near copy (re-encode, gain, container)
   of an accepted asset -> ``duplicate`` of that asset;
4. its licence is missing, unknown, ambiguous, unclear, denied or not allowed -> ``quarantined``;
5. otherwise ``accepted``.

Files are decided one at a time in curator order (manifest line, then path), in ledger
transactions of a batch of files each, so the result does not depend on which Ray worker
finished first, and a re-run after a kill continues where the ledger stands.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from soundtrail.config import IngestSettings, LicenseSettings
from soundtrail.licenses import LicensePolicy, license_name, requires_attribution
from soundtrail.provenance.ledger import Ledger, LedgerWriter, utc_now
from soundtrail.screening.chromaprint import FingerprintIndex, decode_fingerprint, match_span_s

FINAL_STATUSES = ("accepted", "duplicate", "blocked", "revoked")
MIN_NEAR_COPY_S = 0.5  # a near copy spans at least 3 Chromaprint items (96 bits) under the BER threshold
_ASSET_FIELDS = ("path", "sha256", "pcm_hash", "duration_s", "sample_rate", "channels", "container", "codec",
                 "file_tags", "license", "rights_holder", "attribution", "title", "description", "tags")


@dataclass
class IngestItem:
    """One line of the ingest summary (the CLI contract's ``items`` entries)."""

    path: str
    status: str
    reason: str | None
    asset_id: str

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "status": self.status, "reason": self.reason, "asset_id": self.asset_id}


class Catalog:
    """The accepted corpus and the blocklist, indexed for the duplicate and blocklist checks."""

    def __init__(self, ledger: Ledger, ingest: IngestSettings, licenses: LicenseSettings) -> None:
        self.ledger = ledger
        self.ingest = ingest
        self.licenses = LicensePolicy(allow=licenses.allow, deny=licenses.deny)
        self._by_sha: dict[str, str] = {}
        self._by_pcm: dict[str, str] = {}
        self._accepted = FingerprintIndex()
        self._blocked = FingerprintIndex()
        self._block_reasons: dict[str, str] = {}
        fingerprints = {row["id"]: row for row in ledger.rows("fingerprints")}
        for asset in ledger.rows("assets", status="accepted"):
            self._remember(asset["id"], asset["sha256"], asset["pcm_hash"], fingerprints.get(asset["id"]))
        for work in ledger.rows("blocklist"):
            self._block_reasons[work["id"]] = work["reason"] or "protected work"
            if work["id"] in fingerprints:
                self._blocked.add(work["id"], decode_fingerprint(fingerprints[work["id"]]["items"]))

    def _remember(self, asset_id: str, sha: str | None, pcm: str | None, fingerprint: dict | None) -> None:
        if sha:
            self._by_sha.setdefault(sha, asset_id)
        if pcm:
            self._by_pcm.setdefault(pcm, asset_id)
        if fingerprint:
            self._accepted.add(asset_id, decode_fingerprint(fingerprint["items"]))

    def decide(self, analysis: dict[str, Any]) -> tuple[str, str | None, str | None]:
        """``(status, reason, duplicate_of)`` for one analysed file, by the module's precedence."""
        if analysis["problem"]:
            return "quarantined", analysis["problem"], None
        fingerprint = decode_fingerprint(analysis["fingerprint"]) if analysis["fingerprint"] else None
        if fingerprint is not None:
            blocked = self._best_match(self._blocked, fingerprint)
            if blocked is not None:
                work, detail = blocked
                return "blocked", f"matches blocklisted work {work} ({self._block_reasons[work]}): {detail}", None
        for table, label in ((self._by_sha, "same bytes as"), (self._by_pcm, "same decoded audio as")):
            original = table.get(analysis["sha256"] if label == "same bytes as" else analysis["pcm_hash"])
            if original and original != analysis["asset_id"]:
                return "duplicate", f"{label} asset {original}", original
        if fingerprint is not None:
            near = self._best_match(self._accepted, fingerprint)
            if near is not None and near[0] != analysis["asset_id"]:
                return "duplicate", f"near copy of asset {near[0]}: {near[1]}", near[0]
        if analysis["license_problem"]:
            return "quarantined", analysis["license_problem"], None
        return "accepted", None, None

    def _best_match(self, index: FingerprintIndex, fingerprint: Any) -> tuple[str, str] | None:
        """The strongest match covering most of the shorter work (an excerpt counts).

        "Most" is measured against what the query's fingerprint can cover (its first item needs 2.7 s of audio),
        not against its duration: a 5 s file's items span 2.9 s, so 80 % of 5 s would let every re-encode of a
        short file through as new. Files under 2.7 s have no items and only the exact checks apply.
        """
        min_overlap = min(self.ingest.min_overlap_s, 0.8 * match_span_s(len(fingerprint)))
        matches = index.query(fingerprint, min_duration_s=max(min_overlap, MIN_NEAR_COPY_S),
                              max_ber=self.ingest.near_duplicate_ber)
        if not matches:
            return None
        best = min(matches, key=lambda match: match.details["ber"])
        detail = (f"bit error rate {best.details['ber']:.3f} over {best.duration_s:.1f} s "
                  f"(query {best.query_offset_s:.1f} s, original {best.asset_offset_s:.1f} s)")
        return best.asset_id, detail

    @staticmethod
    def prefetch(analyses: list[dict[str, Any]], writer: LedgerWriter) -> None:
        """Look up, in one query per table, every row that admitting ``analyses`` will read or write."""
        asset_ids = [analysis["asset_id"] for analysis in analyses]
        writer.prefetch("assets", asset_ids)
        writer.prefetch("fingerprints", asset_ids)
        writer.prefetch("sources", [_source_id(analysis) for analysis in analyses])
        writer.prefetch("licences", [analysis["license"] for analysis in analyses if analysis["license"]])

    def admit(self, analysis: dict[str, Any], writer: LedgerWriter, flow_run_id: str | None) -> IngestItem:
        """Decide and record one file; a file already decided keeps its ledger status."""
        asset_id = analysis["asset_id"]
        existing = writer.get("assets", asset_id)
        if existing is not None and existing["status"] in FINAL_STATUSES:
            return IngestItem(analysis["path"], existing["status"], existing["reason"], asset_id)
        status, reason, duplicate_of = self.decide(analysis)
        if existing is not None and (existing["status"], existing["reason"]) == (status, reason):
            return IngestItem(analysis["path"], status, reason, asset_id)
        source_id = _record_source(writer, analysis)
        if analysis["license"]:
            _record_licence(writer, analysis["license"], self.licenses)
        fields = {key: analysis[key] for key in _ASSET_FIELDS}
        fields.update(status=status, reason=reason, duplicate_of=duplicate_of, source_id=source_id,
                      ingested_at=utc_now(), flow_run_id=flow_run_id)
        writer.record("assets", asset_id, fields, f"asset.{status}")
        if analysis["fingerprint"]:
            writer.record("fingerprints", asset_id, {
                "owner": "asset", "algorithm": "chromaprint", "items": analysis["fingerprint"],
                "item_count": len(decode_fingerprint(analysis["fingerprint"])), "duration_s": analysis["duration_s"],
            }, "fingerprint.computed")
        if status == "accepted":
            self._remember(asset_id, analysis["sha256"], analysis["pcm_hash"],
                           {"items": analysis["fingerprint"]} if analysis["fingerprint"] else None)
        return IngestItem(analysis["path"], status, reason, asset_id)

    def block(self, analysis: dict[str, Any], reason: str, writer: LedgerWriter) -> str:
        """Record a protected reference work; returns its blocklist id."""
        if analysis["problem"] or not analysis["fingerprint"]:
            raise ValueError(f"{analysis['path']}: cannot fingerprint a blocklist reference: {analysis['problem']}")
        work_id = "b" + analysis["sha256"][:15]
        writer.record("blocklist", work_id, {"path": analysis["path"], "reason": reason, "sha256": analysis["sha256"],
                                             "duration_s": analysis["duration_s"]}, "blocklist.added")
        writer.record("fingerprints", work_id, {
            "owner": "blocklist", "algorithm": "chromaprint", "items": analysis["fingerprint"],
            "item_count": len(decode_fingerprint(analysis["fingerprint"])), "duration_s": analysis["duration_s"],
        }, "fingerprint.computed")
        self._blocked.add(work_id, decode_fingerprint(analysis["fingerprint"]))
        self._block_reasons[work_id] = reason
        return work_id


def _source_id(analysis: dict[str, Any]) -> str:
    origin = f"{analysis['manifest']}:{analysis['manifest_line']}" if analysis["manifest"] else analysis["path"]
    return hashlib.sha256(origin.encode("utf-8")).hexdigest()[:16]


def _record_source(writer: LedgerWriter, analysis: dict[str, Any]) -> str:
    source_id = _source_id(analysis)
    writer.record("sources", source_id, {
        "path": analysis["path"], "manifest": analysis["manifest"], "manifest_line": analysis["manifest_line"],
        "source": analysis["source"], "rights_holder": analysis["rights_holder"],
        "attribution": analysis["attribution"],
    }, "source.seen")
    return source_id


def _record_licence(writer: LedgerWriter, spdx_id: str, licenses: LicensePolicy) -> None:
    policy = "allow" if spdx_id in licenses.allow else "deny" if spdx_id in licenses.deny else "other"
    writer.record("licences", spdx_id, {"name": license_name(spdx_id), "policy": policy,
                                        "requires_attribution": int(requires_attribution(spdx_id))}, "licence.seen")
