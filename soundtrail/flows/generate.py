"""The generate flow: generate on Ray (a GPU when present), then the release gate in the same task.

``soundtrail generate`` -> :func:`generate_flow` -> :func:`generate_task` ->
:func:`soundtrail.release.generate.generate` (the gate) -> :func:`soundtrail.train.families.generate` (the model).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, task

from soundtrail.flows.runtime import accelerator_options
from soundtrail.release.generate import generate
from soundtrail.workspace import Workspace


@task(name="generate", retries=1)
def generate_task(workspace_root: str, model: str, prompt: str, seconds: float, seed: int,
                  out: str | None) -> dict[str, Any]:
    return generate(Workspace(workspace_root), model, prompt, seconds, seed, Path(out) if out else None)


@flow(name="generate")
def generate_flow(workspace: str, model: str = "ar", prompt: str = "", seconds: float = 4.0, seed: int = 0,
                  out: str | None = None) -> dict[str, Any]:
    """One output through the gate; ``status`` is ``released`` or ``blocked`` (with evidence)."""
    from prefect_ray.context import remote_options

    ws = Workspace(workspace)
    with remote_options(**accelerator_options(ws.settings.ingest.workers)):
        return generate_task.submit(str(ws.root), model, prompt, seconds, seed, out).result()
