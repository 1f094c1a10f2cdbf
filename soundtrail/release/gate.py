"""The release gate: generated audio leaves the workspace only screened, watermarked and signed.

::

    candidate.wav --screen--> block --> reports/blocked/<output_id>.json      outputs row: blocked
                        |
                        +--> pass | flag --> embed watermark (payload = output id) --> detect it back
                                         --> sign C2PA manifest (model, training-licence digest) --> read it back
                                         --> outputs/<output_id>.wav (renamed into place)        outputs row: released

Each step is its own chained ledger event on the ``outputs`` row (``output.screened``, then ``output.blocked``
or ``output.watermarked``, ``output.credentialed``, ``output.released``), so the chain shows what the gate did
and in which order. The three release events and the rename share one ledger transaction: the file is in
``outputs/`` exactly when the ledger says it was released.

The output id is 8 hex digits and is also the watermark's 32-bit payload, so a detected mark names the ledger
row of the clip it came from. Releasing an id again with the same candidate file returns what was recorded and
changes nothing; a run killed part-way resumes from the screening it recorded.
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from soundtrail.atomic import atomic_write_text, sha256_file
from soundtrail.audio import decode, write_wav
from soundtrail.provenance.credentials import (
    CredentialReport,
    SigningIdentity,
    ensure_signing_identity,
    read_credentials,
    sign_wav,
)
from soundtrail.provenance.ledger import Ledger, utc_now
from soundtrail.provenance.lineage import training_license_summary
from soundtrail.release.watermark import WatermarkConfig, detect, embed, hex_to_payload, payload_to_hex
from soundtrail.screening.stage import screening_index
from soundtrail.workspace import Workspace

OUTPUTS_DIR = "outputs"
BLOCKED_DIR = Path("reports") / "blocked"
CREDENTIALS_DIR = "credentials"
PEAK = 0.999  # marked audio is scaled under full scale rather than clipped (clipping would damage the mark)


class ReleaseError(RuntimeError):
    """The gate refused to release (mark not detectable, credentials invalid, output id reused)."""


@dataclass(frozen=True)
class ReleaseResult:
    """What the gate decided for one output; ``path`` and ``credential`` only when released."""

    output_id: str
    status: Literal["released", "blocked"]
    verdict: str
    matches: list[dict[str, Any]]
    path: Path | None
    payload_hex: str
    credential: dict[str, Any] | None
    evidence: Path | None = None  # the blocked report

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "path": str(self.path) if self.path else None,
                "evidence": str(self.evidence) if self.evidence else None}


def new_output_id(ledger: Ledger) -> str:
    """A random output id (8 hex digits: the watermark's 32-bit payload) that no output in the ledger has."""
    while True:
        output_id = secrets.token_hex(4)
        if ledger.get("outputs", output_id) is None:
            return output_id


def watermark_config(workspace: Workspace) -> WatermarkConfig:
    """The workspace's watermark: the default layout keyed by ``[watermark] key``."""
    return WatermarkConfig(key=str(workspace.settings.watermark.key))


def signing_identity(workspace: Workspace) -> SigningIdentity:
    """The configured certificate chain and key (paths relative to the workspace), else the workspace's demo CA."""
    settings = workspace.settings.credentials
    cert = workspace.root / settings.sign_cert if settings.sign_cert else None
    key = workspace.root / settings.sign_key if settings.sign_key else None
    return ensure_signing_identity(workspace.path(CREDENTIALS_DIR), sign_cert=cert, sign_key=key)


def mark(audio: np.ndarray, sample_rate: int, payload: int, config: WatermarkConfig) -> np.ndarray:
    """Embed ``payload``, scaled under full scale if the mark pushed a peak over it (gain keeps the mark)."""
    marked = embed(audio, sample_rate, payload, config)
    peak = float(np.max(np.abs(marked))) if marked.size else 0.0
    return marked * np.float32(PEAK / peak) if peak > PEAK else marked


def check_mark(path: Path, payload: int, config: WatermarkConfig) -> float:
    """Detect the mark in the file as written; its p-value, or :class:`ReleaseError` if it does not carry it."""
    audio, rate = decode(path)
    found = detect(audio, rate, config)
    if not found.detected or found.payload != payload:
        got = "nothing" if found.payload is None else payload_to_hex(found.payload)
        raise ReleaseError(f"watermark {payload_to_hex(payload)} not detectable in the marked file (found {got}, "
                           f"p={found.p_value:.3g}): too short or too quiet to release")
    return found.p_value


def release(workspace: Workspace, candidate: Path, *, output_id: str, model_id: str, prompt: str, seed: int,
            seconds: float, codes: np.ndarray | None = None) -> ReleaseResult:
    """Run ``candidate`` through the gate as output ``output_id`` (8 hex digits, the watermark payload).

    ``codes`` are the generator's ``[K, F]`` tokens when it made them with the shards' codec: they let the
    token method screen without re-encoding. The candidate file itself is never modified or removed.
    """
    payload = hex_to_payload(output_id)
    output_id = payload_to_hex(payload)
    candidate = Path(candidate)
    candidate_sha256 = sha256_file(candidate)
    with Ledger(workspace.ledger_url) as ledger:
        summary = training_license_summary(ledger, model_id)  # an unknown model fails here, before anything
        row = ledger.get("outputs", output_id)
        if row is not None:
            previous = (row.get("screening") or {}).get("candidate_sha256")
            if previous != candidate_sha256 or row["model_id"] != model_id:
                raise ReleaseError(f"output id {output_id} was already used for another file or model; "
                                   "pick a new id")
            if row["status"] in ("released", "blocked"):
                return _recorded(workspace, row)
            screening = row["screening"]  # killed after screening: resume from what was recorded
        else:
            found = screening_index(workspace, ledger).screen(candidate, codes)
            screening = {**found.to_dict(), "candidate_sha256": candidate_sha256}
            ledger.record("outputs", output_id, {
                "model_id": model_id, "prompt": prompt, "seed": seed, "seconds": seconds, "status": "screened",
                "verdict": found.result.verdict, "screening": screening, "created_at": utc_now(),
            }, "output.screened")
        if screening["verdict"] == "block":
            return _block(workspace, ledger, output_id, screening)
        return _mark_sign_release(workspace, ledger, candidate, output_id, payload, model_id, summary)


def _block(workspace: Workspace, ledger: Ledger, output_id: str, screening: dict[str, Any]) -> ReleaseResult:
    """Write the evidence report, then record the block: nothing reaches ``outputs/``."""
    row = ledger.get("outputs", output_id)
    evidence = workspace.root / BLOCKED_DIR / f"{output_id}.json"
    document = {"output_id": output_id, "model_id": row["model_id"], "prompt": row["prompt"], "seed": row["seed"],
                "seconds": row["seconds"], "screened_at": row["created_at"], **screening}
    atomic_write_text(evidence, json.dumps(document, indent=2, sort_keys=True))
    ledger.record("outputs", output_id, {"status": "blocked"}, "output.blocked")
    return _recorded(workspace, ledger.get("outputs", output_id))


def _mark_sign_release(workspace: Workspace, ledger: Ledger, candidate: Path, output_id: str, payload: int,
                       model_id: str, summary: dict[str, Any]) -> ReleaseResult:
    config = watermark_config(workspace)
    identity = signing_identity(workspace)
    outputs = workspace.path(OUTPUTS_DIR)
    final = outputs / f"{output_id}.wav"
    audio, rate = decode(candidate)
    with tempfile.TemporaryDirectory(prefix=".release-", dir=outputs) as staging:
        marked_path, signed_path = Path(staging) / "marked.wav", Path(staging) / "signed.wav"
        write_wav(marked_path, mark(audio, rate, payload, config), rate)
        p_value = check_mark(marked_path, payload, config)
        record = sign_wav(marked_path, signed_path, identity, model_id=model_id, training_license_summary=summary,
                          output_id=output_id, title=final.name)
        report = read_credentials(signed_path, trust_anchors=identity.trust_anchor)
        _check_credentials(report, output_id, model_id)
        credential = {**record.as_dict(), "validation_state": report.validation_state, "trusted": report.trusted,
                      "watermark_p_value": p_value}
        with ledger.writer() as writer:
            writer.record("outputs", output_id, {"status": "watermarked", "watermark_payload": output_id},
                          "output.watermarked")
            writer.record("outputs", output_id, {"status": "credentialed", "credential": credential},
                          "output.credentialed")
            writer.record("outputs", output_id, {"status": "released", "path": str(final),
                                                 "sha256": record.signed_sha256}, "output.released")
            os.replace(signed_path, final)  # inside the transaction: a failed rename rolls the events back
    return _recorded(workspace, ledger.get("outputs", output_id))


def _check_credentials(report: CredentialReport, output_id: str, model_id: str) -> None:
    if not report.validation_ok:
        codes = ", ".join(item.get("code", "?") for item in report.validation_errors) or report.validation_state
        raise ReleaseError(f"content credentials of output {output_id} do not validate: {codes}")
    if report.output_id != output_id or report.model_id != model_id:
        raise ReleaseError(f"content credentials name output {report.output_id} / model {report.model_id}, "
                           f"expected {output_id} / {model_id}")


def recorded_release(workspace: Workspace, output_id: str) -> ReleaseResult | None:
    """What the gate decided for ``output_id`` (released or blocked), or None if it has not decided yet."""
    with Ledger(workspace.ledger_url) as ledger:
        row = ledger.get("outputs", output_id)
    return _recorded(workspace, row) if row is not None and row["status"] in ("released", "blocked") else None


def _recorded(workspace: Workspace, row: dict[str, Any]) -> ReleaseResult:
    """The result as the ledger holds it (so a repeated release answers exactly as the first did)."""
    screening = row["screening"]
    released = row["status"] == "released"
    if released and (not Path(row["path"]).is_file() or sha256_file(row["path"]) != row["sha256"]):
        raise ReleaseError(f"output {row['id']} was released as {row['path']}, but that file is missing or changed")
    evidence = workspace.root / BLOCKED_DIR / f"{row['id']}.json"
    return ReleaseResult(
        output_id=row["id"], status="released" if released else "blocked", verdict=row["verdict"],
        matches=screening["matches"], path=Path(row["path"]) if released else None, payload_hex=row["id"],
        credential=row["credential"] if released else None, evidence=None if released else evidence)
