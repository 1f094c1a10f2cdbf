"""Generate, then the release gate: nothing generated leaves except through :func:`release`.

``soundtrail generate`` (cli/generate.py) -> ``generate_flow`` and ``generate_task`` (flows/generate.py) ->
:func:`generate` here -> the model call :func:`soundtrail.train.families.generate`.

The output id (the watermark's 32-bit payload) is derived from the request (model, prompt, seed,
length), and generation is deterministic for a seed, so repeating a request, or re-running a
pipeline that was killed after generating, finds the recorded output instead of making another.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

from soundtrail.audio import write_wav
from soundtrail.codec.stage import resolve_codec
from soundtrail.provenance.ledger import Ledger
from soundtrail.release.gate import release
from soundtrail.train import families
from soundtrail.train.stage import resolve_model
from soundtrail.workspace import Workspace


def output_id_for(model_id: str, prompt: str, seed: int, seconds: float) -> str:
    """8 hex digits naming one generation request."""
    key = f"{model_id}|{prompt}|{seed}|{seconds:g}"
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:8]


def generate(workspace: Workspace, model: str, prompt: str, seconds: float, seed: int,
             out: Path | None = None) -> dict[str, Any]:
    """Generate with ``model`` (an id, or a family: its newest model), then the gate; copy to ``out`` if released."""
    record = resolve_model(workspace, model)
    codec = resolve_codec(workspace, record.codec_id)
    output_id = output_id_for(record.id, prompt, seed, seconds)
    with Ledger(workspace.ledger_url) as ledger:
        existing = ledger.get("outputs", output_id)
    staging = workspace.path("outputs") / ".staging" / f"{output_id}.wav"
    generation_s = None
    if existing is None or existing.get("status") not in ("released", "blocked") or not staging.exists():
        generated = families.generate(record, codec, prompt, seconds, seed)
        write_wav(staging, generated.audio, generated.sample_rate)
        codes, generation_s = generated.codes, generated.seconds_taken
    else:
        codes = None
    result = release(workspace, staging, output_id=output_id, model_id=record.id, prompt=prompt, seed=seed,
                     seconds=seconds, codes=codes)
    document = result.to_dict()
    document.update(model_id=record.id, model_kind=record.kind, prompt=prompt, seed=seed,
                    generation_s=generation_s)
    if result.status == "released" and out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(result.path, out)
        document["out"] = str(out)
    return document
