"""The training flow: one generator family trained in a Ray task (a GPU when the cluster has one), or, with
``[scaling] workers`` above 1, on that many Ray Train workers driven from the task.

``soundtrail train KIND`` -> :func:`train_flow` -> :func:`train_task` ->
:func:`soundtrail.train.stage.train_generator` -> the launcher (:mod:`soundtrail.flows.distributed`) -> the
family's ``train`` on each rank (:mod:`soundtrail.train.families`) -> the shared loop (:mod:`soundtrail.train.loop`).
"""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.context import get_run_context

from soundtrail.flows.distributed import training_launcher, training_task_options
from soundtrail.train.families import family
from soundtrail.train.stage import TrainedModel, train_generator
from soundtrail.workspace import Workspace


@task(name="train", retries=1)
def train_task(workspace_root: str, kind: str, steps: int | None, run_id: str) -> TrainedModel:
    """Resumes from the last checkpoint when a previous attempt died (the retry, or a re-run)."""
    logger = get_run_logger()

    def on_step(step: int, loss: float) -> None:
        if step % 50 == 0:
            logger.info("%s step %d: loss %.4f", kind, step, loss)

    workspace = Workspace(workspace_root)
    return train_generator(workspace, kind, steps, on_step, run_id, training_launcher(workspace.settings.scaling))


@flow(name="train")
def train_flow(workspace: str, kind: str = "ar", steps: int | None = None) -> TrainedModel:
    """Train a model of the generator family ``kind`` on the workspace's current shards."""
    from prefect_ray.context import remote_options

    family(kind)  # an unknown family fails here, naming the registered ones, before Ray starts a task
    ws = Workspace(workspace)
    run_id = str(get_run_context().flow_run.id)
    with remote_options(**training_task_options(ws.settings.scaling, ws.settings.ingest.workers)):
        return train_task.submit(str(ws.root), kind, steps, run_id).result()
