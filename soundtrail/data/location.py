"""A file or folder on a ``pyarrow.fs`` filesystem: a local folder, or object storage behind ``storage_uri``.

Shards and checkpoints are read and written through a :class:`Location` instead of a :class:`~pathlib.Path`, so the
same code writes them into the workspace or to ``s3://``, ``gs://``, ``abfs://`` or ``file://``. A location
carries its filesystem (pyarrow filesystems pickle, so a location travels to Ray workers as it is) and the
*reference* the ledger records for it: a plain absolute path for the workspace's own files, as before storage
was configurable, and the storage URI with the file's path for everything else.

Object stores have no rename, so "the whole file or none" is kept differently on each: a local file is written
to a temporary sibling and renamed (:mod:`soundtrail.atomic`); an object appears only when its upload completes,
so it is sent whole in one write. Readers never see half a shard or half a manifest on either.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pyarrow as pa
import pyarrow.fs as pafs

from soundtrail.atomic import atomic_path

# Arrow's abfs:// URIs have no place for an account key, and none should be in a URI the ledger records;
# Azure's own tools read the key from this variable.
AZURE_ACCOUNT_KEY = "AZURE_STORAGE_ACCOUNT_KEY"
_READ_CHUNK = 1 << 20


class StorageError(ValueError):
    """A storage URI that cannot be used, or a recorded location that is not where storage says."""


def open_filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """The filesystem and base path of a ``pyarrow.fs`` URI, credentials from the environment.

    A URI carrying a password is refused: the references recorded in the ledger start with this URI. S3 and GCS
    read their usual environment (``AWS_ACCESS_KEY_ID``, ``GOOGLE_APPLICATION_CREDENTIALS``, ...) by themselves;
    an ``abfs://`` URI takes its account key from ``AZURE_STORAGE_ACCOUNT_KEY`` when that is set.
    """
    if urlsplit(uri).password:
        raise StorageError(f"storage_uri must not carry a password: put credentials in the environment "
                           f"(AWS_*, GOOGLE_APPLICATION_CREDENTIALS, {AZURE_ACCOUNT_KEY})")
    try:
        filesystem, path = pafs.FileSystem.from_uri(uri)
    except (pa.ArrowException, ValueError, OSError) as exc:
        raise StorageError(f"storage_uri {uri!r}: {exc}") from exc
    key = os.environ.get(AZURE_ACCOUNT_KEY)
    if key and isinstance(filesystem, pafs.AzureFileSystem):
        rebuild, (options,) = filesystem.__reduce__()  # every option the URI set, as pickling carries them
        filesystem = rebuild({**options, "account_key": key})
    return filesystem, path.rstrip("/")


def _join_reference(reference: str, name: str) -> str:
    """``reference`` + ``/name``, keeping a URI's query string (``?endpoint_override=...``) at its end."""
    if "://" not in reference:
        return str(Path(reference) / name)
    parts = urlsplit(reference)
    return urlunsplit(parts._replace(path=f"{parts.path.rstrip('/')}/{name}"))


@dataclass(frozen=True)
class Location:
    """A path on a filesystem, with the reference the ledger records for it."""

    filesystem: pafs.FileSystem
    path: str
    reference: str

    @classmethod
    def local(cls, path: str | Path) -> Location:
        absolute = str(Path(path).resolve())
        return cls(pafs.LocalFileSystem(), absolute, absolute)

    def __truediv__(self, name: str) -> Location:
        return Location(self.filesystem, f"{self.path.rstrip('/')}/{name}", _join_reference(self.reference, name))

    def __str__(self) -> str:
        return self.reference

    def __hash__(self) -> int:  # pyarrow filesystems are not hashable; equal locations share their reference
        return hash(self.reference)

    @property
    def name(self) -> str:
        return self.path.rstrip("/").rsplit("/", 1)[-1]

    @property
    def is_local(self) -> bool:
        return isinstance(self.filesystem, pafs.LocalFileSystem)

    def exists(self) -> bool:
        return self.filesystem.get_file_info(self.path).type != pafs.FileType.NotFound

    def is_file(self) -> bool:
        return self.filesystem.get_file_info(self.path).type == pafs.FileType.File

    def files(self) -> list[str]:
        """Paths of the files under this folder relative to it, sorted (none when it does not exist)."""
        if self.filesystem.get_file_info(self.path).type != pafs.FileType.Directory:
            return []
        infos = self.filesystem.get_file_info(pafs.FileSelector(self.path, recursive=True))
        root = self.path.rstrip("/") + "/"
        return sorted(info.path.removeprefix(root) for info in infos if info.type == pafs.FileType.File)

    def open_input(self) -> pa.NativeFile:
        """Random access for Parquet readers (footer first, then only the columns asked for)."""
        return self.filesystem.open_input_file(self.path)

    def read_bytes(self) -> bytes:
        with self.open_input() as source:
            return source.read()

    def read_text(self) -> str:
        return self.read_bytes().decode()

    def chunks(self) -> Iterator[bytes]:
        with self.filesystem.open_input_stream(self.path) as source:
            while chunk := source.read(_READ_CHUNK):
                yield chunk

    def sha256(self) -> str:
        digest = hashlib.sha256()
        for chunk in self.chunks():
            digest.update(chunk)
        return digest.hexdigest()

    def write_bytes(self, data: bytes) -> None:
        """Replace the file with ``data``, whole or not at all (see the module docstring)."""
        if self.is_local:
            with atomic_path(self.path) as tmp:
                tmp.write_bytes(data)
            return
        with self.filesystem.open_output_stream(self.path) as sink:
            sink.write(data)

    def write_text(self, text: str) -> None:
        self.write_bytes(text.encode())

    def delete(self) -> None:
        """Remove the file, or the folder and all below it; nothing to remove is fine."""
        info = self.filesystem.get_file_info(self.path)
        if info.type == pafs.FileType.File:
            self.filesystem.delete_file(self.path)
        elif info.type == pafs.FileType.Directory:
            self.filesystem.delete_dir(self.path)

    def upload_from(self, source: Path) -> None:
        """Copy a local file here, whole or not at all."""
        if self.is_local:
            with atomic_path(self.path) as tmp:
                pafs.copy_files(str(source), str(tmp))
            return
        pafs.copy_files(str(source), self.path, destination_filesystem=self.filesystem)

    def download_to(self, target: Path) -> None:
        """Copy this file to a local path, renamed into place only once complete."""
        with atomic_path(target) as tmp:
            pafs.copy_files(self.path, str(tmp), source_filesystem=self.filesystem)

