"""The generate flow: generate on Ray (a GPU when present), then the release gate in the same task.

``soundtrail generate`` -> :func:`generate_flow` -> :func:`generate_task` ->
:func:`soundtrail.release.generate.generate` (the gate) -> :func:`soundtrail.train.families.generate` (the model).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import task

from soundtrail.flows.runtime import accelerator_options
from soundtrail.flows.stage import Stage, stage_flow
from soundtrail.provenance.lineage_events import DatasetRef
from soundtrail.provenance.overrides import Override
from soundtrail.release.generate import generate
from soundtrail.train.stage import resolve_model
from soundtrail.workspace import Workspace


@task(name="generate", retries=1)
def generate_task(workspace_root: str, model: str, prompt: str, seconds: float, seed: int,
                  out: str | None, override: dict[str, str] | None = None) -> dict[str, Any]:
    return generate(Workspace(workspace_root), model, prompt, seconds, seed, Path(out) if out else None,
                    Override(**override) if override else None)


RELEASE_LOG_COLUMNS = ("output_id", "model_kind", "prompt", "status", "verdict", "payload_hex")
GENERATE = Stage(
    "generate",
    inputs=lambda ws, params: [DatasetRef.of("models", resolve_model(ws, params["model"]).id)],
    outputs=lambda ws, result: [DatasetRef.of("outputs", result["output_id"])],
    summary=lambda r: [f"- output `{r['output_id']}` from the {r['model_kind']} model: {r['status']} "
                       f"(screening verdict {r['verdict']})"],
    tables=lambda r: {"release-log": [{key: r.get(key) for key in RELEASE_LOG_COLUMNS}]},
    variant=lambda ws, params: resolve_model(ws, params["model"]).kind,
)


@stage_flow(GENERATE)
def generate_flow(workspace: str | None = None, model: str = "ar", prompt: str = "", seconds: float = 4.0,
                  seed: int = 0, out: str | None = None, override: dict[str, str] | None = None) -> dict[str, Any]:
    """One output through the gate; ``status`` is ``released`` or ``blocked`` (with evidence).

    ``override`` (``{"by", "reason"}``) lets a model a takedown affects generate, on record.
    """
    from prefect_ray.context import remote_options

    ws = Workspace(workspace)
    with remote_options(**accelerator_options(ws.settings.ingest.workers)):
        return generate_task.submit(str(ws.root), model, prompt, seconds, seed, out, override).result()
