"""A killed command leaves nothing running: the watchdog ends whatever the command started, including
processes that left its process group and were re-parented (as Ray's workers and agents are), and the
Prefect server; checked on a real `soundtrail ingest` killed with SIGKILL while Ray and Prefect run."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from soundtrail.provenance.ledger import Ledger
from tests.audio_fixtures import melody, write

REPO = Path(__file__).resolve().parents[2]

# A command in miniature: marks what it starts, starts a process that escapes into its own session (as Ray
# workers do) and a plain child, prints their pids, then waits to be killed.
MINI_COMMAND = """
import subprocess, sys, time
from soundtrail.flows.watchdog import processes_end_with_command
with processes_end_with_command():
    escaped = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    print(escaped.pid, child.pid, flush=True)
    time.sleep(600)
"""


def gone_within(processes: list[psutil.Process], seconds: float) -> list[psutil.Process]:
    """The processes still alive (zombies count as gone) after waiting up to ``seconds``."""
    deadline = time.monotonic() + seconds
    alive = processes
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        time.sleep(0.2)
    return alive


def kill_all(processes: list[psutil.Process]) -> None:
    for process in processes:
        with contextlib.suppress(psutil.Error):
            process.kill()


def test_a_killed_command_takes_what_it_started_with_it() -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    command = subprocess.Popen([sys.executable, "-c", MINI_COMMAND], stdout=subprocess.PIPE, text=True, env=env)
    started = [psutil.Process(int(pid)) for pid in command.stdout.readline().split()]
    try:
        assert len(started) == 2 and all(p.is_running() for p in started)
        assert os.getpgid(started[0].pid) != os.getpgid(command.pid), "one child left the command's process group"
        command.send_signal(signal.SIGKILL)
        command.wait()
        assert not gone_within(started, 15), "processes the killed command started are still running"
    finally:
        kill_all(started)
        command.stdout.close()


def test_a_finished_block_leaves_nothing_behind() -> None:
    from soundtrail.flows.watchdog import processes_end_with_command

    with processes_end_with_command():
        straggler = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
    try:
        assert straggler.wait(timeout=15) is not None
        assert "SOUNDTRAIL_OWNERS" not in os.environ, "the cookie does not outlive the block"
    finally:
        straggler.kill()


def descendants(process: psutil.Process, seen: dict[int, psutil.Process]) -> None:
    try:
        for child in process.children(recursive=True):
            seen.setdefault(child.pid, child)
    except psutil.Error:
        pass


def command_line(process: psutil.Process) -> str:
    try:
        return " ".join(process.cmdline())
    except psutil.Error:
        return ""


@pytest.mark.slow
def test_kill_9_of_an_ingest_ends_its_ray_and_prefect_server(tmp_path: Path) -> None:
    """Held at a known point: the ingest waits for the ledger, which this test keeps locked, with local Ray
    (GCS, raylet, agents, workers that ran its batches) and its own Prefect server up. Then SIGKILL."""
    corpus = tmp_path / "corpus"
    for index in range(4):
        write(corpus / f"track{index}.flac", melody(300 + index))
    workspace = tmp_path / "ws"
    workspace.mkdir()
    Ledger(f"sqlite:///{workspace / 'ledger.db'}").close()
    lock = sqlite3.connect(workspace / "ledger.db", isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    env = {key: value for key, value in os.environ.items() if key != "PREFECT_API_URL"}  # its own Prefect server
    env["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "300"  # two shared cores may be slow to start it
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    command = subprocess.Popen([sys.executable, "-c", "from soundtrail.cli import run; run()", "ingest", str(corpus),
                                "--workspace", str(workspace)], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    seen: dict[int, psutil.Process] = {}
    try:
        root = psutil.Process(command.pid)
        wanted = ("uvicorn", "raylet", "gcs_server", "default_worker")
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and command.poll() is None:
            descendants(root, seen)
            lines = [command_line(p) for p in seen.values()]
            if all(any(name in line for line in lines) for name in wanted):
                break
            time.sleep(0.2)
        time.sleep(1.0)
        descendants(root, seen)
        assert command.poll() is None, f"the ingest ended before it could be killed: {command.stderr.read()[-2000:]}"
        names = " ".join(command_line(p) for p in seen.values())
        assert all(name in names for name in wanted), f"not all of {wanted} started: {names[:2000]}"
        command.send_signal(signal.SIGKILL)
        command.wait()
        alive = gone_within(list(seen.values()), 20)
        assert not alive, "still running after the command was killed: " + "; ".join(
            command_line(p)[:120] for p in alive)
    finally:
        kill_all(list(seen.values()))
        lock.rollback()
        lock.close()
        if command.poll() is None:
            command.kill()
        command.stderr.close()
