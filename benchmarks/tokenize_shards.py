"""Tokenize throughput, files to shards: the actor pool against the codec's bare encode and the per-group tasks.

(Not ``tokenize.py``: run as a script, that name would shadow the standard library's ``tokenize`` module.)

    python benchmarks/tokenize_shards.py [--quick] [--tracks N] [--seconds S] [--cpus 2] [--repeats 2]
                                         [--assets-per-shard 8]

One workspace: a synthesized corpus (WAV, FLAC, Ogg and MP3 at the corpus rate, resampled to the codec's) recorded
as accepted assets, and the default CPU-sized codec with random weights (encoding costs the same whatever the
weights). Timed, interleaved, best of ``--repeats``, each as seconds of audio per second of wall time:

- anchor, **bare encode**: the same windows tokenize encodes (decoded, cut and quality-checked beforehand), encoded
  by codecs already loaded in ``--cpus`` processes of one torch thread each: the most a tokenizer could do here;
- **per-group tasks**: the tokenize flow as it was before the pool: one Prefect task per group of
  ``assets_per_shard`` assets on Ray, each loading the codec, then decoding, then encoding;
- **actor pool**: ``tokenize_flow`` as it is (one actor per CPU, codec loaded once each, the next group
  decoded while the current one is encoded).

Both flows are stage flows (``stage_flow``: lineage events and artifacts) and run on one local Ray of ``--cpus``
CPUs and one Prefect API, into an emptied shard set each time, so
every run encodes everything; the per-group path's Ray workers stay warm between runs (torch imported once),
while the pool starts its actors in every run, as the flow does. The shard sets both flows write are compared.
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing
import os
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import torch  # noqa: E402
from prefect import task  # noqa: E402
from prefect.context import get_run_context  # noqa: E402
from timing import best_seconds  # noqa: E402  (benchmarks/timing.py: scripts run with benchmarks/ on sys.path)

from soundtrail import checkpoint  # noqa: E402
from soundtrail.audio import load_mono  # noqa: E402
from soundtrail.codec.codecs import KIND, encode_segments, load_codec  # noqa: E402
from soundtrail.codec.quality import segment_quality  # noqa: E402
from soundtrail.codec.stage import resolve_codec, tokenize_plan  # noqa: E402
from soundtrail.codec.tokenize import GroupEncoder, finalize_set  # noqa: E402
from soundtrail.corpus import synthesize_corpus  # noqa: E402
from soundtrail.data.location import Location  # noqa: E402
from soundtrail.data.shards import read_manifest  # noqa: E402
from soundtrail.data.storage import Storage  # noqa: E402
from soundtrail.flows.runtime import accelerator_options, prefect_api, ray_task_runner, shared_ray  # noqa: E402
from soundtrail.flows.stage import stage_flow  # noqa: E402
from soundtrail.flows.tokenize import TOKENIZE, tokenize_flow  # noqa: E402
from soundtrail.models.codec import CodecConfig, NeuralCodec  # noqa: E402
from soundtrail.provenance.ledger import Ledger  # noqa: E402
from soundtrail.workspace import Workspace  # noqa: E402

AUDIO = {".wav", ".flac", ".ogg", ".mp3"}


@task(name="encode-group", retries=2, retry_delay_seconds=2)
def encode_group_task(set_dir: Location, codec_path: str, group: list[dict[str, Any]], segment_s: float,
                      batch_size: int) -> dict[str, Any]:
    """One group with a codec loaded for it alone, decoded then encoded: the task the pool replaced."""
    with GroupEncoder(codec_path, set_dir, segment_s, batch_size) as encoder:
        result = encoder.encode(group)
    return {"entry": result.entry, "skipped": result.skipped}


@stage_flow(dataclasses.replace(TOKENIZE, name="tokenize-per-group-tasks"))
def per_group_tokenize_flow(workspace: str | None = None) -> dict[str, Any]:
    """The tokenize flow before the actor pool (fresh shard sets only: nothing stale to rewrite), in the same
    stage wrapper (lineage, artifacts) as the pool's flow, so that only the encoding differs."""
    from prefect_ray.context import remote_options

    ws = Workspace(workspace)
    settings = ws.settings.tokenize
    plan = tokenize_plan(ws, resolve_codec(ws))
    with remote_options(**accelerator_options()):
        futures = [encode_group_task.submit(plan.set_dir, plan.codec_path, group, settings.segment_s,
                                            settings.batch_size) for group in plan.groups]
    entries = [result["entry"] for result in (future.result() for future in futures) if result["entry"]]
    with Ledger(ws.ledger_url) as ledger:
        return finalize_set(ledger, plan, entries, settings.segment_s, str(get_run_context().flow_run.id))


def build_workspace(root: Path, tracks: int, seconds: float, cpus: int,
                    assets_per_shard: int) -> tuple[Workspace, list[str]]:
    torch.manual_seed(0)
    config = CodecConfig()
    checkpoint.save_weights(root / "codec", NeuralCodec(config).eval(), KIND, config, step=0)
    synthesize_corpus(root / "corpus", tracks=tracks, seconds=seconds, seed=1)
    paths = sorted(str(path) for path in (root / "corpus" / "tracks").iterdir() if path.suffix in AUDIO)
    (root / "ws").mkdir()
    (root / "ws" / "soundtrail.toml").write_text(
        f'[codec]\ncheckpoint = "{root / "codec"}"\n[ingest]\nworkers = {cpus}\n'
        f'[tokenize]\nassets_per_shard = {assets_per_shard}\n')
    ws = Workspace(root / "ws")
    with Ledger(ws.ledger_url) as ledger:
        for index, path in enumerate(paths):
            ledger.record("assets", f"asset{index:04d}", {"path": path, "status": "accepted", "license": "CC0-1.0",
                                                          "description": Path(path).stem}, "asset.benchmark")
    return ws, paths


def tokenized_windows(paths: list[str], codec_path: Path, segment_s: float) -> tuple[np.ndarray, float]:
    """The windows tokenize encodes (same cut, same quality checks) and the seconds of audio in the files."""
    codec = load_codec(codec_path)
    rate, window = codec.sample_rate, int(round(segment_s * codec.sample_rate))
    windows, seconds = [], 0.0
    for path in paths:
        audio = load_mono(path, rate)
        seconds += len(audio) / rate
        for start in range(0, len(audio), window):
            piece = audio[start:start + window]
            if segment_quality(piece, rate, min_seconds=min(1.0, segment_s / 2)) is None:
                windows.append(np.pad(piece, (0, window - len(piece))))
    return np.stack(windows), seconds


_codec: Any = None
_windows: np.ndarray | None = None


def _load_encoder(codec_path: str, windows_path: str) -> None:
    global _codec, _windows
    torch.set_num_threads(1)
    _codec = load_codec(codec_path)
    _windows = np.load(windows_path, mmap_mode="r")


def _encode_range(bounds: tuple[int, int], batch_size: int) -> int:
    start, stop = bounds
    return len(encode_segments(_codec, np.array(_windows[start:stop]), batch_size=batch_size))


def shard_hashes(ws: Workspace) -> set[str]:
    shards = Storage.of(ws).shards()
    [set_name] = {name.split("/", 1)[0] for name in shards.files()}
    return {entry["sha256"] for entry in read_manifest(shards / set_name)["shards"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="12 tracks of 10 s instead of 40 of 15 s")
    parser.add_argument("--tracks", type=int)
    parser.add_argument("--seconds", type=float)
    parser.add_argument("--cpus", type=int, default=2, help="local Ray CPUs, and the anchor's processes")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--assets-per-shard", type=int, default=8, help="assets per group (a per-group task)")
    args = parser.parse_args()
    tracks = args.tracks or (12 if args.quick else 40)
    seconds = args.seconds or (10.0 if args.quick else 15.0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ws, paths = build_workspace(root, tracks, seconds, args.cpus, args.assets_per_shard)
        settings = ws.settings.tokenize
        windows, audio_s = tokenized_windows(paths, root / "codec", settings.segment_s)
        np.save(root / "windows.npy", windows)
        groups = -(-len(paths) // settings.assets_per_shard)
        print(f"corpus: {len(paths)} files, {audio_s:.0f} s of audio, {len(windows)} windows of "
              f"{settings.segment_s:g} s in {groups} groups of {settings.assets_per_shard}; {args.cpus} CPUs; "
              f"torch {torch.__version__}")
        bounds = [(len(windows) * i // args.cpus, len(windows) * (i + 1) // args.cpus) for i in range(args.cpus)]
        hashes: dict[str, set[str]] = {}

        def run_flow(name: str, tokenize: Any) -> None:
            Storage.of(ws).shards().delete()
            tokenize.with_options(task_runner=ray_task_runner(ws))(str(ws.root))
            hashes[name] = shard_hashes(ws)

        batch_sizes = [settings.batch_size] * len(bounds)
        with ProcessPoolExecutor(args.cpus, mp_context=multiprocessing.get_context("spawn"), initializer=_load_encoder,
                                 initargs=(str(root / "codec"), str(root / "windows.npy"))) as pool, \
                prefect_api(), shared_ray(ws):
            walls = best_seconds({
                "bare encode (anchor)": lambda: sum(pool.map(_encode_range, bounds, batch_sizes)),
                "per-group tasks": lambda: run_flow("per-group tasks", per_group_tokenize_flow),
                "actor pool": lambda: run_flow("actor pool", tokenize_flow),
            }, args.repeats)
        anchor = walls["bare encode (anchor)"]
        print(f"{'path':<24}{'wall s':>9}{'audio s / s':>14}{'x bare encode':>15}")
        for name, wall in walls.items():
            print(f"{name:<24}{wall:>9.2f}{audio_s / wall:>14.1f}{anchor / wall:>15.2f}")
        print(f"actor pool / per-group tasks: {walls['per-group tasks'] / walls['actor pool']:.2f}x")
        print(f"shard sets identical: {hashes['per-group tasks'] == hashes['actor pool']}")


if __name__ == "__main__":
    main()
