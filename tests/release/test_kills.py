"""A release killed at every step: ``outputs/`` never holds a file the ledger does not call released, and the
next run ends where an uninterrupted one does.

Each kill is a forked child running the real gate until one step, where it calls ``os._exit`` (no ``finally``
block, no ``atexit``: what SIGKILL leaves). The parent then inspects the workspace and runs the gate again.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from soundtrail.audio import decode
from soundtrail.provenance import credentials
from soundtrail.provenance.credentials import read_credentials
from soundtrail.provenance.ledger import Ledger
from soundtrail.provenance.outputs import check_outputs
from soundtrail.release import gate as gate_module
from soundtrail.release.gate import release, watermark_config
from soundtrail.release.watermark import detect
from soundtrail.workspace import Workspace
from tests.release.workspaces import MODEL, copied_excerpt, unrelated

KILLED = 9


def _exit_before(module: Any, name: str) -> None:
    def killed(*_args: Any, **_kwargs: Any) -> None:
        os._exit(KILLED)

    setattr(module, name, killed)


def _exit_after(module: Any, name: str) -> None:
    original = getattr(module, name)

    def killed(*args: Any, **kwargs: Any) -> None:
        original(*args, **kwargs)
        os._exit(KILLED)

    setattr(module, name, killed)


# Where the child dies: (what it had done, how to kill it there).
KILL_POINTS: dict[str, Callable[[], None]] = {
    "screened": lambda: _exit_before(gate_module, "_mark_sign_release"),
    "marked": lambda: _exit_before(gate_module, "check_mark"),
    "signing": lambda: _exit_before(credentials, "sha256_file"),  # the SDK has written the temporary signed file
    "signed": lambda: _exit_before(gate_module, "read_credentials"),
    "committed": lambda: _exit_before(gate_module, "_publish"),  # the ledger says released; nothing renamed yet
    "published": lambda: _exit_before(gate_module, "_recorded"),
}
BLOCK_KILL_POINTS: dict[str, Callable[[], None]] = {
    "evidence written": lambda: _exit_after(gate_module, "atomic_write_text"),
    "blocked": lambda: _exit_before(gate_module, "_recorded"),
}


def gate(workspace: Workspace, candidate: Path, output_id: str):
    return release(workspace, candidate, output_id=output_id, model_id=MODEL, prompt="plucked melody", seed=7,
                   seconds=10.0)


def killed_release(workspace: Workspace, candidate: Path, output_id: str, kill: Callable[[], None]) -> None:
    def child() -> None:
        kill()
        gate(workspace, candidate, output_id)
        os._exit(0)

    process = multiprocessing.get_context("fork").Process(target=child)
    process.start()
    process.join(120)
    assert process.exitcode == KILLED, f"the child was meant to die at its kill point, exit {process.exitcode}"


def assert_outputs_hold_only_released(workspace: Workspace) -> None:
    """Every file under outputs/ is one the ledger released, with the bytes it released."""
    with Ledger(workspace.ledger_url) as ledger:
        check = check_outputs(workspace, ledger)
        assert ledger.verify().ok
    assert check.unexpected == [] and check.changed == [], check.problems()


def assert_finished_like_an_uninterrupted_run(workspace: Workspace, output_id: str, status: str) -> None:
    with Ledger(workspace.ledger_url) as ledger:
        row = ledger.get("outputs", output_id)
        check = check_outputs(workspace, ledger)
        assert ledger.verify().ok
    assert row["status"] == status and check.ok, check.problems()
    files = sorted(path.name for path in (workspace.root / "outputs").rglob("*"))
    assert files == ([f"{output_id}.wav"] if status == "released" else [])
    assert list((workspace.root / "staging").iterdir()) == [], "no staging folder or lock left behind"
    if status == "released":
        final = workspace.root / "outputs" / f"{output_id}.wav"
        audio, rate = decode(final)
        assert detect(audio, rate, watermark_config(workspace)).payload == int(output_id, 16)
        report = read_credentials(final)
        assert report.validation_ok and report.soft_binding.value == output_id


# (where the child dies, the clip, its output id, how the gate decides it)
KILLS = [(point, unrelated, "5ea1ed01", "released") for point in KILL_POINTS] + \
        [(point, copied_excerpt, "0badc0de", "blocked") for point in BLOCK_KILL_POINTS]


@pytest.mark.parametrize(("point", "clip", "output_id", "status"), KILLS, ids=[kill[0] for kill in KILLS])
def test_a_release_killed_at_any_step_leaves_nothing_unreleased_and_the_rerun_completes(
        workspace: Workspace, tmp_path: Path, point: str, clip: Callable[[Path], Path], output_id: str,
        status: str) -> None:
    candidate = clip(tmp_path)
    kill = KILL_POINTS.get(point) or BLOCK_KILL_POINTS[point]
    killed_release(workspace, candidate, output_id, kill)
    assert_outputs_hold_only_released(workspace)
    assert gate(workspace, candidate, output_id).status == status
    assert_finished_like_an_uninterrupted_run(workspace, output_id, status)


def test_the_next_release_of_any_output_finishes_one_killed_after_its_commit(workspace: Workspace,
                                                                             tmp_path: Path) -> None:
    killed_release(workspace, unrelated(tmp_path), "5ea1ed01", KILL_POINTS["committed"])
    with Ledger(workspace.ledger_url) as ledger:
        assert check_outputs(workspace, ledger).missing == ["5ea1ed01"], "released in the ledger, still staged"
    gate(workspace, unrelated(tmp_path, seed=201, name="other.wav"), "0be11a70")
    with Ledger(workspace.ledger_url) as ledger:
        assert check_outputs(workspace, ledger).ok
    assert sorted(path.name for path in (workspace.root / "outputs").iterdir()) == ["0be11a70.wav", "5ea1ed01.wav"]
    assert list((workspace.root / "staging").iterdir()) == []


def test_staging_is_private_and_released_files_take_the_umask(workspace: Workspace, tmp_path: Path) -> None:
    previous = os.umask(0o027)
    try:
        result = gate(workspace, unrelated(tmp_path), "5ea1ed01")
    finally:
        os.umask(previous)
    assert (workspace.root / "staging").stat().st_mode & 0o777 == 0o700
    assert result.path.stat().st_mode & 0o777 == 0o640, "group-readable, like any file the user writes"
    assert (workspace.root / "outputs").stat().st_mode & 0o777 == 0o750
