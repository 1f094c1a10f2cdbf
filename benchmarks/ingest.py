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
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf
from timing import seconds_inside  # benchmarks/timing.py: scripts run with benchmarks/ on sys.path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

from soundtrail.config import Settings  # noqa: E402
from soundtrail.corpus import synthesize_corpus  # noqa: E402
from soundtrail.ingest.analyze import analyze_batch  # noqa: E402
from soundtrail.ingest.stage import AnalysisBatch, ingest_inputs  # noqa: E402
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
    batch, settings, manifest = args
    return analyze_batch(batch.items, settings.ingest, settings.licenses, manifest, known=batch.known)


def ingest_work(corpus: Path, manifest: Path, workspace: Path, workers: int) -> float:
    """The flow's driver without Ray or Prefect: its batches analysed in a pool of ``workers`` processes,
    decided and written to the ledger in curator order as they come back."""
    start = time.perf_counter()
    ws = Workspace(workspace, Settings())
    with ProcessPoolExecutor(workers) as pool:

        def analyse(batches: list[AnalysisBatch]):
            return pool.map(_analyze, [(batch, ws.settings, str(manifest)) for batch in batches])

        ingest_inputs(ws, [str(corpus)], str(manifest), analyse, None, workers)
    return time.perf_counter() - start


@dataclass
class FlowTimes:
    cold_s: float
    warm_s: float
    tasks: int  # analysis tasks of the warm run
    task_s: float  # their run time summed, as Prefect recorded it (on the Ray workers)
    recording_s: float  # the driver deciding and writing to the ledger, in the warm run


def ingest_flow_seconds(corpus: Path, manifest: Path, root: Path, workers: int) -> FlowTimes:
    """Wall time of the ingest flow on a local Ray of ``workers`` CPUs: the first run (Ray's and the workers'
    start-up included) and a second run into a fresh workspace on the same, now warm, Ray session; for the warm
    run, where its time went (analysis tasks on the workers, recording in the driver).
    """
    import ray

    from soundtrail.flows.ingest import ingest_flow
    from soundtrail.flows.runtime import ray_task_runner
    from soundtrail.ingest.catalog import Catalog

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
        with seconds_inside(Catalog, "admit_batch") as recording:
            state = ingest_flow.with_options(task_runner=ray_task_runner(ws))(
                str(ws.root), [str(corpus)], str(manifest), return_state=True)
        walls.append(time.perf_counter() - start)
    ray.shutdown()
    tasks, task_s = _analysis_task_seconds(state.state_details.flow_run_id)
    return FlowTimes(walls[0], walls[1], tasks, task_s, recording[0])


def _analysis_task_seconds(flow_run_id: object) -> tuple[int, float]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    analysis = [run for run in runs if run.name.startswith("analyze-files")]
    return len(analysis), sum(run.total_run_time.total_seconds() for run in analysis)


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
        for workers, times in flows.items():
            for label, wall in ((f"ingest flow, {workers} Ray worker(s), cold", times.cold_s),
                                (f"ingest flow, {workers} Ray worker(s), warm", times.warm_s)):
                print(f"{label:<42}{wall:>9.2f}{audio_s / wall:>14.1f}")
        for workers, times in flows.items():
            print(f"warm flow, {workers} worker(s): {times.tasks} analysis tasks ran {times.task_s:.2f} s in all "
                  f"(busy workers on average: {times.task_s / times.warm_s:.2f}); the driver recorded for "
                  f"{times.recording_s:.2f} s; wall {times.warm_s:.2f} s")
        print(f"ratio ingest work / libsndfile decode: {anchor_s / work_s:.2f}  (target >= 0.5)")
        print(f"ratio ingest flow (2 workers, warm Ray) / decode: {anchor_s / flows[2].warm_s:.2f}")
        print(f"speed-up of 2 Ray workers over 1 (warm Ray): {flows[1].warm_s / flows[2].warm_s:.2f}x; "
              f"cold, start-up included: {flows[1].cold_s / flows[2].cold_s:.2f}x")


if __name__ == "__main__":
    main()
