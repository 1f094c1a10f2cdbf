"""The training flow: one generator family trained in a Ray task (a GPU when the cluster has one)."""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger, task
from prefect.context import get_run_context

from soundtrail.flows.runtime import accelerator_options
from soundtrail.flows.stage import Stage, ledger_refs, loss_change, stage_flow, trained_model
from soundtrail.train.families import Family, train_generator
from soundtrail.workspace import Workspace


@task(name="train-generator", retries=1)
def train_generator_task(workspace_root: str, kind: Family, steps: int | None, run_id: str) -> dict[str, Any]:
    """Resumes from the last checkpoint when a previous attempt died (the retry, or a re-run)."""
    logger = get_run_logger()

    def on_step(step: int, loss: float) -> None:
        if step % 50 == 0:
            logger.info("%s step %d: loss %.4f", kind, step, loss)

    return train_generator(Workspace(workspace_root), kind, steps, on_step, run_id)


TRAIN = Stage("train", inputs=lambda ws, params: ledger_refs(ws, "shards", status="current"),
              outputs=trained_model("model_id"),
              summary=lambda r: [f"- {r['kind']} model `{r['model_id']}`: {loss_change(r['metrics'])}"],
              variant=lambda ws, params: params["kind"])


@stage_flow(TRAIN)
def train_flow(workspace: str | None = None, kind: Family = "ar", steps: int | None = None) -> dict[str, Any]:
    """Train ``kind`` (``ar`` or ``diffusion``) on the workspace's current shards."""
    from prefect_ray.context import remote_options

    ws = Workspace(workspace)
    run_id = str(get_run_context().flow_run.id)
    with remote_options(**accelerator_options(ws.settings.ingest.workers)):
        return train_generator_task.submit(str(ws.root), kind, steps, run_id).result()
