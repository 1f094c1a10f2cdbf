"""Generation speed: the diffusion model at 8, 16 and 32 sampling steps against the AR model of about its size.

Both generators are built untrained (speed does not depend on the weights) at their default CPU sizes for the
default codec config (16 kHz, 50 frames/s, 4 codebooks of 256 codes, 64 latent channels); the DiT's width is
then chosen (head width 32) so that its parameter count is the closest to the AR model's, and both counts are
printed. Each generates the same seconds of audio for a random 12-token caption embedding, with classifier-free
guidance 3 (conditional and unconditional rows as one batch in both), as ``soundtrail generate`` does: the AR
model decodes frame by frame with its KV cache (top-k 250), the diffusion model integrates with Heun's method
(two DiT evaluations per step) over all frames at once. Timings are the best of interleaved repeats; the codec
decoder (shared by both, untrained, same config) is timed once and folded into the end-to-end figure.

Reported: seconds of audio per second of compute (real-time factor) for each, and each diffusion step count's
ratio to the AR model.

    .venv/bin/python benchmarks/diffusion.py [--seconds 10] [--steps 8,16,32] [--batch 1] [--repeats 3] [--quick]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import best_seconds  # noqa: E402  (benchmarks/timing.py, shared by the benchmarks)

from soundtrail.models.ar import ARConfig, ARModel  # noqa: E402
from soundtrail.models.codec import CodecConfig, NeuralCodec  # noqa: E402
from soundtrail.models.diffusion import DiT, DiTConfig  # noqa: E402
from soundtrail.models.sampling import sample  # noqa: E402

TEXT_TOKENS = 12
CFG_SCALE = 3.0
HEAD_WIDTH = 32


def matched_dit(codec: CodecConfig, cond_dim: int, target: int) -> DiT:
    """The default DiT with the width (a multiple of the head width) whose parameter count is nearest ``target``."""
    candidates = []
    for heads in range(2, 17):
        config = DiTConfig(latent_dim=codec.latent_dim, cond_dim=cond_dim, d_model=heads * HEAD_WIDTH, n_heads=heads)
        candidates.append((abs(DiT(config).num_parameters() - target), config))
    return DiT(min(candidates, key=lambda pair: pair[0])[1])


def runs(codec_config: CodecConfig, ar: ARModel, dit: DiT, seconds: float, steps: list[int], batch: int,
         device: torch.device) -> tuple[dict[str, Callable[[], object]], Callable[[], object]]:
    """Zero-argument generations of ``seconds`` of audio per row; and the codec decode of that much audio."""
    frames = round(seconds * codec_config.frame_rate)
    cond = torch.randn(batch, TEXT_TOKENS, ar.config.cond_dim, device=device)
    mask = torch.ones(batch, TEXT_TOKENS, dtype=torch.bool, device=device)
    codec = NeuralCodec(codec_config).inference_copy().to(device).eval()
    codes = torch.randint(0, codec_config.codebook_size, (batch, codec_config.num_codebooks, frames), device=device)

    def run_ar() -> torch.Tensor:
        return ar.generate(cond, mask, frames, cfg_scale=CFG_SCALE, generator=torch.Generator(device).manual_seed(0))

    def run_diffusion(count: int) -> Callable[[], torch.Tensor]:
        def run() -> torch.Tensor:
            with torch.inference_mode():
                return sample(dit, (batch, dit.config.latent_dim, frames), cond, mask, steps=count, method="heun",
                              cfg_scale=CFG_SCALE, generator=torch.Generator(device).manual_seed(0))
        return run

    def decode() -> torch.Tensor:
        with torch.inference_mode():
            return codec.decode(codes)

    contenders: dict[str, Callable[[], object]] = {"ar": run_ar}
    contenders.update({f"diffusion {count} steps": run_diffusion(count) for count in steps})
    return contenders, decode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds of audio per generation")
    parser.add_argument("--steps", default="8,16,32", help="diffusion sampling step counts")
    parser.add_argument("--batch", type=int, default=1, help="generations at once")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--quick", action="store_true", help="4 s of audio, best of 2")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.repeats = 4.0, 2
    if args.threads:
        torch.set_num_threads(args.threads)
    steps = [int(part) for part in args.steps.split(",")]
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    codec_config = CodecConfig()
    torch.manual_seed(0)
    ar_config = ARConfig(n_codebooks=codec_config.num_codebooks, codebook_size=codec_config.codebook_size,
                         max_steps=round(args.seconds * codec_config.frame_rate) + codec_config.num_codebooks + 1)
    ar = ARModel(ar_config).to(device).eval()
    dit = matched_dit(codec_config, ar_config.cond_dim, ar.num_parameters()).to(device).eval()
    print(f"device {device}, torch threads {torch.get_num_threads()}, batch {args.batch}, {args.seconds:g} s of "
          f"audio per row ({codec_config.sample_rate} Hz, {codec_config.frame_rate:g} frames/s, "
          f"{codec_config.num_codebooks}x{codec_config.codebook_size} codes, {codec_config.latent_dim} latent "
          f"channels), cfg {CFG_SCALE:g}, best of {args.repeats}")
    print(f"AR  d={ar_config.d_model} {ar_config.n_layers} layers {ar_config.n_heads} heads: "
          f"{ar.num_parameters() / 1e6:.2f} M parameters")
    print(f"DiT d={dit.config.d_model} {dit.config.n_layers} layers {dit.config.n_heads} heads: "
          f"{dit.num_parameters() / 1e6:.2f} M parameters ({dit.num_parameters() / ar.num_parameters():.2f}x the AR)")

    contenders, decode = runs(codec_config, ar, dit, args.seconds, steps, args.batch, device)
    seconds = best_seconds({**contenders, "codec decode": decode}, args.repeats)
    audio = args.seconds * args.batch
    decode_s = seconds.pop("codec decode")
    print(f"codec decoder alone: {audio / decode_s:.1f}x real time (included in end-to-end)")
    print(f"{'generator':<20} {'seconds':>8} {'RTF':>8} {'RTF e2e':>8} {'vs AR':>7} {'e2e vs AR':>10}")
    for name, value in seconds.items():
        rtf, rtf_e2e = audio / value, audio / (value + decode_s)
        ratio = seconds["ar"] / value
        ratio_e2e = (seconds["ar"] + decode_s) / (value + decode_s)
        print(f"{name:<20} {value:8.3f} {rtf:8.2f} {rtf_e2e:8.2f} {ratio:6.2f}x {ratio_e2e:9.2f}x", flush=True)


if __name__ == "__main__":
    main()
