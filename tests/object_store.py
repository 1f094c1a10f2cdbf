"""Azurite, Microsoft's Azure Storage server, as the object store behind a test's ``storage_uri``.

`make test` installs it (scripts/setup.sh, from npm). Each session starts one server on a free local port with
its data in a temporary folder, and stops it at the end. It is an object store as the cloud ones are: no
directories, no rename, objects that appear whole when their upload completes; pyarrow reaches it through the
same ``AzureFileSystem`` it uses for Azure itself.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow.fs as pafs

AZURITE = Path(__file__).resolve().parents[1] / ".cache" / "azurite" / "node_modules" / ".bin" / "azurite-blob"
ACCOUNT = "devstoreaccount1"  # Azurite's development account and its published key
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


@dataclass(frozen=True)
class ObjectStore:
    """A running Azurite: URIs for ``storage_uri`` and a client of its own to look inside."""

    port: int

    def uri(self, prefix: str = "soundtrail") -> str:
        """A ``storage_uri`` in a new container of its own, as an administrator would make the bucket a
        deployment writes to (the key comes from ``AZURE_STORAGE_ACCOUNT_KEY``)."""
        container = f"c{uuid.uuid4().hex[:12]}"
        self.filesystem().create_dir(container)
        return f"abfs://{ACCOUNT}@127.0.0.1:{self.port}/{container}/{prefix}?enable_tls=false"

    def filesystem(self) -> pafs.AzureFileSystem:
        authority = f"127.0.0.1:{self.port}"
        return pafs.AzureFileSystem(ACCOUNT, account_key=KEY, blob_storage_authority=authority,
                                    blob_storage_scheme="http", dfs_storage_authority=authority,
                                    dfs_storage_scheme="http")

    def files(self, uri: str) -> list[str]:
        """Every object under a ``storage_uri``, relative to it."""
        _, _, rest = uri.partition(f"127.0.0.1:{self.port}/")
        base = rest.split("?")[0].rstrip("/")
        found = self.filesystem().get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
        return sorted(info.path.removeprefix(base + "/") for info in found if info.type == pafs.FileType.File)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def running_azurite(folder: Path) -> Iterator[ObjectStore]:
    """Start ``azurite-blob`` on a free port with its data in ``folder``; stop it afterwards."""
    if not AZURITE.exists():
        raise RuntimeError(f"{AZURITE} is missing: `make setup` (scripts/setup.sh) installs Azurite")
    port = _free_port()
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "azurite.log"
    with open(log, "wb") as output:
        server = subprocess.Popen([str(AZURITE), "--blobHost", "127.0.0.1", "--blobPort", str(port),
                                   "--location", str(folder), "--silent", "--skipApiVersionCheck", "--loose"],
                                  stdout=output, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"azurite did not start: {log.read_text()[-500:]}")
            time.sleep(0.2)
        yield ObjectStore(port)
    finally:  # its data is a temporary folder: nothing to shut down gracefully (which takes Azurite 10 s)
        server.kill()
        server.wait()
