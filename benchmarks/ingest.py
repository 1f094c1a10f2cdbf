"""Ingest throughput against plain libsndfile decoding of the same files, in one run.

    python benchmarks/ingest.py [--quick] [--tracks N] [--seconds S]

Prints seconds of audio ingested per second of wall time for:

- the anchor: ``soundfile.read`` of every file, in a process pool of the same size as Ray's workers;
- soundtrail's ingest work (analysis on a pool + decisions and ledger writes), the steady state;
- the whole ``ingest`` Prefect flow on a local Ray of 1 and of 2 CPUs: its first run (Ray start-up included) and a
  second run on the warm Ray session (the steady state of a long-lived cluster),

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

from soundtrail.config import Settings  # noqa: E402
from soundtrail.corpus import synthesize_corpus  # noqa: E402
from soundtrail.flows.ingest import record_assets, split_batches  # noqa: E402
from soundtrail.ingest.analyze import analyze_batch  # noqa: E402
from soundtrail.ingest.manifest import read_manifest, resolve_inputs  # noqa: E402
from soundtrail.workspace import Workspace  # noqa: E402


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
    """The flow's two steps without Ray or Prefect: analysis of the flow's batches in a pool of ``workers``
    processes, then the ordered decisions and ledger writes of the flow's own ``record_assets``."""
    settings = Settings()
    start = time.perf_counter()
    manifest_result = read_manifest(manifest)
    inputs = resolve_inputs([corpus], manifest_result)
    batches = [(batch, settings, str(manifest))
               for batch in split_batches(inputs, settings.ingest.batch_size, workers)]
    with ProcessPoolExecutor(workers) as pool:
        analyses = [record for batch in pool.map(_analyze, batches) for record in batch]
    workspace.mkdir(parents=True)
    record_assets.fn(str(workspace), analyses, None)
    return time.perf_counter() - start


def ingest_flow_seconds(corpus: Path, manifest: Path, root: Path, workers: int) -> tuple[float, float]:
    """Wall time of the ingest flow on a local Ray of ``workers`` CPUs: the first run (Ray's and the workers'
    start-up included) and a second run into a fresh workspace on the same, now warm, Ray session.
    """
    import ray

    from soundtrail.flows.ingest import ingest_flow
    from soundtrail.flows.runtime import ray_task_runner

    walls = []
    for run in ("cold", "warm"):
        workspace = root / f"ws-flow{workers}-{run}"
        workspace.mkdir(parents=True)
        (workspace / "soundtrail.toml").write_text(f"[ingest]\nworkers = {workers}\n")
        ws = Workspace(workspace)
        start = time.perf_counter()
        if not ray.is_initialized():  # the task runner reuses a running Ray session instead of starting its own
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False,
                     runtime_env={"env_vars": {"PREFECT_API_URL": os.environ["PREFECT_API_URL"]}})
        ingest_flow.with_options(task_runner=ray_task_runner(ws))(str(ws.root), [str(corpus)], str(manifest))
        walls.append(time.perf_counter() - start)
    ray.shutdown()
    return walls[0], walls[1]


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
            flows = {workers: ingest_flow_seconds(root / "corpus", summary.manifest_path, root, workers)
                     for workers in (1, 2)}
        for workers, (cold, warm) in flows.items():
            for label, wall in ((f"ingest flow, {workers} Ray worker(s), cold", cold),
                                (f"ingest flow, {workers} Ray worker(s), warm", warm)):
                print(f"{label:<42}{wall:>9.2f}{audio_s / wall:>14.1f}")
        print(f"ratio ingest work / libsndfile decode: {anchor_s / work_s:.2f}  (target >= 0.5)")
        print(f"ratio ingest flow (2 workers, warm Ray) / decode: {anchor_s / flows[2][1]:.2f}")
        print(f"speed-up of 2 Ray workers over 1 (warm Ray): {flows[1][1] / flows[2][1]:.2f}x; "
              f"cold, start-up included: {flows[1][0] / flows[2][0]:.2f}x")


if __name__ == "__main__":
    main()
