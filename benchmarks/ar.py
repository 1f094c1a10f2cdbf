"""AR decoding speed: soundtrail's ARModel against transformers' MusicgenForCausalLM, same config, same run.

Both decoders get the same architecture (layers, width, heads, MLP width 4d, K codebooks of V, cross-attention to
12 text tokens of width d) and random weights, and decode with their KV caches under ``torch.inference_mode``:
soundtrail through ``ARModel.generate`` (preallocated cache, fused projections), transformers through
``MusicgenForCausalLM.generate`` (its dynamic cache and delay-pattern masks), both sampling with top-k 250.
Classifier-free guidance runs conditional and unconditional rows as one batch of 2 in both. Timings are the best
of interleaved repeats (the least disturbed by other processes on a shared machine), reported as decoder steps
per second (one step = one forward of one position; each step yields K codes) at batch 1; with CUDA, also
tokens (codes) per second at batch 16.

Both run on one torch thread by default: on a 2-core machine shared with other processes, two OpenMP threads
that wait on each other make every timing (of either model) several times slower and erratic; ``--threads 0``
gives torch's default.

    .venv/bin/python benchmarks/ar.py [--size tiny|small|both] [--steps 32] [--repeats 3] [--threads N] [--quick]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
from timing import best_seconds  # benchmarks/timing.py: scripts run with benchmarks/ on sys.path

from soundtrail.models.ar import ARConfig, ARModel, musicgen_small

TEXT_TOKENS = 12
TOP_K = 250


def tiny() -> ARConfig:
    return ARConfig(n_codebooks=4, codebook_size=2048, d_model=256, n_layers=4, n_heads=4, cond_dim=256,
                    max_steps=1024)


def hf_musicgen_like(config: ARConfig) -> torch.nn.Module:
    """transformers' MusicGen decoder with soundtrail's layout (its own init; weights are random either way)."""
    from transformers import MusicgenDecoderConfig, MusicgenForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    special = config.special_token
    hf_config = MusicgenDecoderConfig(
        vocab_size=config.codebook_size, num_codebooks=config.n_codebooks, hidden_size=config.d_model,
        num_hidden_layers=config.n_layers, num_attention_heads=config.n_heads,
        ffn_dim=int(config.mlp_ratio * config.d_model), max_position_embeddings=config.max_steps,
        dropout=0.0, pad_token_id=special, bos_token_id=special, decoder_start_token_id=special,
    )
    return MusicgenForCausalLM(hf_config).eval()


def contenders(config: ARConfig, batch: int, steps: int, cfg: bool,
               device: torch.device) -> tuple[dict[str, Callable[[], object]], int]:
    """The two decoders as zero-argument runs of ``steps`` forwards each (K codes per row per step)."""
    torch.manual_seed(0)
    ours = ARModel(config).to(device).eval()
    theirs = hf_musicgen_like(config).to(device)
    cond = torch.randn(batch, TEXT_TOKENS, config.d_model, device=device)
    mask = torch.ones(batch, TEXT_TOKENS, dtype=torch.bool, device=device)
    frames = steps - ours.pattern.max_delay  # generate() runs frames + max_delay forwards
    special = config.special_token
    hf_ids = torch.full((batch * config.n_codebooks, 1), special, dtype=torch.long, device=device)
    # MusicGen's guidance wants the null text as the second half of the encoder states
    hf_states = torch.cat([cond, torch.zeros_like(cond)]) if cfg else cond
    scale = 3.0 if cfg else 1.0

    def run_ours() -> torch.Tensor:
        generator = torch.Generator(device).manual_seed(0)
        return ours.generate(cond, mask, frames, cfg_scale=scale, top_k=TOP_K, generator=generator)

    def run_theirs() -> torch.Tensor:
        with torch.inference_mode():
            return theirs.generate(input_ids=hf_ids, encoder_hidden_states=hf_states, max_new_tokens=steps,
                                   do_sample=True, top_k=TOP_K, guidance_scale=scale if cfg else None,
                                   pad_token_id=special, bos_token_id=special, decoder_start_token_id=special,
                                   num_return_sequences=1)

    return {"soundtrail": run_ours, "transformers": run_theirs}, steps


def report(label: str, config: ARConfig, batch: int, steps: int, cfg: bool, repeats: int,
           device: torch.device) -> None:
    runs, steps = contenders(config, batch, steps, cfg, device)
    seconds = best_seconds(runs, repeats)
    rate = {name: steps / value for name, value in seconds.items()}
    unit = "steps/s" if batch == 1 else "tokens/s"
    scale = 1 if batch == 1 else batch * config.n_codebooks
    line = "  ".join(f"{name} {rate[name] * scale:9.1f} {unit}" for name in rate)
    ratio = rate["soundtrail"] / rate["transformers"]
    print(f"{label:<7} batch {batch:<3} {'cfg' if cfg else 'no cfg':<6}  {line}  ratio {ratio:5.2f}x", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=["tiny", "small", "both"], default="both")
    parser.add_argument("--steps", type=int, default=32, help="decoder steps per generation")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads for both (0: torch's default)")
    parser.add_argument("--quick", action="store_true", help="tiny config only, 24 steps, 2 repeats")
    args = parser.parse_args()
    if args.quick:
        args.size, args.steps, args.repeats = "tiny", 24, 2
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    sizes = {"tiny": [("tiny", tiny())], "small": [("small", musicgen_small(cond_dim=1024))],
             "both": [("tiny", tiny()), ("small", musicgen_small(cond_dim=1024))]}[args.size]
    print(f"device {device}, torch threads {torch.get_num_threads()}, {args.steps} steps, best of {args.repeats}")
    for label, config in sizes:
        config.cond_dim = config.d_model  # MusicgenForCausalLM cross-attends to states of its own width
        print(f"{label}: {config.n_layers} layers, d={config.d_model}, {config.n_heads} heads, "
              f"{config.n_codebooks} codebooks of {config.codebook_size}")
        for cfg in (False, True):
            report(label, config, 1, args.steps, cfg, args.repeats, device)
        if device.type == "cuda":
            for cfg in (False, True):
                report(label, config, 16, args.steps, cfg, args.repeats, device)


if __name__ == "__main__":
    main()
