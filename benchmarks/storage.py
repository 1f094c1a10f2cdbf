"""Shards and checkpoints on ``storage_uri`` against the workspace's own folder (the anchor).

    python benchmarks/storage.py [--quick] [--shards 16] [--rows 64] [--frames 500] [--checkpoint-mb 64]
                                 [--repeats 3]

Three places, each timed the same way, interleaved, best of ``--repeats``:

- anchor, **workspace**: no ``storage_uri`` (shards and checkpoints are files in the workspace);
- **file://**: a folder outside the workspace (another mount in production; the same disk here);
- **Azurite**: Microsoft's Azure Storage server on this machine (``abfs://``, started here as the tests start it),
  an object store reached over HTTP on loopback: no network latency, so what it adds is the protocol and
  the server, not the distance to a data centre.

Operations: writing a shard set (``--shards`` shards of ``--rows`` rows of 4 x ``--frames`` codes, then its
manifest), verifying it (every shard's sha256 against the manifest), reading it for training (a ShardStream
over every row, batches of 16), publishing a finished checkpoint of ``--checkpoint-mb`` MB and fetching it into
a workspace that lost it. Each prints seconds and its ratio to the workspace.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from timing import best_seconds  # noqa: E402  (benchmarks/timing.py: scripts run with benchmarks/ on sys.path)

from soundtrail import checkpoint  # noqa: E402
from soundtrail.config import Settings  # noqa: E402
from soundtrail.data.dataset import ShardStream  # noqa: E402
from soundtrail.data.location import AZURE_ACCOUNT_KEY  # noqa: E402
from soundtrail.data.shards import CodecInfo, Segment, shard_paths, verify_shards, write_manifest, write_shard  # noqa: E402
from soundtrail.data.storage import Storage  # noqa: E402
from soundtrail.workspace import Workspace  # noqa: E402
from tests.object_store import KEY, running_azurite  # noqa: E402

CODEC = CodecInfo(codec_id="bench", sample_rate=16000, frame_rate=50.0, num_codebooks=4, codebook_size=1024)


def _segments(shard: int, rows: int, frames: int) -> list[Segment]:
    rng = np.random.default_rng(shard)
    return [Segment(f"a{shard}:{row}", f"a{shard}", row * 10.0, frames / CODEC.frame_rate,
                    rng.integers(0, CODEC.codebook_size, size=(4, frames)).astype(np.int16), f"asset {shard}")
            for row in range(rows)]


def _operations(storage: Storage, args: argparse.Namespace, corpus: list[list[Segment]],
                weights: bytes) -> dict[str, Callable[[], object]]:
    set_dir = storage.shards() / "bench-set"
    folder = storage.workspace_root / "checkpoints" / "ar" / "bench"

    def write() -> None:
        entries = [write_shard(set_dir / f"part-{index:03d}.parquet", rows, CODEC) for index, rows in enumerate(corpus)]
        write_manifest(set_dir, entries, CODEC, {"segment_s": 10.0})

    def read() -> None:
        stream = ShardStream(shard_paths(set_dir), frames=args.frames, batch_size=16, seed=1)
        for step in range(stream.total // 16):
            stream.batch(step)

    def publish_and_fetch() -> None:
        storage.mirror(folder).delete()
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        (folder / checkpoint.WEIGHTS).write_bytes(weights)
        (folder / checkpoint.CONFIG).write_text("{}")
        reference = storage.publish(folder)
        if storage.separate:
            shutil.rmtree(folder)
        storage.fetch(reference)

    return {"write shard set": write, "verify shard set": lambda: verify_shards(set_dir),
            "read for training": read, "publish + fetch checkpoint": publish_and_fetch}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="4 shards of 32 rows, a 16 MB checkpoint, 2 rounds")
    parser.add_argument("--shards", type=int, default=16)
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--frames", type=int, default=500)
    parser.add_argument("--checkpoint-mb", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.quick:
        args.shards, args.rows, args.checkpoint_mb, args.repeats = 4, 32, 16, 2
    corpus = [_segments(shard, args.rows, args.frames) for shard in range(args.shards)]
    weights = np.random.default_rng(0).bytes(args.checkpoint_mb << 20)
    print(f"{args.shards} shards x {args.rows} rows x 4 x {args.frames} codes; checkpoint {args.checkpoint_mb} MB; "
          f"best of {args.repeats}")
    with tempfile.TemporaryDirectory(prefix="soundtrail-bench-storage-") as tmp, \
            running_azurite(Path(tmp) / "azurite") as azurite:
        os.environ[AZURE_ACCOUNT_KEY] = KEY
        places = {"workspace": "", "file://": (Path(tmp) / "elsewhere").as_uri(), "Azurite": azurite.uri()}
        storages = {name: Storage.of(Workspace(Path(tmp) / name.strip(":/"), Settings(storage_uri=uri)))
                    for name, uri in places.items()}
        operations = {name: _operations(storage, args, corpus, weights) for name, storage in storages.items()}
        print(f"{'operation':28s}" + "".join(f"{name:>22s}" for name in places))
        for operation in operations["workspace"]:
            seconds = best_seconds({name: runs[operation] for name, runs in operations.items()}, args.repeats)
            anchor = seconds["workspace"]
            print(f"{operation:28s}" + "".join(f"{seconds[name]:>11.3f} s ({seconds[name] / anchor:4.2f}x)"
                                                for name in places))


if __name__ == "__main__":
    main()
