"""The release gate: generated audio leaves the workspace only screened, watermarked and signed.

::

    staging/<id>/candidate.wav --screen--> block --> reports/blocked/<output_id>.json     outputs row: blocked
                        |
                        +--> pass | flag --> refuse a candidate already marked
                                         --> staging/<id>/marked.wav (payload = output id), detected back
                                         --> staging/<id>/signed.wav (C2PA: model, training digest, soft binding)
                                         --> ledger: watermarked, credentialed, released (one transaction)
                                         --> outputs/<output_id>.wav (renamed in)               outputs row: released

Each step is its own chained ledger event on the ``outputs`` row (``output.screened``, then ``output.blocked``
or ``output.watermarked``, ``output.credentialed``, ``output.released``), so the chain shows what the gate did
and in which order. Everything before the release happens in the output's private staging folder
(:mod:`.staging`), outside ``outputs/``: a file appears in ``outputs/`` only by a rename after the ledger has
committed its release, so a kill at any point leaves nothing there that the ledger does not call released. A kill
between that commit and the rename leaves the signed file in staging, and the next release (of this output or
any other) renames it into place after checking it hashes to what the ledger recorded. Blocked outputs keep their
evidence (which asset, where, what score) but no audio: the staging folder goes when the gate is done.

The output id is 8 hex digits and is also the watermark's 32-bit payload, so a detected mark names the ledger
row of the clip it came from. Releasing an id again with the same candidate file returns what was recorded and
changes nothing; a run killed part-way resumes from the screening it recorded.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from soundtrail.atomic import atomic_write_text, sha256_file
from soundtrail.audio import decode, write_wav
from soundtrail.provenance.credentials import (
    CredentialReport,
    SigningIdentity,
    SoftBinding,
    ensure_signing_identity,
    read_credentials,
    sign_wav,
)
from soundtrail.provenance.ledger import Ledger, utc_now
from soundtrail.provenance.lineage import training_license_summary
from soundtrail.provenance.outputs import OUTPUTS_DIR, released_path
from soundtrail.release.staging import abandoned, staging_area
from soundtrail.release.watermark import (
    ALGORITHM,
    WatermarkConfig,
    detect,
    embed,
    hex_to_payload,
    payload_to_hex,
)
from soundtrail.screening.stage import screening_index
from soundtrail.workspace import Workspace

BLOCKED_DIR = Path("reports") / "blocked"
CREDENTIALS_DIR = "credentials"
PEAK = 0.999  # marked audio is scaled under full scale rather than clipped (clipping would damage the mark)
FINISHED = ("released", "blocked")


class ReleaseError(RuntimeError):
    """The gate refused to release (mark not detectable, credentials invalid, output id reused)."""


class AlreadyMarkedError(ReleaseError):
    """The audio already carries a watermark: marking it again would hide or replace the first."""

    def __init__(self, what: str, payload: int, p_value: float) -> None:
        super().__init__(f"{what} already carries watermark {payload_to_hex(payload)} (p={p_value:.2g}); "
                         "a mark is never replaced")
        self.payload = payload
        self.p_value = p_value


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
    protected: list[dict[str, str]] = field(default_factory=list)  # protected works matched, with their entries

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


def refuse_marked(audio: np.ndarray, sample_rate: int, config: WatermarkConfig, what: str) -> None:
    """Raise :class:`AlreadyMarkedError` if ``audio`` carries this key's mark (any payload)."""
    found = detect(audio, sample_rate, config)
    if found.detected and found.payload is not None:
        raise AlreadyMarkedError(what, found.payload, found.p_value)


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
    output_id = payload_to_hex(hex_to_payload(output_id))
    with staging_area(workspace, output_id) as folder:
        return release_staged(workspace, folder, Path(candidate), output_id=output_id, model_id=model_id,
                              prompt=prompt, seed=seed, seconds=seconds, codes=codes)


def recorded_release(workspace: Workspace, output_id: str, folder: Path) -> ReleaseResult | None:
    """The gate's recorded decision for ``output_id`` if it reached one (finishing an interrupted publish from
    ``folder``, the output's locked staging folder), else None."""
    with Ledger(workspace.ledger_url) as ledger:
        row = ledger.get("outputs", output_id)
    return _recorded(workspace, row, folder) if row is not None and row["status"] in FINISHED else None


def release_staged(workspace: Workspace, folder: Path, candidate: Path, *, output_id: str, model_id: str,
                   prompt: str, seed: int, seconds: float, codes: np.ndarray | None = None) -> ReleaseResult:
    """:func:`release` inside ``folder``, the output's staging folder its caller holds (see :mod:`.staging`)."""
    payload = hex_to_payload(output_id)
    candidate_sha256 = sha256_file(candidate)
    request = {"model_id": model_id, "prompt": prompt, "seed": seed, "seconds": seconds}
    finish_abandoned(workspace)
    with Ledger(workspace.ledger_url) as ledger:
        summary = training_license_summary(ledger, model_id)  # an unknown model fails here, before anything
        row = ledger.get("outputs", output_id)
        screening = None
        if row is not None:
            same_file = (row.get("screening") or {}).get("candidate_sha256") == candidate_sha256
            same_request = all(row.get(key) == value for key, value in request.items())
            if row["status"] in FINISHED and same_file and row["model_id"] == model_id:
                return _recorded(workspace, row, folder)
            if row["status"] in FINISHED or not same_request:
                raise ReleaseError(f"output id {output_id} was already used for another file or model; "
                                   "pick a new id")
            # Killed after screening: resume from what was recorded, or screen again if the same request
            # regenerated different audio (nothing of the first was released).
            screening = row["screening"] if same_file else None
        if screening is None:
            found = screening_index(workspace, ledger).screen(candidate, codes)
            screening = {**found.to_dict(), "candidate_sha256": candidate_sha256}
            created_at = row["created_at"] if row is not None else utc_now()
            ledger.record("outputs", output_id, {
                **request, "status": "screened", "verdict": found.result.verdict, "screening": screening,
                "created_at": created_at}, "output.screened")
        if screening["verdict"] == "block":
            return _block(workspace, ledger, output_id, screening)
        return _mark_sign_release(workspace, ledger, folder, candidate, output_id, payload, model_id, summary)


def finish_abandoned(workspace: Workspace) -> None:
    """Clear staging folders that killed runs left, first renaming into ``outputs/`` any signed file whose
    release the ledger had already committed."""
    with Ledger(workspace.ledger_url) as ledger:
        for output_id, folder in abandoned(workspace):
            row = ledger.get("outputs", output_id)
            if row is not None and row["status"] == "released":
                _publish_if_staged(workspace, row, folder)


def _block(workspace: Workspace, ledger: Ledger, output_id: str, screening: dict[str, Any]) -> ReleaseResult:
    """Write the evidence report, then record the block: nothing reaches ``outputs/``."""
    row = ledger.get("outputs", output_id)
    evidence = workspace.root / BLOCKED_DIR / f"{output_id}.json"
    document = {"output_id": output_id, "model_id": row["model_id"], "prompt": row["prompt"], "seed": row["seed"],
                "seconds": row["seconds"], "screened_at": row["created_at"], **screening}
    atomic_write_text(evidence, json.dumps(document, indent=2, sort_keys=True))
    ledger.record("outputs", output_id, {"status": "blocked"}, "output.blocked")
    return _recorded(workspace, ledger.get("outputs", output_id))


def _mark_sign_release(workspace: Workspace, ledger: Ledger, folder: Path, candidate: Path, output_id: str,
                       payload: int, model_id: str, summary: dict[str, Any]) -> ReleaseResult:
    config = watermark_config(workspace)
    identity = signing_identity(workspace)
    audio, rate = decode(candidate)
    refuse_marked(audio, rate, config, f"the candidate for output {output_id}")
    marked_path, signed_path = folder / "marked.wav", folder / "signed.wav"
    write_wav(marked_path, mark(audio, rate, payload, config), rate)
    p_value = check_mark(marked_path, payload, config)
    binding = SoftBinding(ALGORITHM, output_id, int(round(1000 * audio.shape[-1] / rate)),
                          name="soundtrail release watermark: the payload is the output id in the ledger",
                          alg_params="32-bit payload, CRC-16, keyed STFT tiles 250-7500 Hz, block 2.048 s")
    final = workspace.path(OUTPUTS_DIR) / f"{output_id}.wav"
    record = sign_wav(marked_path, signed_path, identity, model_id=model_id, training_license_summary=summary,
                      output_id=output_id, title=final.name, soft_binding=binding)
    report = read_credentials(signed_path, trust_anchors=identity.trust_anchor)
    _check_credentials(report, output_id, model_id)
    credential = {**record.as_dict(), "validation_state": report.validation_state, "trusted": report.trusted,
                  "watermark_p_value": p_value, "soft_binding": asdict(binding)}
    with ledger.writer() as writer:
        writer.record("outputs", output_id, {"status": "watermarked", "watermark_payload": output_id},
                      "output.watermarked")
        writer.record("outputs", output_id, {"status": "credentialed", "credential": credential},
                      "output.credentialed")
        writer.record("outputs", output_id, {"status": "released", "path": str(final),
                                             "sha256": record.signed_sha256}, "output.released")
    _publish(signed_path, final)
    return _recorded(workspace, ledger.get("outputs", output_id))


def _publish(signed: Path, final: Path) -> None:
    """Rename the signed file into ``outputs/`` (atomic: readers see no file or the whole one)."""
    try:
        os.replace(signed, final)
    except OSError as exc:
        if exc.errno == errno.EXDEV:
            raise ReleaseError(f"{final.parent} and the staging folder {signed.parent.parent} are on different "
                               "filesystems: the release rename needs them on one") from exc
        raise


def _publish_if_staged(workspace: Workspace, row: dict[str, Any], folder: Path) -> None:
    """Finish a release the ledger committed but a kill kept out of ``outputs/``: rename its staged signed file
    into place if it is exactly the file the ledger recorded."""
    final, staged = released_path(workspace, row), folder / "signed.wav"
    if not final.exists() and staged.is_file() and sha256_file(staged) == row.get("sha256"):
        _publish(staged, final)


def _check_credentials(report: CredentialReport, output_id: str, model_id: str) -> None:
    if not report.validation_ok:
        codes = ", ".join(item.get("code", "?") for item in report.validation_errors) or report.validation_state
        raise ReleaseError(f"content credentials of output {output_id} do not validate: {codes}")
    if report.output_id != output_id or report.model_id != model_id:
        raise ReleaseError(f"content credentials name output {report.output_id} / model {report.model_id}, "
                           f"expected {output_id} / {model_id}")
    if report.soft_binding is None or report.soft_binding.value != output_id:
        raise ReleaseError(f"content credentials of output {output_id} do not declare its watermark")


def _recorded(workspace: Workspace, row: dict[str, Any], folder: Path | None = None) -> ReleaseResult:
    """The result as the ledger holds it (so a repeated release answers exactly as the first did)."""
    screening = row["screening"]
    released = row["status"] == "released"
    if released:
        if folder is not None:
            _publish_if_staged(workspace, row, folder)
        path = released_path(workspace, row)
        if not path.is_file() or sha256_file(path) != row["sha256"]:
            raise ReleaseError(f"output {row['id']} was released as {path}, but that file is missing or changed")
    evidence = workspace.root / BLOCKED_DIR / f"{row['id']}.json"
    return ReleaseResult(
        output_id=row["id"], status="released" if released else "blocked", verdict=row["verdict"],
        matches=screening["matches"], path=released_path(workspace, row) if released else None,
        payload_hex=row["id"], credential=row["credential"] if released else None,
        evidence=None if released else evidence, protected=screening.get("protected") or [])
