"""Where a release works before anything is published: ``workspace/staging/``, beside ``outputs/``, never in it.

::

    staging/                      0700: nobody but the workspace's owner reads unreleased audio
      <output id>/                the raw generation (candidate.wav), then marked.wav and signed.wav
      <output id>.lock            held (flock) by the one process working on that output

``outputs/`` only ever receives a finished, signed file, by a rename from here after the ledger has recorded its
release, so a kill at any point leaves nothing there that the ledger does not call released. What a killed run
leaves here is unpublished and is removed by the next release of any output (:func:`abandoned`: a folder whose
lock nobody holds), after the gate has finished publishing it if the ledger already released it.

The lock file is unlinked by its holder before it lets go; a process that locked a lock file another holder had
just unlinked notices (the path no longer names the inode it locked) and takes the lock again on the new file.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from soundtrail.workspace import Workspace

STAGING_DIR = "staging"
_LOCK_SUFFIX = ".lock"


def staging_root(workspace: Workspace) -> Path:
    root = workspace.path(STAGING_DIR)
    os.chmod(root, 0o700)
    return root


@contextlib.contextmanager
def staging_area(workspace: Workspace, output_id: str) -> Iterator[Path]:
    """The output's private folder, locked for this process; removed with everything in it on the way out."""
    root = staging_root(workspace)
    lock = root / f"{output_id}{_LOCK_SUFFIX}"
    fd = _lock(lock, wait=True)
    assert fd is not None  # a waiting lock is always taken
    folder = root / output_id
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        _unlock(lock, fd)


def abandoned(workspace: Workspace) -> Iterator[tuple[str, Path]]:
    """``(output id, folder)`` of each staging folder no process is working on, locked while the caller looks at
    it; the folder is removed once the caller moves on."""
    root = staging_root(workspace)
    for folder in sorted(path for path in root.iterdir() if path.is_dir()):
        lock = root / f"{folder.name}{_LOCK_SUFFIX}"
        fd = _lock(lock, wait=False)
        if fd is None:
            continue  # a live process works on it
        try:
            yield folder.name, folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)
            _unlock(lock, fd)


def _lock(path: Path, *, wait: bool) -> int | None:
    """An exclusive lock on ``path`` (its descriptor), or None when ``wait`` is off and another process holds it."""
    while True:
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)  # locked a file its previous holder had already unlinked: take the current one


def _unlock(path: Path, fd: int) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    os.close(fd)
