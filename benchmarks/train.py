"""Training throughput on Ray Train: examples per second of 2 data-parallel workers against 1 (gloo on the CPU).

Contenders, for the AR and diffusion generators at the ``tiny`` preset and the codec at ``cpu-16k``: the
in-process loop (no Ray Train: what ``[scaling] workers = 1`` runs), one Ray Train worker, two Ray Train workers.
Every worker holds one CPU and runs one torch thread (the in-process loop too), and each trains ``batch``
examples per step (weak scaling: two workers take twice the examples per step). Examples per second are
examples per step over the median step time inside rank 0 after the warm-up steps, the best of ``rounds``
interleaved rounds (a median and a best, so a burst from a neighbouring process moves them little); worker
start-up (seconds) is left out, and printed apart as the launcher's wall time less the training steps. The
machine's load average is printed before and after: on a shared machine, data-parallel steps wait for the
slowest worker, so load hurts two workers more than one.

Data: shards of random codes of the default codec layout (16 kHz, 50 frames/s, 4 x 256; throughput does not
depend on the values), an untrained ``cpu-16k`` codec for the diffusion latents, and synthetic melodies (44.1 kHz
stereo WAV, cropped and resampled per step) for the codec.

Reported per model: examples/s of each contender, and the ratios 2 workers / 1 worker (the anchor) and 1 worker /
in-process.

    .venv/bin/python benchmarks/train.py [--steps 24] [--warmup 4] [--batch 8] [--rounds 2]
                                         [--models ar,diffusion,codec] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import ray
import torch

from soundtrail import checkpoint
from soundtrail.audio import write_wav
from soundtrail.codec.codecs import KIND as CODEC_KIND
from soundtrail.codec.codecs import codec_id_of
from soundtrail.config import ScalingSettings
from soundtrail.data.location import Location
from soundtrail.data.shards import CodecInfo, Segment, write_shard
from soundtrail.flows.distributed import RayTrainLauncher
from soundtrail.models.codec import CodecConfig, NeuralCodec
from soundtrail.train.ar import ARFamily
from soundtrail.train.codec import CodecTrainConfig, run_codec
from soundtrail.train.diffusion import DiffusionFamily
from soundtrail.train.generator import GeneratorSettings, TrainingData
from soundtrail.train.loop import InProcess, Launcher, Placement, StepCallback, TrainResult

SEGMENT_FRAMES = 250  # 5 s segments, as tokenize writes them by default


def corpus(root: Path, shards: int, segments: int) -> tuple[TrainingData, list[str]]:
    """Token shards of random codes, their (untrained) codec, and melodies for the codec."""
    config = CodecConfig()
    torch.manual_seed(0)
    codec_dir = root / "codec"
    checkpoint.save_weights(codec_dir, NeuralCodec(config).eval(), CODEC_KIND, config, step=0)
    codec_id = codec_id_of(codec_dir / checkpoint.WEIGHTS)
    info = CodecInfo(codec_id, config.sample_rate, config.frame_rate, config.num_codebooks, config.codebook_size)
    rng = np.random.default_rng(0)
    shards_dir = Location.local(root / "shards")
    files, ids = [], []
    for index in range(shards):
        rows = [Segment(f"a{index}:{row}", f"a{index}", row * 5.0, SEGMENT_FRAMES / config.frame_rate,
                        rng.integers(0, config.codebook_size, (config.num_codebooks, SEGMENT_FRAMES)).astype(np.int16),
                        text=f"piece {index} with soft pads and a slow pulse, part {row}")
                for row in range(segments)]
        entry = write_shard(shards_dir / f"part-{index:03d}.parquet", rows, info)
        files.append(shards_dir / entry.file)
        ids.append(entry.sha256)
    audio = []
    for index in range(4):
        t = np.arange(10 * 44_100) / 44_100
        tone = sum(np.sin(2 * np.pi * f * (1 + index / 12) * t) for f in (220.0, 277.2, 329.6)) / 6
        stereo = np.stack([tone, 0.9 * tone]).astype(np.float32)
        path = root / "audio" / f"melody-{index}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_wav(path, stereo, 44_100)
        audio.append(str(path))
    return TrainingData(codec_id, str(codec_dir), info, files, ids), audio


def trainer(model: str, data: TrainingData, audio: list[str], steps: int, batch: int
            ) -> Callable[[Path, Placement, StepCallback], TrainResult]:
    """One rank's training of ``model`` into a folder."""
    if model == "codec":
        train = CodecTrainConfig(batch_size=batch, segment_seconds=1.0, checkpoint_every=10 * steps)
        return lambda folder, placement, on_step: run_codec(audio, folder, CodecConfig(), steps, train, on_step,
                                                            placement, "cpu-16k")
    family = ARFamily() if model == "ar" else DiffusionFamily()
    settings = GeneratorSettings(steps, batch, 1e-3, 2.0, "learned", 0, preset="tiny")
    return lambda folder, placement, on_step: family.train(data, settings, folder, on_step, placement)


def measure(train: Callable[[Path, Placement, StepCallback], TrainResult], launcher: Launcher, folder: Path,
            warmup: int, batch: int) -> tuple[float, float]:
    """(examples per second after the warm-up, seconds outside the measured steps) of one run."""
    times_file = folder.with_suffix(".json")

    def work(placement: Placement, on_step: StepCallback | None) -> TrainResult:
        torch.set_num_threads(1)
        ends: list[float] = []
        result = train(folder, placement, lambda step, loss: ends.append(time.perf_counter()))
        if placement.rank == 0:
            times_file.write_text(json.dumps(ends))
        return result

    started = time.perf_counter()
    launcher(work, folder, None)
    wall = time.perf_counter() - started
    ends = json.loads(times_file.read_text())
    step_seconds = float(np.median(np.diff(ends[warmup - 1:])))
    return batch * launcher.world_size / step_seconds, wall - (ends[-1] - ends[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--warmup", type=int, default=4)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--models", default="ar,diffusion,codec")
    parser.add_argument("--quick", action="store_true", help="AR only, 10 steps (2 warm-up), batch 4, one round")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.warmup, args.batch, args.rounds, args.models = 10, 2, 4, 1, "ar"
    torch.set_num_threads(1)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    launchers: dict[str, Launcher] = {
        "in-process": InProcess(),
        "1 worker": RayTrainLauncher(ScalingSettings(workers=1, gpus_per_worker=0, max_failures=0)),
        "2 workers": RayTrainLauncher(ScalingSettings(workers=2, gpus_per_worker=0, max_failures=0)),
    }
    print(f"CPU threads {torch.get_num_threads()} a worker, {args.batch} examples a step a worker, "
          f"{args.steps} steps ({args.warmup} warm-up), best of {args.rounds} rounds; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"{'model':<10} {'in-process':>12} {'1 worker':>12} {'2 workers':>12} {'2w / 1w':>8} {'1w / in-proc':>13}"
          f" {'start-up 1w, 2w (s)':>20}")
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        data, audio = corpus(root / "data", shards=4, segments=24)
        for model in args.models.split(","):
            train = trainer(model, data, audio, args.steps, args.batch)
            rates: dict[str, float] = {}
            overheads: dict[str, float] = {}
            for round_ in range(args.rounds):
                for name, launcher in launchers.items():
                    rate, overhead = measure(train, launcher, root / "runs" / f"{model}-{name}-{round_}",
                                             args.warmup, args.batch)
                    rates[name] = max(rate, rates.get(name, 0.0))
                    overheads[name] = min(overhead, overheads.get(name, overhead))
            print(f"{model:<10} {rates['in-process']:>12.1f} {rates['1 worker']:>12.1f} {rates['2 workers']:>12.1f} "
                  f"{rates['2 workers'] / rates['1 worker']:>8.2f} {rates['1 worker'] / rates['in-process']:>13.2f} "
                  f"{overheads['1 worker']:>9.1f}, {overheads['2 workers']:.1f}")
    ray.shutdown()
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
