"""Codec throughput: soundtrail's codec against transformers' EncodecModel, same config, same run.

Both models are built with the EnCodec 24 kHz layout (strides 8-5-4-2 -> 75 Hz, 32 filters, 2-layer
LSTM, latent 128, 8 codebooks x 1024 = 6 kbps) and random weights; EncodecModel gets
``use_conv_shortcut=False`` so the two networks have the same parameters (checked). Both run under
``torch.inference_mode`` on the same batch; timings are the best of interleaved repeats (the least
disturbed by other processes on a shared machine), reported as
seconds of audio encoded (decoded) per second of wall time. Given a trained checkpoint
(``--checkpoint DIR``), it also reports SI-SNR and mel distance on ``--audio`` files (synthetic
chords when none are given).

    .venv/bin/python benchmarks/codec.py [--batch 4] [--seconds 2] [--repeats 7] [--quick]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from timing import best_seconds  # benchmarks/timing.py: scripts run with benchmarks/ on sys.path

from soundtrail.audio import write_wav
from soundtrail.codec.codecs import SoundtrailCodec, bitrate_kbps, load_codec
from soundtrail.codec.quality import evaluate_codec
from soundtrail.models.codec import NeuralCodec, encodec_24k


def hf_encodec_like(config) -> torch.nn.Module:
    from transformers import EncodecConfig, EncodecModel

    hf_config = EncodecConfig(
        sampling_rate=config.sample_rate, num_filters=config.channels, upsampling_ratios=list(config.strides),
        hidden_size=config.latent_dim, codebook_size=config.codebook_size, num_lstm_layers=config.lstm_layers,
        num_residual_layers=config.residual_layers, use_causal_conv=config.causal, pad_mode=config.pad_mode,
        use_conv_shortcut=False, target_bandwidths=[1.5, 3.0, 6.0],
    )
    return EncodecModel(hf_config).eval()


def throughput(batch: int, seconds: float, repeats: int, device: torch.device) -> None:
    torch.manual_seed(0)
    config = encodec_24k()
    model = NeuralCodec(config)
    ours = SoundtrailCodec(model, "random", device)  # weight norm folded for serving
    theirs = hf_encodec_like(config).to(device)
    n_ours = sum(p.numel() for p in model.parameters())
    n_theirs = sum(p.numel() for p in theirs.parameters())
    assert n_ours == n_theirs, (n_ours, n_theirs)
    wav = (0.1 * torch.randn(batch, 1, int(seconds * config.sample_rate))).to(device)
    audio_seconds = batch * seconds
    bandwidth = bitrate_kbps(ours)

    def sync(result):
        if device.type == "cuda":
            torch.cuda.synchronize()
        return result

    with torch.inference_mode():
        codes = ours.encode(wav)
        hf_codes = theirs.encode(wav, bandwidth=bandwidth)
        assert codes.shape == hf_codes.audio_codes[0].shape
        enc = best_seconds({"soundtrail": lambda: sync(ours.encode(wav)),
                              "transformers": lambda: sync(theirs.encode(wav, bandwidth=bandwidth))}, repeats)
        dec = best_seconds({"soundtrail": lambda: sync(ours.decode(codes)),
                              "transformers": lambda: sync(theirs.decode(hf_codes.audio_codes, [None]))}, repeats)
    print(f"device {device}, batch {batch} x {seconds:g} s at {config.sample_rate} Hz, "
          f"{n_ours / 1e6:.2f} M parameters each, {bandwidth:g} kbps, {torch.get_num_threads()} threads")
    for label, timing in (("encode", enc), ("decode", dec)):
        ours_rate, theirs_rate = audio_seconds / timing["soundtrail"], audio_seconds / timing["transformers"]
        print(f"  {label}: soundtrail {ours_rate:8.1f} s/s   transformers EncodecModel {theirs_rate:8.1f} s/s   "
              f"ratio {ours_rate / theirs_rate:.2f}x")


def quality(checkpoint_dir: Path, audio: list[Path]) -> None:
    codec = load_codec(checkpoint_dir)
    with tempfile.TemporaryDirectory() as scratch:
        if not audio:
            t = np.arange(4 * codec.sample_rate) / codec.sample_rate
            for i, root in enumerate((220.0, 196.0, 261.6)):
                tone = sum(np.sin(2 * np.pi * root * r * t) for r in (1.0, 1.26, 1.5)) / 6
                path = Path(scratch) / f"chord_{i}.wav"
                write_wav(path, tone.astype(np.float32), codec.sample_rate)
                audio.append(path)
        print(f"quality of {checkpoint_dir} (codec {codec.codec_id}) on {len(audio)} files:")
        for n_q in range(1, codec.num_codebooks + 1):
            report = evaluate_codec(codec, audio, n_q=n_q)
            print(f"  n_q {n_q}: {report['bitrate_kbps']:.2f} kbps  SI-SNR {report['si_snr_db']:6.2f} dB  "
                  f"mel distance {report['mel_distance']:.3f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="batch 2 x 1 s, 3 repeats")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice, one per core)")
    parser.add_argument("--checkpoint", type=Path, help="trained codec dir: also report SI-SNR and mel distance")
    parser.add_argument("--audio", type=Path, nargs="*", default=[], help="held-out files for --checkpoint")
    args = parser.parse_args(argv)
    if args.quick:
        args.batch, args.seconds, args.repeats = 2, 1.0, 3
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    throughput(args.batch, args.seconds, args.repeats, device)
    if device.type == "cuda":
        throughput(64, args.seconds, args.repeats, device)
    if args.checkpoint is not None:
        quality(args.checkpoint, list(args.audio))


if __name__ == "__main__":
    sys.exit(main())
