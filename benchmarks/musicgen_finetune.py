"""Fine-tuning step throughput: the musicgen family's training step against transformers' MusicgenForCausalLM
forward and backward on the same config, same run.

Both sides start from the same random decoder weights and take full optimizer steps on the same batches of codes
(B rows of T frames, K codebooks of V codes, under MusicGen's delay pattern):

    soundtrail     the family's LossUnit step on MusicgenNetwork: the captions through a frozen T5 encoder and the
                   projection, the delay pattern built from the codes, the decoder, soundtrail's per-codebook loss,
                   backward, gradient clipping, AdamW; also with LoRA adapters (rank 8) instead of every weight
    transformers   MusicgenForCausalLM's own forward with delayed labels (its built-in loss) on encoder states
                   computed beforehand, backward, gradient clipping, AdamW: the anchor, with no text encoder to run

so the ratio (steps per second, soundtrail / transformers) is what the family costs over the bare decoder, its T5
forward included. bf16 autocast on CUDA for both, as the unit trains. Timings are the best of interleaved repeats.
The models are built in memory with random weights (nothing is downloaded); ``--size small`` is MusicGen-small's
decoder (24 layers, width 1024) with a T5-base-sized encoder and wants a GPU.

    .venv/bin/python benchmarks/musicgen_finetune.py [--size tiny|small] [--batch B] [--frames T] [--repeats 3]
                                                     [--threads N] [--quick]
"""

from __future__ import annotations

import argparse
import copy
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from timing import best_seconds  # benchmarks/timing.py: scripts run with benchmarks/ on sys.path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' offline tokenizer stand-in

from soundtrail.models.patterns import make_pattern  # noqa: E402
from soundtrail.train.musicgen import KIND, MusicgenNetwork, T5Text, add_adapters, musicgen_loss  # noqa: E402
from soundtrail.train.unit import LossUnit, OptimizerConfig  # noqa: E402
from tests.train.musicgen_bases import word_tokenizer  # noqa: E402

CODEBOOKS, CODES = 4, 2048
CAPTION = "calm ambient piece with soft pads slow tempo and a warm bass line under a bright piano melody"
SIZES = {  # decoder layers, width, heads; T5 layers, width, heads
    "tiny": ((4, 256, 4), (2, 256, 4)),
    "small": ((24, 1024, 16), (12, 768, 12)),
}


def build(size: str, device: torch.device) -> tuple[torch.nn.Module, T5Text, torch.nn.Module]:
    """A random MusicGen decoder, a frozen T5 encoder with a word tokenizer, and the projection between them."""
    from transformers import MusicgenDecoderConfig, MusicgenForCausalLM, T5Config, T5EncoderModel
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    (layers, width, heads), (t5_layers, t5_width, t5_heads) = SIZES[size]
    decoder = MusicgenForCausalLM(MusicgenDecoderConfig(
        vocab_size=CODES, num_codebooks=CODEBOOKS, hidden_size=width, num_hidden_layers=layers,
        num_attention_heads=heads, ffn_dim=4 * width, max_position_embeddings=2048, dropout=0.0,
        pad_token_id=CODES, bos_token_id=CODES, decoder_start_token_id=CODES)).to(device)
    tokenizer = word_tokenizer(sorted(set(CAPTION.split())))
    t5 = T5EncoderModel(T5Config(vocab_size=len(tokenizer), d_model=t5_width, d_kv=t5_width // t5_heads,
                                 d_ff=4 * t5_width, num_layers=t5_layers, num_heads=t5_heads)).to(device)
    return decoder, T5Text(tokenizer, t5, "t5-benchmark"), torch.nn.Linear(t5_width, width).to(device)


def contenders(size: str, batch: int, frames: int, device: torch.device) -> dict[str, Callable[[], object]]:
    torch.manual_seed(0)
    decoder, text, project = build(size, device)
    theirs = copy.deepcopy(decoder)
    ours = MusicgenNetwork(decoder, text, project).to(device)
    lora = MusicgenNetwork(add_adapters(copy.deepcopy(decoder), 8), text, copy.deepcopy(project)).to(device)
    optimizer = OptimizerConfig(lr=1e-5, min_lr=1e-6, warmup_steps=0)
    units = {name: LossUnit(KIND, network, {}, musicgen_loss, optimizer) for name, network in
             (("soundtrail", ours), ("soundtrail LoRA r8", lora))}
    for unit in units.values():
        unit.prepare(device)
    codes = torch.randint(0, CODES, (batch, CODEBOOKS, frames), device=device)
    texts = [CAPTION] * batch

    pattern = make_pattern("delay", CODEBOOKS)
    labels = pattern.build(codes, CODES)[:, :, 1:].transpose(1, 2)  # [B, S-1, K], the delayed targets
    with torch.no_grad():
        states, mask = ours.condition(texts)
    theirs.train()
    adamw = torch.optim.AdamW(theirs.parameters(), lr=1e-5, betas=(0.9, 0.95), weight_decay=0.1)

    def anchor() -> float:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss = theirs(encoder_hidden_states=states, encoder_attention_mask=mask, labels=labels).loss
        adamw.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(theirs.parameters(), 1.0)
        adamw.step()
        return _synced(loss.item(), device)

    runs: dict[str, Callable[[], object]] = {name: _stepper(unit, codes, texts, device) for name, unit in units.items()}
    return {**runs, "transformers": anchor}


def _stepper(unit: LossUnit, codes: torch.Tensor, texts: list[str], device: torch.device) -> Callable[[], object]:
    def step() -> float:
        return _synced(unit.train_step((codes, texts), 0, 1000)["loss"], device)

    return step


def _synced(value: float, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--frames", type=int, default=150, help="codec frames per row (3 s at 50 frames/s)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    parser.add_argument("--quick", action="store_true", help="tiny config, batch 2 of 50 frames, 2 repeats")
    args = parser.parse_args()
    if args.quick:
        args.size, args.batch, args.frames, args.repeats = "tiny", 2, 50, 2
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    (layers, width, heads), (t5_layers, t5_width, _) = SIZES[args.size]
    print(f"device {device}, torch threads {torch.get_num_threads()}; {args.size}: decoder {layers} layers d={width} "
          f"{heads} heads, {CODEBOOKS} codebooks of {CODES}; T5 {t5_layers} layers d={t5_width}; batch {args.batch} "
          f"x {args.frames} frames; best of {args.repeats}")
    seconds = best_seconds(contenders(args.size, args.batch, args.frames, device), args.repeats)
    anchor = 1.0 / seconds["transformers"]
    for name, value in seconds.items():
        rate = 1.0 / value
        print(f"{name:<20} {rate:8.2f} steps/s  {rate * args.batch * args.frames:10.0f} frames/s  "
              f"ratio {rate / anchor:5.2f}x", flush=True)


if __name__ == "__main__":
    main()
