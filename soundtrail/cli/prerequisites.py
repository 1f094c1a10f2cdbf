"""What each flow needs before it starts, checked in the command's own process before Ray or Prefect start.

A flow that lacks its input (no codec, no shards, an unknown model, no inputs) would otherwise fail in its
first Ray task, after starting Prefect's server and Ray has cost 5 to 30 seconds, and then with a task
failure around the message. Each check calls the stage code that the task itself will call, so the two can
not disagree; a failed check is one line on stderr and exit 1.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from soundtrail.cli.common import CommandError
from soundtrail.provenance.ledger import Ledger
from soundtrail.provenance.overrides import Override
from soundtrail.workspace import Workspace


@contextmanager
def _as_command_error() -> Iterator[None]:
    try:
        yield
    except ValueError as exc:  # stage code says what is missing and which command makes it
        raise CommandError(str(exc)) from None


def storage(workspace: Workspace) -> None:
    """``storage_uri`` opens and its store answers: a wrong URI, bucket or key is one line before Ray starts."""
    from soundtrail.data.storage import Storage

    try:
        with _as_command_error():  # the URI, or its bucket (StorageError says which)
            Storage.of(workspace).check()
    except OSError as exc:  # the store: unreachable, no such bucket or container, credentials refused
        raise CommandError(f"storage_uri {workspace.settings.storage_uri!r}: {exc}") from None


def codec_training(workspace: Workspace) -> None:
    from soundtrail.train.stage import check_codec_trainable

    storage(workspace)
    with _as_command_error():
        check_codec_trainable(workspace)
    with Ledger(workspace.ledger_url) as ledger:
        if not ledger.rows("assets", status="accepted"):
            raise CommandError("no accepted assets to train a codec on: run `soundtrail ingest` first")


def tokenizing(workspace: Workspace, codec_id: str | None) -> None:
    from soundtrail.codec.stage import resolve_codec

    storage(workspace)
    with _as_command_error():
        resolve_codec(workspace, codec_id)


def training(workspace: Workspace) -> None:
    from soundtrail.train.stage import training_data

    storage(workspace)
    with _as_command_error():
        training_data(workspace)


def generating(workspace: Workspace, model: str, prompt: str, seconds: float, seed: int, out: Path | None,
               override: Override | None) -> None:
    """The model and its codec exist, ``out`` is outside ``outputs/``, and no takedown holds the model back
    (or ``override`` is recorded)."""
    from soundtrail.release.generate import TakedownHoldError, check_request

    with _as_command_error():
        try:
            check_request(workspace, model, prompt, seconds, seed, out, override)
        except TakedownHoldError as exc:
            raise CommandError(str(exc)) from None


def pipeline(workspace: Workspace, inputs: Callable[[Workspace], tuple[list[str], Any]]) -> None:
    """The configured inputs exist (``inputs`` is the pipeline's own reading of ``[pipeline] inputs``), and so
    does the storage."""
    storage(workspace)
    paths, _ = inputs(workspace)
    missing = [path for path in paths if not Path(path).exists()]
    if missing:
        raise CommandError(f"pipeline input not found: {', '.join(missing)} (set [pipeline] inputs in "
                           "soundtrail.toml, paths relative to the workspace)")
