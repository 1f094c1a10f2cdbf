"""Bounded cost per file: a header claiming gigabytes is refused under a memory cap, and a worker's peak memory
does not grow with a file's length (it decodes, hashes, measures and fingerprints block by block)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import soundfile as sf

from tests.audio_fixtures import RATE, melody, stereo
from tests.test_audio_stream import sparse_wav

# Runs in a fresh interpreter, as a Ray worker would: imports and one warm-up file first, then an address-space
# cap of what that took plus CAP_MB, then the ingest's analysis of one file at a time (what a worker does; the
# driver's decision is the analysis' problem, or its licence problem), reporting the peak resident memory after each.
_WORKER = """
import json, resource, sys
from pathlib import Path
from soundtrail.config import Settings
from soundtrail.ingest.analyze import analyze_batch
from soundtrail.ingest.manifest import resolve_inputs

cap_mb, warm_up, *paths = sys.argv[1:]
settings = Settings()
analyze_batch(resolve_inputs([Path(warm_up)]), settings.ingest, settings.licenses)
size_kb = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmSize"))
cap = size_kb * 1024 + int(cap_mb) * 2**20
resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
report = []
for path in paths:
    analysis, = analyze_batch(resolve_inputs([Path(path)]), settings.ingest, settings.licenses)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    report.append({"name": Path(path).name, "reason": analysis["problem"] or analysis["license_problem"],
                   "peak_mb": peak_mb})
print(json.dumps(report))
"""
CAP_MB = 192


def _wav(path: Path, seconds: int) -> Path:
    """A stereo PCM16 WAV of ``seconds`` (ten-second melody repeated), written ten seconds at a time."""
    piece = stereo(melody(5, seconds=10.0))
    with sf.SoundFile(str(path), "w", RATE, 2, subtype="PCM_16") as handle:
        for _ in range(seconds // 10):
            handle.write(piece)
    return path


def test_a_huge_header_is_refused_under_a_memory_cap_and_long_files_cost_what_short_ones_do(
        tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    warm_up, short, long = (_wav(folder / name, seconds) for name, seconds in
                            (("0_warm.wav", 10), ("1_short.wav", 60), ("2_long.wav", 180)))  # blocks are ~24 s
    claims_4gib = sparse_wav(folder / "3_claims_4gib.wav", 4 * 2**30 - 64)
    decoded_mb = {name: seconds * RATE * 2 * 4 / 1e6 for name, seconds in (("short", 60), ("long", 180))}
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[2]), *sys.path])}
    done = subprocess.run([sys.executable, "-c", _WORKER, str(CAP_MB), str(warm_up), str(short), str(long),
                           str(claims_4gib)], capture_output=True, text=True, env=environment, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    short_item, long_item, huge_item = json.loads(done.stdout)
    for item in (short_item, long_item):  # the licence is the last check: the whole file was analysed
        assert item["reason"] == "no licence in the manifest or the file's tags"
    assert huge_item["reason"] == ("too long: the header states 13 h 31 min (48,696 s), over the limit of 30 min 00 s "
                                   "(1,800 s) ([ingest] max_duration_s)")
    growth = long_item["peak_mb"] - short_item["peak_mb"]
    assert growth < 8, (f"peak memory grew {growth:.1f} MB from a file decoding to {decoded_mb['short']:.0f} MB to "
                        f"one decoding to {decoded_mb['long']:.0f} MB")
