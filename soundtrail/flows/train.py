"""The training flow: one generator family trained in a Ray task (a GPU when the cluster has one)."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.context import get_run_context

from soundtrail.flows.progress import RemoteSteps, step_callback
from soundtrail.flows.runtime import accelerator_options
from soundtrail.train.families import Family, generator_settings, train_generator
from soundtrail.workspace import Workspace


@task(name="train-generator", retries=1)
def train_generator_task(workspace_root: str, kind: Family, steps: int | None, run_id: str,
                         progress: str | None = None) -> dict[str, Any]:
    """Resumes from the last checkpoint when a previous attempt died (the retry, or a re-run).

    ``progress`` names the driver's :class:`RemoteSteps` that shows the steps on its terminal.
    """
    logger = get_run_logger()
    relay = step_callback(progress)

    def on_step(step: int, loss: float) -> None:
        if step % 50 == 0:
            logger.info("%s step %d: loss %.4f", kind, step, loss)
        if relay is not None:
            relay(step, loss)

    return train_generator(Workspace(workspace_root), kind, steps, on_step, run_id)


@flow(name="train")
def train_flow(workspace: str, kind: Family = "ar", steps: int | None = None) -> dict[str, Any]:
    """Train ``kind`` (``ar`` or ``diffusion``) on the workspace's current shards."""
    from prefect_ray.context import remote_options

    ws = Workspace(workspace)
    run_id = str(get_run_context().flow_run.id)
    progress = RemoteSteps(f"train {kind}", generator_settings(ws, kind, steps).steps)
    with remote_options(**accelerator_options(ws.settings.ingest.workers)):
        future = train_generator_task.submit(str(ws.root), kind, steps, run_id, progress.name)
    return progress.wait(future)
