"""Data-parallel training on Ray Train: the launcher the training flows hand to the stage code.

::

    TorchTrainer(one_rank, ScalingConfig(workers, use_gpu, CPU/GPU per worker),     gloo on CPU, NCCL on GPU
                 RunConfig(storage_path=checkpoint_dir (in storage), name="steps", FailureConfig(max_failures),
                           CheckpointConfig(num_to_keep=1)))
      every worker:  Placement(rank, world size, ray.train.torch.get_device(), RayTrainCheckpoints())
                     -> work(placement, on_step)        the stage's training of one rank (train/loop.py)
      rank 0:        on_step(step, loss) -> a Ray queue -> the caller's on_step, on the caller's thread

Step checkpoints go through Ray Train: rank 0 writes one into a temporary folder and reports it, Ray Train
copies it to ``checkpoint_dir/steps/step-N`` and keeps the newest; the other ranks report the step's metrics
only. With a ``storage_uri`` the launcher is given the workspace's storage and ``steps/`` lives at the checkpoint
folder's place there instead (Ray Train's ``storage_path`` and ``storage_filesystem``), so the run's snapshot is
on the shared object store Ray Train wants for a cluster of several nodes. A worker group restarted after a
killed worker (up to ``max_failures`` times), or a re-run of the same command (Ray Train finds the run's
snapshot under ``steps/``), resumes from
``ray.train.get_checkpoint()``. Rank 0 writes the finished model beside ``steps/`` as a single process would;
the launcher removes ``steps/`` once the run is finished, and reads the result back from that model.

Only this module (of the training code) imports Ray Train: the stage code sees a rank, a world size, a device and
a checkpoint store (:mod:`soundtrail.train.loop`).
"""

from __future__ import annotations

import queue
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from soundtrail.config import ScalingSettings
from soundtrail.data.location import Location
from soundtrail.data.storage import Storage
from soundtrail.flows.runtime import accelerator_options, cluster_has_gpu
from soundtrail.train.loop import (
    STEPS_DIR,
    InProcess,
    Launcher,
    Placement,
    StepCallback,
    TrainResult,
    Work,
    WriteCheckpoint,
    finished_result,
    step_dir_name,
)
from soundtrail.workspace import Workspace


class RayTrainCheckpoints:
    """A :class:`~soundtrail.train.loop.CheckpointStore` that reports step checkpoints to Ray Train."""

    def __init__(self) -> None:
        self._downloaded: tempfile.TemporaryDirectory[str] | None = None

    def latest(self) -> Path | None:
        """The snapshot to resume from: where it lies, or a local copy of one on object storage."""
        import pyarrow.fs
        import ray.train

        found = ray.train.get_checkpoint()
        if found is None:
            return None
        if isinstance(found.filesystem, pyarrow.fs.LocalFileSystem):
            return Path(found.path)
        self._downloaded = tempfile.TemporaryDirectory(prefix="soundtrail-resume-")
        return Path(found.to_directory(self._downloaded.name))

    def save(self, step: int, write: WriteCheckpoint | None, metrics: Mapping[str, float]) -> None:
        import ray.train

        if write is None:
            ray.train.report(dict(metrics))
            return
        with tempfile.TemporaryDirectory(prefix="soundtrail-step-") as folder:
            write(Path(folder))
            ray.train.report(dict(metrics), checkpoint=ray.train.Checkpoint.from_directory(folder),
                             checkpoint_dir_name=step_dir_name(step))

    def finish(self) -> None:
        """Ray Train owns ``steps/`` while the run lasts; the launcher removes it afterwards."""
        if self._downloaded is not None:
            self._downloaded.cleanup()


def _one_rank(config: dict[str, Any]) -> None:
    """What every Ray Train worker runs: its rank of the stage's work."""
    import ray.train
    import ray.train.torch

    context = ray.train.get_context()
    rank = context.get_world_rank()
    placement = Placement(rank, context.get_world_size(), ray.train.torch.get_device(), RayTrainCheckpoints())
    steps = config["steps"]
    on_step = (lambda step, loss: steps.put((step, loss))) if steps is not None and rank == 0 else None
    config["work"](placement, on_step)


def training_launcher(workspace: Workspace) -> Launcher:
    """In the stage's own Ray task for one worker (the demo's path), on Ray Train for more (``[scaling]``), their
    step checkpoints in the workspace's storage."""
    scaling = workspace.settings.scaling
    return RayTrainLauncher(scaling, Storage.of(workspace)) if scaling.workers > 1 else InProcess()


def training_task_options(scaling: ScalingSettings, cpus: int) -> dict[str, Any]:
    """Ray options for the task that trains: the model's own device for one worker; for more, nothing, as the
    task only drives Ray Train, whose workers hold the CPUs and GPUs (a held CPU could starve them)."""
    return accelerator_options(cpus) if scaling.workers == 1 else {"num_cpus": 0}


class RayTrainLauncher:
    """Runs a stage's training on ``workers`` Ray Train workers (a :class:`~soundtrail.train.loop.Launcher`).

    Step checkpoints go to ``checkpoint_dir``'s place in ``storage``; without one, into ``checkpoint_dir``."""

    def __init__(self, scaling: ScalingSettings, storage: Storage | None = None):
        self.scaling = scaling
        self.storage = storage
        self.world_size = scaling.workers

    def gpus_per_worker(self) -> float:
        if self.scaling.gpus_per_worker == "auto":
            return 1.0 if cluster_has_gpu() else 0.0
        return float(self.scaling.gpus_per_worker)

    def __call__(self, work: Work, checkpoint_dir: Path, on_step: StepCallback | None) -> TrainResult:
        from ray.train import CheckpointConfig, FailureConfig, LoggingConfig, RunConfig, ScalingConfig
        from ray.train.torch import TorchTrainer
        from ray.util.queue import Queue

        gpus = self.gpus_per_worker()
        resources = {"CPU": self.scaling.cpus_per_worker, **({"GPU": gpus} if gpus else {})}
        steps = Queue(actor_options={"num_cpus": 0}) if on_step is not None else None
        home = self.storage.mirror(checkpoint_dir) if self.storage is not None else Location.local(checkpoint_dir)
        trainer = TorchTrainer(
            _one_rank,
            train_loop_config={"work": work, "steps": steps},
            scaling_config=ScalingConfig(num_workers=self.world_size, use_gpu=gpus > 0,
                                         resources_per_worker=resources),
            run_config=RunConfig(name=STEPS_DIR, storage_path=home.path, storage_filesystem=home.filesystem,
                                 failure_config=FailureConfig(max_failures=self.scaling.max_failures),
                                 checkpoint_config=CheckpointConfig(num_to_keep=1),
                                 logging_config=LoggingConfig(log_level="WARNING")),
        )
        result = _fit_relaying(trainer, steps, on_step)  # raises what a worker raised, once retries are spent
        (home / STEPS_DIR).delete()
        start = (result.metrics or {}).get("start_step")
        return finished_result(Path(checkpoint_dir), None if start is None else int(start))


def _fit_relaying(trainer: Any, steps: Any, on_step: StepCallback | None) -> Any:
    """``trainer.fit()`` on a helper thread while rank 0's (step, loss) pairs reach ``on_step`` on this one."""
    if steps is None:
        return trainer.fit()
    outcome: dict[str, Any] = {}

    def fit() -> None:
        try:
            outcome["result"] = trainer.fit()
        except BaseException as error:  # handed to the caller's thread below
            outcome["error"] = error

    thread = threading.Thread(target=fit, name="ray-train-fit", daemon=True)
    thread.start()
    while thread.is_alive() or not steps.empty():
        try:
            step, loss = steps.get(timeout=0.2)
        except queue.Empty:
            continue
        on_step(step, loss)
    steps.shutdown()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]
