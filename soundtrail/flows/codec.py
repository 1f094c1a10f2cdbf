"""The codec flow: train the workspace codec in one Ray task (on a GPU when the cluster has one), or, with
``[scaling] workers`` above 1, on that many Ray Train workers driven from the task."""

from __future__ import annotations

from prefect import flow, task

from soundtrail.flows.distributed import training_launcher, training_task_options
from soundtrail.train.stage import TrainedCodec, train_workspace_codec
from soundtrail.workspace import Workspace


@task(name="train-codec", retries=1)
def train_codec_task(workspace_root: str, steps: int | None) -> TrainedCodec:
    """Resumes from the newest checkpoint if a previous attempt was killed."""
    workspace = Workspace(workspace_root)
    return train_workspace_codec(workspace, steps, launcher=training_launcher(workspace.settings.scaling))


@flow(name="codec-train")
def codec_train_flow(workspace: str, steps: int | None = None) -> TrainedCodec:
    from prefect_ray.context import remote_options

    ws = Workspace(workspace)
    with remote_options(**training_task_options(ws.settings.scaling, ws.settings.ingest.workers)):
        return train_codec_task.submit(str(ws.root), steps).result()
