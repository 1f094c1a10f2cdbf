"""``soundtrail verify FILE``: what an audio file says about itself, and what the ledger says about it.

Three readings, each independent of the others, then whether they agree::

    credentials  the embedded C2PA manifest: intact or not; who signed it and whether the signer is trusted (a
                 workspace's demo CA is intact but trusted nowhere else, and is said so); the output and model it
                 names; the watermark it declares (its c2pa.soft-binding assertion)
    watermark    the workspace key's mark, read blind from the audio: payload and p-value
    ledger       the output the mark names (else the one the manifest names): its status, prompt and model, the
                 model's takedown status and training data (licences, rights holders, the digest the manifest
                 should carry), and whether this file is byte for byte the released one

A file stripped of its manifest is still traced through its mark; a mark that disagrees with the manifest, a
manifest whose training digest differs from the ledger's, or bytes that are not the released ones are reported
as such. ``consistent`` is true only when all of it holds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from soundtrail.atomic import sha256_file
from soundtrail.audio import decode
from soundtrail.provenance.credentials import (
    CA_CERT,
    CredentialError,
    CredentialReport,
    read_credentials,
    training_digest,
)
from soundtrail.provenance.ledger import Ledger
from soundtrail.provenance.lineage import training_license_summary
from soundtrail.provenance.records import ModelRecord
from soundtrail.release.gate import CREDENTIALS_DIR, watermark_config
from soundtrail.release.watermark import ALGORITHM, detect
from soundtrail.workspace import Workspace

TRUSTED, DEMO, OTHER_DEMO, UNTRUSTED = "trusted", "this workspace's demo CA", "another workspace's demo CA", \
    "untrusted"


def verify_file(workspace: Workspace, path: Path) -> dict[str, Any]:
    """The three readings of ``path`` and whether they agree (see the module docstring for the fields)."""
    audio, rate = decode(path)
    credentials = _credentials(workspace, path)
    found = detect(audio, rate, watermark_config(workspace))
    payload = found.to_json()["payload"]
    declared = (credentials.get("soft_binding") or {}).get("payload")
    watermark = {"detected": found.detected, "payload": payload, "p_value": found.p_value,
                 "matches_manifest": None if declared is None else payload == declared}
    output_id = payload or credentials.get("output_id")
    ledger = _ledger(workspace, output_id, sha256_file(path), credentials.get("training_digest"))
    ledger["found_by"] = "watermark" if payload else "credentials" if output_id else None
    consistent = bool(credentials["valid"] and watermark["matches_manifest"] and payload == credentials["output_id"]
                      and ledger["output"] and ledger["output"]["status"] == "released"
                      and ledger["file_is_released_copy"] and ledger["training"]
                      and ledger["training"]["digest_matches_manifest"])
    return {"file": str(path), "credentials": credentials, "watermark": watermark, "ledger": ledger,
            "consistent": consistent}


def _credentials(workspace: Workspace, path: Path) -> dict[str, Any]:
    try:
        report = read_credentials(path)
    except CredentialError as exc:
        return {"present": False, "valid": False, "problem": str(exc), "output_id": None, "training_digest": None}
    trust = TRUSTED if report.trusted else _demo_trust(workspace, path, report)
    binding = report.soft_binding
    return {
        "present": True, "valid": report.validation_ok, "state": report.validation_state,
        "errors": [item.get("code") for item in report.validation_errors],
        "signer": report.signer, "issuer": report.issuer, "trust": trust,
        "demo_signer": trust in (DEMO, OTHER_DEMO),
        "output_id": report.output_id, "model_id": report.model_id, "training_digest": report.training_digest,
        "soft_binding": None if binding is None else {"alg": binding.alg, "payload": binding.value,
                                                      "known_algorithm": binding.alg == ALGORITHM},
    }


def _demo_trust(workspace: Workspace, path: Path, report: CredentialReport) -> str:
    """Whether an untrusted signature is a demo CA's, and this workspace's (it validates against its root)."""
    if not report.demo_signer:
        return UNTRUSTED
    anchor = workspace.root / CREDENTIALS_DIR / CA_CERT
    if anchor.is_file() and read_credentials(path, trust_anchors=anchor).trusted:
        return DEMO
    return OTHER_DEMO


def _ledger(workspace: Workspace, output_id: str | None, file_sha256: str,
            manifest_digest: str | None) -> dict[str, Any]:
    empty: dict[str, Any] = {"output": None, "file_is_released_copy": None, "model": None, "training": None}
    if output_id is None:
        return empty
    with Ledger(workspace.ledger_url) as ledger:
        row = ledger.get("outputs", output_id)
        if row is None:
            return empty
        model_row = ledger.get("models", row["model_id"]) if row.get("model_id") else None
        summary = training_license_summary(ledger, row["model_id"]) if model_row else None
    output = {key: row.get(key) for key in ("id", "status", "verdict", "model_id", "prompt", "seed", "seconds",
                                            "created_at")}
    result = {**empty, "output": output,
              "file_is_released_copy": row["status"] == "released" and row.get("sha256") == file_sha256}
    if model_row is not None and summary is not None:
        model = ModelRecord.from_row(model_row)
        result["model"] = {"id": model.id, "kind": model.kind, "codec_id": model.codec_id, "status": model.status,
                           "takedowns": list(model.takedowns)}
        digest = training_digest(summary)
        result["training"] = {"assets": summary["assets"], "duration_s": summary["duration_s"],
                              "licenses": summary["licenses"], "rights_holders": summary["rights_holders"],
                              "digest": digest, "digest_matches_manifest": (
                                  None if manifest_digest is None else digest == manifest_digest)}
    return result
