"""Where a workspace keeps its shards and checkpoints: its own folders, or the ``storage_uri`` it names.

``storage_uri`` (or ``SOUNDTRAIL_STORAGE_URI``) is a ``pyarrow.fs`` URI: ``s3://bucket/prefix``,
``gs://bucket/prefix``, ``abfs://account@host/container/prefix``, ``file:///mnt/archive/soundtrail``. Storage
mirrors the workspace's layout below it (``shards/<set>/...``, ``checkpoints/<kind>/<run>/...``):

- shards are written to storage and read from it (the tokenize actors write, the training loaders and the
  screen read, through :class:`~soundtrail.data.location.Location`);
- a checkpoint trains in the workspace's folder (step checkpoints, resume) and is *published* to storage once
  finished; the ledger records the storage reference. Whatever loads it *fetches* it: into the same workspace
  folder, downloaded only when that folder does not hold the finished checkpoint (another machine, a cleaned
  workspace), with the file that marks a checkpoint finished written last on both sides, so a killed upload or
  download is never taken for a finished one.

With no ``storage_uri`` the workspace itself is the storage: references are the plain paths the ledger always
held, publishing and fetching do nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pyarrow.fs as pafs

from soundtrail.checkpoint import CONFIG
from soundtrail.data.location import Location, StorageError, open_filesystem
from soundtrail.workspace import Workspace

SHARDS = "shards"


@dataclass(frozen=True)
class Storage:
    """A workspace's storage root and the workspace folder it mirrors."""

    root: Location
    workspace_root: Path

    @classmethod
    def of(cls, workspace: Workspace) -> Storage:
        uri = workspace.settings.storage_uri
        if not uri:
            return cls(Location.local(workspace.root), workspace.root)
        filesystem, base = open_filesystem(uri)
        return cls(Location(filesystem, base, uri), workspace.root)

    def check(self) -> None:
        """Raise :class:`StorageError` when the bucket or container ``storage_uri`` names does not exist (an
        object store's writes would fail only then, deep inside a run); errors reaching the store pass as
        ``OSError``. Local folders are made as needed."""
        if self.root.is_local:
            return
        bucket = self.root.path.split("/", 1)[0]
        if self.root.filesystem.get_file_info(bucket).type == pafs.FileType.NotFound:
            raise StorageError(f"storage_uri {self.root.reference!r}: its bucket or container {bucket!r} does "
                               "not exist (create it, or correct the URI)")

    @property
    def separate(self) -> bool:
        """Whether storage is somewhere other than the workspace folder."""
        return "://" in self.root.reference

    def shards(self) -> Location:
        return self.root / SHARDS

    def mirror(self, folder: Path) -> Location:
        """Where a workspace folder (a checkpoint's) lives in storage."""
        location = self.root
        for part in Path(folder).resolve().relative_to(self.workspace_root).parts:
            location = location / part
        return location

    def locate(self, reference: str) -> Location:
        """The location a recorded reference names: a plain path is a local file, a URI must be under storage."""
        if "://" not in reference:
            return Location.local(reference)
        relative = self._relative(reference)
        location = self.root
        for part in relative.split("/"):
            location = location / part
        return location

    def _relative(self, reference: str) -> str:
        root, found = urlsplit(self.root.reference), urlsplit(reference)
        prefix = root.path.rstrip("/") + "/"
        if (found.scheme, found.netloc, found.query) != (root.scheme, root.netloc, root.query) \
                or not found.path.startswith(prefix):
            raise StorageError(f"{reference} was stored under another storage_uri than {self.root.reference!r}")
        return found.path.removeprefix(prefix)

    def publish(self, folder: Path, leave_out: tuple[str, ...] = ()) -> str:
        """Copy a finished checkpoint folder to storage, its ``config.json`` (the file that marks it finished)
        last and the sub-folders in ``leave_out`` not at all; returns the reference to record. Without separate
        storage, the folder's own path."""
        folder = Path(folder).resolve()
        if not self.separate:
            return str(folder)
        target = self.mirror(folder)
        if (target / CONFIG).exists():  # published before a kill, or by an earlier run of the same settings
            return target.reference
        files = sorted(str(path.relative_to(folder)) for path in folder.rglob("*")
                       if path.is_file() and path.relative_to(folder).parts[0] not in leave_out
                       and not path.name.startswith(".tmp-"))
        if CONFIG not in files:
            raise StorageError(f"{folder} is not finished: it has no {CONFIG}")
        for name in _finished_last(files):
            (target / name).upload_from(folder / name)
        return target.reference

    def fetch(self, reference: str) -> Path:
        """A local folder holding the checkpoint ``reference`` names: the folder itself for a plain path; for a
        reference into storage, its workspace mirror, downloaded (``config.json`` last) unless it already holds
        the finished checkpoint."""
        if "://" not in reference:
            return Path(reference)
        source = self.locate(reference)
        target = self.workspace_root / self._relative(reference)
        if (target / CONFIG).is_file():
            return target
        files = source.files()
        if CONFIG not in files:
            raise StorageError(f"{reference} holds no finished checkpoint (no {CONFIG})")
        for name in _finished_last(files):
            (source / name).download_to(target / name)
        return target


def _finished_last(files: list[str]) -> list[str]:
    """A checkpoint's files in copying order: ``config.json``, which marks it finished, last."""
    return [name for name in files if name != CONFIG] + [CONFIG]
