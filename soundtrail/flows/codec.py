"""The codec flow: train the workspace codec in one Ray task (on a GPU when the cluster has one)."""

from __future__ import annotations

from prefect import flow, task

from soundtrail.flows.runtime import accelerator_options
from soundtrail.train.stage import TrainedCodec, train_workspace_codec
from soundtrail.workspace import Workspace


@task(name="train-codec", retries=1)
def train_codec_task(workspace_root: str, steps: int | None, reason: str) -> TrainedCodec:
    """Resumes from the newest checkpoint if a previous attempt was killed."""
    return train_workspace_codec(Workspace(workspace_root), steps, reason=reason)


@flow(name="codec-train")
def codec_train_flow(workspace: str, steps: int | None = None,
                     reason: str = "`soundtrail codec train`") -> TrainedCodec:
    """Train a codec and choose it as the workspace codec, recording ``reason`` with the choice."""
    from prefect_ray.context import remote_options

    ws = Workspace(workspace)
    with remote_options(**accelerator_options(ws.settings.ingest.workers)):
        return train_codec_task.submit(str(ws.root), steps, reason).result()
