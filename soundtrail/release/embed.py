"""``soundtrail watermark embed`` as stage code: a mark embedded by hand, never into ``outputs/`` and never over
another mark unless an operator forces it on record.

A second payload embedded over a first does not coexist with it: depending on the audio, the detector then reads
the new payload, the old one, or neither. So marked audio is refused, naming the mark it carries; ``--force``
embeds anyway and records both payloads (and the files' hashes) as an ``overrides`` row, so a later detection of
either payload can be traced to this step.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from soundtrail.atomic import sha256_file
from soundtrail.audio import decode, write_wav
from soundtrail.provenance.ledger import Ledger
from soundtrail.provenance.outputs import refuse_outputs_path
from soundtrail.provenance.overrides import Override, record_override
from soundtrail.release.gate import AlreadyMarkedError, ReleaseError, check_mark, mark, refuse_marked, watermark_config
from soundtrail.release.watermark import payload_to_hex
from soundtrail.workspace import Workspace


@dataclass(frozen=True)
class Embedded:
    """A marked file as written; ``replaced_payload`` when ``--force`` marked over an earlier mark."""

    payload: str
    path: Path
    p_value: float
    replaced_payload: str | None = None


def embed_file(workspace: Workspace, source: Path, out: Path, payload: int,
               force: Override | None = None) -> Embedded:
    """Write ``out``: ``source`` marked with ``payload`` under the workspace key, checked to be detectable.

    Raises :class:`~soundtrail.provenance.outputs.OutputsPathError` for an ``out`` inside ``outputs/``,
    :class:`~soundtrail.release.gate.AlreadyMarkedError` for a marked ``source`` without ``force``, and
    :class:`~soundtrail.release.gate.ReleaseError` when the new mark cannot be detected back (``out`` removed).
    """
    refuse_outputs_path(workspace, out, "watermark embed")
    config = watermark_config(workspace)
    audio, rate = decode(source)
    existing = None
    try:
        refuse_marked(audio, rate, config, str(source))
    except AlreadyMarkedError as exc:
        if force is None:
            raise
        existing = exc
    write_wav(out, mark(audio, rate, payload, config), rate)
    try:
        p_value = check_mark(out, payload, config)
    except ReleaseError as exc:
        out.unlink()
        if existing is None:
            raise
        raise ReleaseError(f"{source}: watermark {payload_to_hex(payload)} embedded over its watermark "
                           f"{payload_to_hex(existing.payload)} cannot be detected back (the two marks interfere); "
                           "nothing written") from exc
    if existing is None:
        return Embedded(payload_to_hex(payload), out, p_value)
    out_sha256 = sha256_file(out)
    with Ledger(workspace.ledger_url) as ledger:
        record_override(ledger, f"watermark-{out_sha256[:16]}", "watermark", force, {
            "source": str(source), "source_sha256": sha256_file(source),
            "existing_payload": payload_to_hex(existing.payload), "existing_p_value": existing.p_value,
            "payload": payload_to_hex(payload), "out": str(out), "out_sha256": out_sha256})
    return Embedded(payload_to_hex(payload), out, p_value, payload_to_hex(existing.payload))
