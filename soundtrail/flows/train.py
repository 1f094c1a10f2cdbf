"""The training flow: one generator family trained in a Ray task (a GPU when the cluster has one), or, with
``[scaling] workers`` above 1, on that many Ray Train workers driven from the task.

``soundtrail train KIND`` -> :func:`train_flow` -> :func:`train_task` ->
:func:`soundtrail.train.stage.train_generator` -> the launcher (:mod:`soundtrail.flows.distributed`) -> the
family's ``train`` on each rank (:mod:`soundtrail.train.families`) -> the shared loop (:mod:`soundtrail.train.loop`).
"""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.context import get_run_context

from soundtrail.flows.distributed import training_launcher, training_task_options
from soundtrail.flows.progress import RemoteSteps, step_callback
from soundtrail.flows.stage import Stage, ledger_refs, loss_change, stage_flow, trained_model
from soundtrail.train.families import family
from soundtrail.train.stage import TrainedModel, train_generator
from soundtrail.workspace import Workspace


@task(name="train", retries=1)
def train_task(workspace_root: str, kind: str, steps: int | None, run_id: str,
               progress: str | None = None) -> TrainedModel:
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

    workspace = Workspace(workspace_root)
    return train_generator(workspace, kind, steps, on_step, run_id, training_launcher(workspace))


TRAIN = Stage("train", inputs=lambda ws, params: ledger_refs(ws, "shards", status="current"),
              outputs=trained_model("model_id"),
              summary=lambda r: [f"- {r['kind']} model `{r['model_id']}`: {loss_change(r['metrics'])}"],
              variant=lambda ws, params: params["kind"])


@stage_flow(TRAIN)
def train_flow(workspace: str | None = None, kind: str = "ar", steps: int | None = None) -> TrainedModel:
    """Train a model of the generator family ``kind`` on the workspace's current shards."""
    from prefect_ray.context import remote_options

    family(kind)  # an unknown family fails here, naming the registered ones, before Ray starts a task
    ws = Workspace(workspace)
    run_id = str(get_run_context().flow_run.id)
    progress = RemoteSteps(f"train {kind}", steps or family(kind).default_steps(ws.settings.train))
    with remote_options(**training_task_options(ws.settings.scaling, ws.settings.ingest.workers)):
        future = train_task.submit(str(ws.root), kind, steps, run_id, progress.name)
    return progress.wait(future)
