"""Ingest throughput against plain libsndfile decoding of the same files, in one run.

    python benchmarks/ingest.py [--quick] [--tracks N] [--seconds S]

Prints seconds of audio ingested per second of wall time for:

- the anchor: ``soundfile.read`` of every file, in a process pool of the same size as Ray's workers;
- soundtrail's ingest work (analysis on a pool + decisions and ledger writes), the steady state;
- the whole ``ingest`` Prefect flow on Ray with 1 and with 2 workers (Ray start-up included),

and the ratios (target: ingest work / decoding >= 0.5) and the two-worker speed-up.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

from soundtrail.config import Settings, Workspace  # noqa: E402
from soundtrail.corpus import synthesize_corpus  # noqa: E402
from soundtrail.flows.ingest import record_assets  # noqa: E402
from soundtrail.tasks.ingest import analyze_batch  # noqa: E402
from soundtrail.tasks.manifest import read_manifest, resolve_inputs  # noqa: E402


def decode_seconds(path: str) -> float:
    data, rate = sf.read(path, dtype="float32", always_2d=True)
    return data.shape[0] / rate


def anchor(paths: list[str], workers: int) -> tuple[float, float]:
    start = time.perf_counter()
    with ProcessPoolExecutor(workers) as pool:
        seconds = sum(pool.map(decode_seconds, paths))
    return seconds, time.perf_counter() - start


def _analyze(args: tuple) -> list[dict]:
    items, settings, manifest = args
    return analyze_batch(items, settings.ingest, settings.licenses, manifest)


def ingest_work(corpus: Path, manifest: Path, workspace: Path, workers: int) -> float:
    """The flow's two steps without Ray or Prefect: analysis in a pool of ``workers`` processes, then the
    ordered decisions and ledger writes of the flow's own ``record_assets``."""
    settings = Settings()
    start = time.perf_counter()
    manifest_result = read_manifest(manifest)
    inputs = resolve_inputs([corpus], manifest_result)
    size = max(1, len(inputs) // (workers * 2))
    batches = [(inputs[i:i + size], settings, str(manifest)) for i in range(0, len(inputs), size)]
    with ProcessPoolExecutor(workers) as pool:
        analyses = [record for batch in pool.map(_analyze, batches) for record in batch]
    workspace.mkdir(parents=True)
    record_assets.fn(str(workspace), analyses, None)
    return time.perf_counter() - start


def ingest_flow_seconds(corpus: Path, manifest: Path, workspace: Path, workers: int) -> float:
    from soundtrail.flows.ingest import ingest_flow
    from soundtrail.flows.runtime import ray_task_runner

    workspace.mkdir(parents=True)
    (workspace / "soundtrail.toml").write_text(f"[ingest]\nworkers = {workers}\nbatch_size = 8\n")
    ws = Workspace(workspace)
    start = time.perf_counter()
    ingest_flow.with_options(task_runner=ray_task_runner(ws))(str(ws.root), [str(corpus)], str(manifest))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="12 tracks of 10 s instead of 24 of 15 s")
    parser.add_argument("--tracks", type=int)
    parser.add_argument("--seconds", type=float)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    tracks = args.tracks or (12 if args.quick else 24)
    seconds = args.seconds or (10.0 if args.quick else 15.0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        summary = synthesize_corpus(root / "corpus", tracks=tracks, seconds=seconds, seed=1)
        paths = sorted(str(p) for p in (root / "corpus").rglob("*") if p.suffix in {".wav", ".flac", ".ogg", ".mp3"}
                       and "protected" not in p.parts)
        audio_s, anchor_s = anchor(paths, args.workers)
        work_s = ingest_work(root / "corpus", summary.manifest_path, root / "ws-work", args.workers)
        print(f"corpus: {len(paths)} files, {audio_s:.0f} s of audio; {args.workers} worker processes")
        print(f"{'path':<42}{'wall s':>9}{'audio s / s':>14}")
        print(f"{'libsndfile decode (anchor)':<42}{anchor_s:>9.2f}{audio_s / anchor_s:>14.1f}")
        print(f"{'soundtrail ingest work (all checks+ledger)':<42}{work_s:>9.2f}{audio_s / work_s:>14.1f}")
        from soundtrail.flows.runtime import prefect_api

        with prefect_api():
            flows = {workers: ingest_flow_seconds(root / "corpus", summary.manifest_path, root / f"ws-flow{workers}",
                                                  workers) for workers in (1, 2)}
        for workers, wall in flows.items():
            label = f"ingest flow on Ray, {workers} worker(s)"
            print(f"{label:<42}{wall:>9.2f}{audio_s / wall:>14.1f}")
        print(f"ratio ingest work / libsndfile decode: {anchor_s / work_s:.2f}  (target >= 0.5)")
        print(f"ratio ingest flow (2 workers, start-up included) / decode: {anchor_s / flows[2]:.2f}")
        print(f"speed-up of 2 Ray workers over 1: {flows[1] / flows[2]:.2f}x")


if __name__ == "__main__":
    main()
