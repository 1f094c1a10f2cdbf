"""Whatever a command starts ends with it, even when the command is killed with SIGKILL.

A command that runs flows starts processes it does not spawn itself: Prefect's temporary API server
(uvicorn), and local Ray's GCS, raylet, agents and workers, which start their own in turn and leave
the command's process group (Ray workers call ``setsid``). Ray ties only its direct children to the
driver (``PR_SET_PDEATHSIG``); the agents, the workers and the Prefect server outlive a killed driver.
Neither the process tree (orphans are re-parented to init) nor the process group can find them then.

Their environment can: :func:`processes_end_with_command` puts a cookie into ``SOUNDTRAIL_OWNERS``,
which every process started from then on inherits, whoever starts it and whatever its group, and
starts this module as a watchdog process in its own session. The watchdog waits until the command
ends (the pipe from it closes, or it is no longer the watchdog's parent), then ends every process
whose environment holds the cookie: SIGTERM, then SIGKILL for those still there after a grace period.
Jenkins' ProcessTreeKiller finds a build's processes the same way.

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


def end_processes(cookie: str, grace_s: float = GRACE_S, rounds: int = 5) -> int:
    """SIGTERM the cookie's processes, SIGKILL what is left after ``grace_s``; again while new ones appear.

    Returns how many processes were ended. Rounds repeat because a raylet being shut down may still start
    a worker; each round finds whatever carries the cookie at that moment.
    """
    ended = 0
    for _ in range(rounds):
        victims = owned_processes(cookie)
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


def _wait_for_command_end(parent: int) -> None:
    """Return once stdin (the pipe from the command) closes or the command is no longer our parent.

    The pipe answers at once; the parent check covers a command whose forked children kept a copy of the pipe.
    """
    while os.getppid() == parent:
        readable, _, _ = select.select([sys.stdin.buffer], [], [], POLL_S)
        if readable and not os.read(sys.stdin.fileno(), 4096):
            return


def main(argv: list[str]) -> int:
    (cookie,) = argv
    _wait_for_command_end(os.getppid())
    end_processes(cookie)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
