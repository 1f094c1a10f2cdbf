"""Crash-safe file writes: write to a temporary sibling, fsync, then rename.

A killed run must never leave a shard, checkpoint or output that looks complete, so every
bulk file in the workspace is produced through :func:`atomic_path`. The rename is atomic on
POSIX filesystems, so readers see either the old file, no file, or the whole new one.

The temporary file is created private (``mkstemp`` makes it 0600, so nobody reads a half-written
file), and given the permissions a plain ``open`` would have given it (0666 less the umask) just
before the rename: outputs, shards and reports on a shared volume stay readable by the group.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


def default_file_mode() -> int:
    """0666 less the process umask: the mode ``open(path, "w")`` gives a new file."""
    try:  # Linux reports the umask without changing it
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)  # elsewhere: read it by setting it, and put it back at once
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def atomic_path(target: str | Path, mode: int | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; rename it onto ``target`` if the block succeeds.

    The finished file gets ``mode``, by default what a plain write would give it (:func:`default_file_mode`);
    secrets (signing keys) pass ``0o600`` and are never readable by anyone else, even for a moment.

    The temporary name starts with ``.tmp-`` so directory scans can ignore leftovers from a
    killed process; they are never mistaken for finished files.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".tmp-{target.name}.", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, default_file_mode() if mode is None else mode)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_bytes(target: str | Path, data: bytes, mode: int | None = None) -> None:
    """Write ``data`` to ``target`` atomically (``mode``: see :func:`atomic_path`)."""
    with atomic_path(target, mode) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(target: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``target`` atomically."""
    atomic_write_bytes(target, text.encode("utf-8"))


def sha256_file(path: str | Path, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes, read in chunks so large files do not fill memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()
