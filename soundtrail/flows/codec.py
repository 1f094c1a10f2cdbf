"""The codec flow: train the workspace codec in one Ray task (on a GPU when the cluster has one), or, with
``[scaling] workers`` above 1, on that many Ray Train workers driven from the task."""

from __future__ import annotations

from prefect import task

from soundtrail.flows.distributed import training_launcher, training_task_options
from soundtrail.flows.progress import RemoteSteps, step_callback
from soundtrail.flows.stage import Stage, ledger_refs, loss_change, stage_flow, trained_model
from soundtrail.train.stage import TrainedCodec, train_workspace_codec
from soundtrail.workspace import Workspace


@task(name="train-codec", retries=1)
def train_codec_task(workspace_root: str, steps: int | None, reason: str,
                     progress: str | None = None) -> TrainedCodec:
    """Resumes from the newest checkpoint if a previous attempt was killed; steps go to ``progress``."""
    workspace = Workspace(workspace_root)
    return train_workspace_codec(workspace, steps, on_step=step_callback(progress),
                                 launcher=training_launcher(workspace), reason=reason)


CODEC = Stage("codec", inputs=lambda ws, params: ledger_refs(ws, "assets", status="accepted"),
              outputs=trained_model("codec_id"),
              summary=lambda r: [f"- codec `{r['codec_id']}` ({len(r['assets'])} assets): {loss_change(r['metrics'])}"])


@stage_flow(CODEC)
def codec_train_flow(workspace: str | None = None, steps: int | None = None,
                     reason: str = "`soundtrail codec train`") -> TrainedCodec:
    """Train a codec and choose it as the workspace codec, recording ``reason`` with the choice."""
    from prefect_ray.context import remote_options

    ws = Workspace(workspace)
    progress = RemoteSteps("codec", steps or ws.settings.codec.steps)
    with remote_options(**training_task_options(ws.settings.scaling, ws.settings.ingest.workers)):
        future = train_codec_task.submit(str(ws.root), steps, reason, progress.name)
    return progress.wait(future)
