"""Ingest at catalogue scale: does the driver stay flat as the catalogue grows?

    python benchmarks/ingest_scale.py [--quick] [--sizes 1000 5000] [--seconds S] [--workers N]

For each size N, in a fresh process (so that the driver's memory is its own), on a warm local Ray of ``--workers``
CPUs, through the real ``ingest`` Prefect flow:

- writes N synthetic recordings (distinct random melodies, mono 16-bit WAV, ``--seconds`` long) and a manifest;
- first run: files per second, the driver's time deciding and recording a file (its share of the work that does
  not spread over the workers), and its peak resident memory while it runs (sampled every 10 ms) and the growth
  over the memory before the run: all should stay flat from one size to the next;
- an unchanged re-run, and a re-run after 1 % new files: wall time as a ratio to the first run;
- loading the duplicate index (``Catalog``) from the ledger the runs left (best of three): microseconds per known
  asset, which stays flat when the load grows linearly.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import soundfile as sf
from timing import seconds_inside  # benchmarks/timing.py: scripts run with benchmarks/ on sys.path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")  # a busy machine starts it slowly

RATE = 22_050
NOTE_S = 0.2


def _note_bank() -> np.ndarray:
    """Three octaves of plucked notes with one overtone, int16, one row a note."""
    t = np.arange(int(NOTE_S * RATE)) / RATE
    freqs = 220.0 * 2.0 ** (np.arange(36) / 12)
    tones = np.sin(2 * np.pi * freqs[:, None] * t) + 0.4 * np.sin(4 * np.pi * freqs[:, None] * t)
    return (0.3 * 32767 / 1.4 * tones * np.exp(-6 * t)).astype(np.int16)


NOTES = _note_bank()


def melody(seed: int, seconds: float) -> np.ndarray:
    """A random sequence of the bank's notes: distinct for every seed, and no synthesis per file."""
    picks = np.random.default_rng(seed).integers(0, len(NOTES), int(np.ceil(seconds / NOTE_S)))
    return NOTES[picks].reshape(-1)[: int(seconds * RATE)]


def write_corpus(folder: Path, first: int, count: int, seconds: float) -> list[dict]:
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for index in range(first, first + count):
        name = f"track{index:06d}.wav"
        sf.write(str(folder / name), melody(index, seconds), RATE, subtype="PCM_16")
        rows.append({"path": name, "license": "CC-BY-4.0", "rights_holder": f"Label {index % 7}"})
    return rows


def write_manifest(folder: Path, rows: list[dict]) -> Path:
    path = folder / "manifest.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


class PeakMemory:
    """Highest resident set size of this process while the block runs, sampled by a thread."""

    def __init__(self, interval_s: float = 0.01) -> None:
        import psutil

        self._process = psutil.Process()
        self._interval_s = interval_s
        self.before = self.peak = 0

    def __enter__(self) -> PeakMemory:
        self.before = self.peak = self._process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self._interval_s):
            self.peak = max(self.peak, self._process.memory_info().rss)

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._process.memory_info().rss)


def measure(size: int, seconds: float, workers: int, root: Path) -> dict:
    """One size, in this process: the figures the parent prints."""
    import ray

    from soundtrail.flows.ingest import ingest_flow
    from soundtrail.flows.runtime import prefect_api, ray_task_runner
    from soundtrail.ingest.catalog import Catalog
    from soundtrail.provenance.ledger import Ledger
    from soundtrail.workspace import Workspace

    corpus = root / "corpus"
    started = time.perf_counter()
    rows = write_corpus(corpus, 0, size, seconds)
    manifest = write_manifest(corpus, rows)
    generate_s = time.perf_counter() - started
    warmup = root / "warmup"
    write_manifest(warmup, write_corpus(warmup, 10**7, 2 * workers, seconds))
    (root / "ws").mkdir()
    (root / "ws" / "soundtrail.toml").write_text(f"[ingest]\nworkers = {workers}\n")
    ws = Workspace(root / "ws")
    figures: dict = {"size": size, "generate_s": generate_s}
    with prefect_api() as api:
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"PREFECT_API_URL": api}})
        flow = ingest_flow.with_options(task_runner=ray_task_runner(ws))

        def run(paths: list[Path], manifest_path: Path) -> tuple[float, dict]:
            began = time.perf_counter()
            summary = flow(str(ws.root), [str(path) for path in paths], str(manifest_path))
            return time.perf_counter() - began, summary

        run([warmup], warmup / "manifest.jsonl")  # Ray's workers and Prefect's task machinery, started once
        with PeakMemory() as memory, seconds_inside(Catalog, "admit_batch") as recording:
            first_s, summary = run([corpus], manifest)
        figures.update(first_s=first_s, accepted=summary["accepted"], duplicate=summary["duplicate"],
                       disputed=summary["disputed"], peak_rss=memory.peak,
                       rss_growth=memory.peak - memory.before, recording_s=recording[0])
        figures["unchanged_s"], _ = run([corpus], manifest)
        new = max(1, size // 100)
        manifest = write_manifest(corpus, rows + write_corpus(corpus, size, new, seconds))
        figures["one_percent_s"], summary = run([corpus], manifest)
        figures["new_accepted"] = summary["accepted"]
        ray.shutdown()
    with Ledger(ws.ledger_url) as ledger:
        known = len(ledger.rows("fingerprints"))
        loads = []
        for _ in range(3):
            began = time.perf_counter()
            Catalog(ledger, ws.settings.ingest, ws.settings.licenses)
            loads.append(time.perf_counter() - began)
        figures.update(index_load_s=min(loads), index_assets=known)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="sizes 200 and 1,000")
    parser.add_argument("--sizes", type=int, nargs="+")
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each file")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps(measure(args.child, args.seconds, args.workers, Path(tmp))))
        return
    sizes = args.sizes or ([200, 1000] if args.quick else [1000, 5000])
    print(f"{args.seconds:g} s mono 16-bit WAV at {RATE} Hz per file; ingest flow on a warm local Ray of "
          f"{args.workers} CPUs; each size in a fresh process")
    print(f"{'files':>7}{'files/s':>10}{'driver ms/file':>16}{'peak RSS MB':>13}{'growth MB':>11}{'unchanged':>11}"
          f"{'+1 % new':>10}{'index us/asset':>16}{'accepted':>12}")
    for size in sizes:
        output = subprocess.run([sys.executable, __file__, "--child", str(size), "--seconds", str(args.seconds),
                                 "--workers", str(args.workers)], capture_output=True, text=True)
        if output.returncode:
            sys.exit(f"the run at {size} files failed:\n{output.stderr[-4000:]}")
        f = json.loads(output.stdout.strip().splitlines()[-1])
        print(f"{size:>7}{size / f['first_s']:>10.1f}{f['recording_s'] / size * 1000:>16.2f}"
              f"{f['peak_rss'] / 2**20:>13.0f}{f['rss_growth'] / 2**20:>11.1f}"
              f"{f['unchanged_s'] / f['first_s']:>11.3f}{f['one_percent_s'] / f['first_s']:>10.3f}"
              f"{f['index_load_s'] / f['index_assets'] * 1e6:>16.1f}{f['accepted']:>7}/{size}", flush=True)
        print(f"        first run {f['first_s']:.2f} s, unchanged re-run {f['unchanged_s']:.2f} s, "
              f"+{max(1, size // 100)} files {f['one_percent_s']:.2f} s ({f['new_accepted']} accepted); "
              f"index of {f['index_assets']} assets loaded in {f['index_load_s'] * 1000:.0f} ms; "
              f"corpus written in {f['generate_s']:.1f} s; first run: {f['duplicate']} duplicate, "
              f"{f['disputed']} disputed", flush=True)
    print("ratios: unchanged and +1 % re-runs as fractions of the first run at the same size")


if __name__ == "__main__":
    main()
