"""Generate, then the release gate: nothing generated leaves except through the gate.

``soundtrail generate`` (cli/generate.py) -> ``generate_flow`` and ``generate_task`` (flows/generate.py) ->
:func:`generate` here -> the model call :func:`soundtrail.train.families.generate`.

A model that a takedown affects (marked itself, or through its codec) is refused before it generates anything,
unless an operator overrides on record (:mod:`soundtrail.provenance.overrides`). The raw generation is written
only to the output's private staging folder (:mod:`.staging`) and is gone once the gate has released or blocked
it.

The output id (the watermark's 32-bit payload) is derived from the request (model, prompt, seed,
length), and generation is deterministic for a seed, so repeating a request finds the recorded output instead
of making another, and a run killed before the gate decided generates the same audio again.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

from soundtrail.audio import write_wav
from soundtrail.codec.stage import resolve_codec
from soundtrail.data.storage import Storage
from soundtrail.provenance.ledger import Ledger
from soundtrail.provenance.outputs import refuse_outputs_path
from soundtrail.provenance.overrides import Override, record_override
from soundtrail.provenance.records import CodecRecord, ModelRecord
from soundtrail.provenance.takedown import takedown_holds
from soundtrail.release.gate import ReleaseResult, recorded_release, release_staged
from soundtrail.release.staging import staging_area
from soundtrail.train import families
from soundtrail.train.stage import resolve_model
from soundtrail.workspace import Workspace


class TakedownHoldError(RuntimeError):
    """The model (or its codec) was trained on an asset since taken down, and no override was given."""


def output_id_for(model_id: str, prompt: str, seed: int, seconds: float) -> str:
    """8 hex digits naming one generation request."""
    key = f"{model_id}|{prompt}|{seed}|{seconds:g}"
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:8]


def generate(workspace: Workspace, model: str, prompt: str, seconds: float, seed: int,
             out: Path | None = None, override: Override | None = None) -> dict[str, Any]:
    """Generate with ``model`` (an id, or a family: its newest model), then the gate; copy to ``out`` if released.

    ``override`` lets a model that a takedown affects generate, recorded in the ledger with the output id.
    """
    record, codec, output_id = check_request(workspace, model, prompt, seconds, seed, out, override)
    generation_s = None
    with staging_area(workspace, output_id) as folder:
        result = recorded_release(workspace, output_id, folder)
        if result is None:
            storage = Storage.of(workspace)
            generated = families.generate(record, storage.fetch(record.path), storage.fetch(codec.path), prompt,
                                          seconds, seed)
            candidate = folder / "candidate.wav"
            write_wav(candidate, generated.audio, generated.sample_rate)
            generation_s = generated.seconds_taken
            result = release_staged(workspace, folder, candidate, output_id=output_id, model_id=record.id,
                                    prompt=prompt, seed=seed, seconds=seconds, codes=generated.codes)
    document = _report(result, record, prompt, seed, generation_s)
    if result.status == "released" and out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(result.path, out)
        document["out"] = str(out)
    return document


def recorded_output(workspace: Workspace, model: str, prompt: str, seconds: float, seed: int) -> dict[str, Any] | None:
    """What :func:`generate` reports for a request the gate already decided (None if it has not), without
    loading the model or the screen: how a scheduled run reports the outputs it released before."""
    record = resolve_model(workspace, model)
    output_id = output_id_for(record.id, prompt, seed, seconds)
    with staging_area(workspace, output_id) as folder:
        result = recorded_release(workspace, output_id, folder)
    return None if result is None else _report(result, record, prompt, seed, None)


def _report(result: ReleaseResult, record: ModelRecord, prompt: str, seed: int,
            generation_s: float | None) -> dict[str, Any]:
    return {**result.to_dict(), "model_id": record.id, "model_kind": record.kind, "prompt": prompt, "seed": seed,
            "generation_s": generation_s}


def check_request(workspace: Workspace, model: str, prompt: str, seconds: float, seed: int,
                  out: Path | None = None, override: Override | None = None) -> tuple[ModelRecord, CodecRecord, str]:
    """Everything :func:`generate` refuses before generating (an unknown model, ``out`` inside ``outputs/``, a
    model a takedown holds back without an override); the model, its codec and the output id.

    The command line calls it before it starts a flow, so a refusal costs no Ray or Prefect start-up.
    """
    if out is not None:
        refuse_outputs_path(workspace, out, "generate --out")
    record = resolve_model(workspace, model)
    codec = resolve_codec(workspace, record.codec_id)
    output_id = output_id_for(record.id, prompt, seed, seconds)
    _check_takedowns(workspace, record, codec, output_id, override)
    return record, codec, output_id


def _check_takedowns(workspace: Workspace, model: ModelRecord, codec: CodecRecord, output_id: str,
                     override: Override | None) -> None:
    """Refuse a model a takedown holds back, or record the operator's override of it."""
    with Ledger(workspace.ledger_url) as ledger:
        holds = takedown_holds(ledger, model, codec)
        if not holds:
            return
        if override is None:
            named = "; ".join(f"takedown {hold['takedown_id']} of asset {hold['asset_id']} ({hold['reason']}), "
                              f"through its {' and '.join(hold['via'])}" for hold in holds)
            raise TakedownHoldError(
                f"model {model.id} was trained on audio since taken down: {named}. Train a new model on the "
                "current shards (a new codec first when the codec is named), or generate anyway on record with "
                "--override-takedown --reason TEXT")
        record_override(ledger, f"takedown-{output_id}", "takedown", override, {
            "model_id": model.id, "codec_id": codec.id, "output_id": output_id,
            "takedowns": [hold["takedown_id"] for hold in holds]})
