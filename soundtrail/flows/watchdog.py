"""Whatever a command starts ends with it, even when the command is killed with SIGKILL.

A command that runs flows starts processes it does not spawn itself: Prefect's temporary API server
(uvicorn), and local Ray's GCS, raylet, agents and workers, which start their own in turn and leave
the command's process group (Ray workers call ``setsid``). Ray ties only its direct children to the
driver (``PR_SET_PDEATHSIG``); the agents, the workers and the Prefect server outlive a killed driver.
Neither the process tree (orphans are re-parented to init) nor the process group can find them then.

Two marks find them. :func:`processes_end_with_command` puts a cookie into ``SOUNDTRAIL_OWNERS``,
which every process started from then on inherits, whoever starts it and whatever its group (Jenkins'
ProcessTreeKiller finds a build's processes the same way), and starts this module as a watchdog process
in its own session. The cookie alone is not enough: a process that sets its title (Ray's agents and
workers call ``setproctitle``) may overwrite the memory ``/proc/PID/environ`` reads, so its environment
no longer shows the cookie. So while the command runs, the watchdog also remembers every descendant of
the command it sees (a process leaves the tree only when its parent dies, which is the moment we must
already know it). When the command ends (the pipe from it closes, or it is no longer the watchdog's
parent) the watchdog ends every remembered process still running and every process whose environment
holds the cookie: SIGTERM, then SIGKILL for those still there after a grace period.

A command that joins a cluster leaves the cluster's processes alone: they were started by ``ray start``
elsewhere, without the cookie; Ray itself ends a dead driver's job on them.
"""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
import sys
import uuid
from collections.abc import Iterator

import psutil

OWNERS = "SOUNDTRAIL_OWNERS"  # space-separated cookies: commands started by commands each end their own
GRACE_S = 3.0
POLL_S = 0.5


@contextlib.contextmanager
def processes_end_with_command() -> Iterator[str]:
    """Mark every process started inside the block, and end those still running when the command ends.

    Yields the cookie. On a normal exit the watchdog sweeps up stragglers and is waited for, so the
    block ends with nothing of its own left running.
    """
    cookie = uuid.uuid4().hex
    previous = os.environ.get(OWNERS)
    # Run as a file in isolated mode: it needs only psutil, whatever sys.path the command was given, and this
    # folder must not shadow the standard library (it holds a tokenize.py).
    watchdog = subprocess.Popen([sys.executable, "-I", __file__, cookie], stdin=subprocess.PIPE,
                                start_new_session=True)
    os.environ[OWNERS] = f"{previous} {cookie}" if previous else cookie
    try:
        yield cookie
    finally:
        if previous is None:
            os.environ.pop(OWNERS, None)
        else:
            os.environ[OWNERS] = previous
        watchdog.stdin.close()  # the signal to sweep; a killed command closes it the same way
        with contextlib.suppress(subprocess.TimeoutExpired):  # still ending stubborn ones: it finishes on its own
            watchdog.wait(timeout=4 * GRACE_S)


def owned_processes(cookie: str) -> list[psutil.Process]:
    """Every process of this user whose environment carries ``cookie`` (this watchdog excluded)."""
    found = []
    for process in psutil.process_iter():
        if process.pid == os.getpid():
            continue
        try:
            if cookie in process.environ().get(OWNERS, "").split():
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def end_processes(cookie: str, remembered: dict[int, psutil.Process] | None = None, grace_s: float = GRACE_S,
                  rounds: int = 5) -> int:
    """SIGTERM the cookie's and the remembered processes, SIGKILL what is left after ``grace_s``; again while
    new ones appear.

    Returns how many processes were ended. Rounds repeat because a raylet being shut down may still start
    a worker; each round finds whatever carries the cookie at that moment. A remembered process counts only
    while it is the same process (psutil compares its start time, so a reused pid is left alone).
    """
    ended = 0
    for _ in range(rounds):
        victims = {process.pid: process for process in owned_processes(cookie)}
        for pid, process in (remembered or {}).items():
            if pid not in victims and process.is_running():
                victims[pid] = process
        victims = list(victims.values())
        if not victims:
            break
        for process in victims:
            with contextlib.suppress(psutil.Error):
                process.terminate()
        _, alive = psutil.wait_procs(victims, timeout=grace_s)
        for process in alive:
            with contextlib.suppress(psutil.Error):
                process.kill()
        psutil.wait_procs(alive, timeout=grace_s)
        ended += len(victims)
    return ended


def _children_by_parent() -> dict[int, list[psutil.Process]]:
    """Every process of this machine, grouped by its parent's pid (one pass over /proc)."""
    children: dict[int, list[psutil.Process]] = {}
    for process in psutil.process_iter(["ppid"]):
        children.setdefault(process.info["ppid"], []).append(process)
    return children


def remember_new_descendants(parent: int, before: set[int], remembered: dict[int, psutil.Process]) -> None:
    """Add to ``remembered`` the descendants of ``parent`` reached through processes not in ``before``.

    Processes that already ran when the block began (``before``) and whatever they start are not the
    block's: a test runner's own servers, for one, must outlive a command run inside it.
    """
    children = _children_by_parent()
    stack = [child for child in children.get(parent, []) if child.pid not in before]
    while stack:
        process = stack.pop()
        if process.pid == os.getpid() or process.pid in remembered:
            continue
        remembered[process.pid] = process
        stack.extend(children.get(process.pid, []))


def _wait_for_command_end(parent: int) -> dict[int, psutil.Process]:
    """Return once stdin (the pipe from the command) closes or the command is no longer our parent, with the
    processes the command started meanwhile.

    The pipe answers at once; the parent check covers a command whose forked children kept a copy of the pipe.
    """
    before = {process.pid for process in _children_by_parent().get(parent, [])}
    remembered: dict[int, psutil.Process] = {}
    while os.getppid() == parent:
        remember_new_descendants(parent, before, remembered)
        readable, _, _ = select.select([sys.stdin.buffer], [], [], POLL_S)
        if readable and not os.read(sys.stdin.fileno(), 4096):
            break
    return remembered


def main(argv: list[str]) -> int:
    (cookie,) = argv
    end_processes(cookie, _wait_for_command_end(os.getppid()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
