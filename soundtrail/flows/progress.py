"""Progress reporting from flows to whoever runs them (a rich bar in the CLI, nothing in tests).

Flow parameters must be serialisable, so the reporter is not passed in: the CLI installs one
for the duration of a command with :func:`reporting`.

A flow that waits on many tasks advances its bar as each one finishes (ingest, tokenize). A long single
task (codec or generator training) runs on a Ray worker, far from the driver's reporter, so its steps
travel back through a small named Ray actor, :class:`RemoteSteps`:

    driver: RemoteSteps(stage, total) ──name──▶ task: step_callback(name) ──(step, loss)──▶ actor
    driver: RemoteSteps.wait(future) polls the actor while the task runs ──▶ reporter.advance / note

Only the actor's name travels as a task parameter (a string, as Prefect wants), and the task sends at
most two updates a second, so reporting costs the training loop nothing it would notice.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, Protocol

POLL_S = 0.5  # how often the driver looks, and the least time between two updates from a task


class Reporter(Protocol):
    def start(self, stage: str, total: int) -> None: ...
    def advance(self, stage: str, amount: int = 1) -> None: ...
    def note(self, stage: str, text: str) -> None: ...
    def finish(self, stage: str) -> None: ...


class SilentReporter:
    def start(self, stage: str, total: int) -> None:
        pass

    def advance(self, stage: str, amount: int = 1) -> None:
        pass

    def note(self, stage: str, text: str) -> None:
        pass

    def finish(self, stage: str) -> None:
        pass


_current: Reporter = SilentReporter()


def reporter() -> Reporter:
    return _current


@contextlib.contextmanager
def reporting(new: Reporter) -> Iterator[Reporter]:
    global _current
    previous, _current = _current, new
    try:
        yield new
    finally:
        _current = previous


class _LatestStep:
    """The actor behind :class:`RemoteSteps`: holds the last (step, loss) a task reported."""

    def __init__(self) -> None:
        self.latest: tuple[int, float | None] = (0, None)

    def report(self, step: int, loss: float | None) -> None:
        self.latest = (step, loss)

    def read(self) -> tuple[int, float | None]:
        return self.latest


class RemoteSteps:
    """The steps of one long Ray task, shown on the driver's reporter while the driver waits for the task.

    Outside Ray (a flow run on another task runner) :attr:`name` is ``None`` and :meth:`wait` only waits.
    """

    def __init__(self, stage: str, total: int) -> None:
        import ray

        self.stage, self.total = stage, total
        self.name: str | None = None
        self._actor: Any = None
        if ray.is_initialized():
            self.name = f"soundtrail-steps-{uuid.uuid4().hex}"
            # No CPU: the actor must not wait for the CPUs the training task holds.
            self._actor = ray.remote(_LatestStep).options(name=self.name, num_cpus=0).remote()

    def wait(self, future: Any) -> Any:
        """``future.result()``, advancing the reporter with every step the task reports meanwhile."""
        import ray

        if self._actor is None:
            return future.result()
        progress, shown = reporter(), 0
        progress.start(self.stage, self.total)
        try:
            running = True
            while running:
                running = not ray.wait([future.wrapped_future], timeout=POLL_S)[0]
                step, loss = ray.get(self._actor.read.remote())
                if step > shown:
                    progress.advance(self.stage, step - shown)
                    shown = step
                if loss is not None:
                    progress.note(self.stage, f"loss {loss:.3f}")
        finally:
            progress.finish(self.stage)
            ray.kill(self._actor)
        return future.result()


def step_callback(name: str | None) -> Callable[[int, float], None] | None:
    """Task side: an ``on_step(step, loss)`` that sends to the driver's :class:`RemoteSteps` named ``name``.

    Sends the first step at once, then at most one update per :data:`POLL_S`; never waits for the actor.
    """
    if name is None:
        return None
    import ray

    actor = ray.get_actor(name)
    last_sent = [float("-inf")]

    def on_step(step: int, loss: float) -> None:
        now = time.monotonic()
        if now - last_sent[0] >= POLL_S:
            actor.report.remote(step, float(loss))
            last_sent[0] = now

    return on_step
