"""Codec model, quantizer, common interface (soundtrail + transformers EnCodec) and segment checks."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from soundtrail import checkpoint
from soundtrail.atomic import sha256_file
from soundtrail.audio import write_wav
from soundtrail.codec.codecs import Codec, EncodecAdapter, SoundtrailCodec, bitrate_kbps, encode_segments, load_codec
from soundtrail.codec.quality import evaluate_codec, segment_quality, si_snr_db
from soundtrail.models.codec import CodecConfig, Conv, NeuralCodec, encodec_24k
from soundtrail.models.codec_discriminator import (
    DiscriminatorConfig,
    MultiScaleSTFTDiscriminator,
    discriminator_loss,
    feature_matching_loss,
    generator_loss,
)
from soundtrail.models.quantizer import Codebook

TINY = CodecConfig(sample_rate=8000, channels=4, strides=(4, 4, 2), latent_dim=16, num_codebooks=4, codebook_size=32)



def tiny_model(seed: int = 0, **overrides) -> NeuralCodec:
    torch.manual_seed(seed)
    config = CodecConfig(**{**TINY.__dict__, **overrides})
    return NeuralCodec(config)


def chord(seconds: float, sample_rate: int, freqs=(220.0, 277.2, 329.6), amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    return (amplitude * sum(np.sin(2 * np.pi * f * t) for f in freqs) / len(freqs)).astype(np.float32)


def test_encode_decode_shapes_and_bitrates_for_every_n_q():
    model = tiny_model().eval()
    codec = SoundtrailCodec(model, "tiny", "cpu")
    wav = torch.randn(3, 1, 1000)  # not a whole number of frames: padded to ceil(1000 / 32) = 32 frames
    frames = math.ceil(1000 / TINY.hop_length)
    for n_q in range(1, TINY.num_codebooks + 1):
        codes = codec.encode(wav, n_q)
        assert codes.shape == (3, n_q, frames) and codes.dtype == torch.long
        assert int(codes.min()) >= 0 and int(codes.max()) < TINY.codebook_size
        assert codec.dequantize(codes).shape == (3, TINY.latent_dim, frames)
        assert codec.decode(codes).shape == (3, 1, frames * TINY.hop_length)
        assert bitrate_kbps(codec, n_q) == pytest.approx(n_q * 5 * 250 / 1000)  # 32 codes = 5 bits, 250 Hz
    assert codec.encode(wav).shape[1] == TINY.num_codebooks
    with pytest.raises(ValueError):
        codec.encode(wav, TINY.num_codebooks + 1)
    assert isinstance(codec, Codec)


def test_encodec_24k_preset_frame_rate_and_bitrate():
    config = encodec_24k()
    assert config.hop_length == 320 and config.frame_rate == 75.0
    codec = SoundtrailCodec(NeuralCodec(config), "preset", "cpu")
    assert bitrate_kbps(codec) == pytest.approx(6.0)
    assert bitrate_kbps(codec, 2) == pytest.approx(1.5)


def test_quantizer_dropout_draws_several_n_q_in_training_only():
    model = tiny_model(quantizer_dropout=1.0).train()
    wav = torch.randn(2, 1, 512)
    drawn = {model(wav).n_q for _ in range(40)}
    assert len(drawn) >= 3 and drawn <= set(range(1, TINY.num_codebooks + 1))
    model.eval()
    assert {model(wav).n_q for _ in range(5)} == {TINY.num_codebooks}
    never = tiny_model(quantizer_dropout=0.0).train()
    assert {never(wav).n_q for _ in range(10)} == {TINY.num_codebooks}


def test_kmeans_init_and_more_codebooks_quantize_finer():
    model = tiny_model(quantizer_dropout=0.0).train()
    wav = torch.from_numpy(np.stack([chord(0.5, 8000), chord(0.5, 8000, (196.0, 247.0))]))[:, None]
    assert not any(bool(book.initialized) for book in model.quantizer.codebooks)
    model(wav)  # first batch: k-means initialisation
    assert all(bool(book.initialized) for book in model.quantizer.codebooks)
    model.eval()
    with torch.no_grad():
        latents = model.encoder(wav)
        errors = [F.mse_loss(model.dequantize(model.encode(wav, n_q)), latents).item()
                  for n_q in range(1, TINY.num_codebooks + 1)]
    assert all(later < earlier for earlier, later in zip(errors, errors[1:], strict=False)), errors
    assert errors[-1] < 0.5 * errors[0]


def test_dead_codes_are_replaced_by_recent_encoder_outputs():
    torch.manual_seed(0)
    book = Codebook(dim=4, size=8, decay=0.9, kmeans_iters=5, dead_code_steps=3)
    data = torch.randn(256, 4)
    book.initialize(data)
    book.embed[4:] = 1000.0  # codes 4..7 can never be the nearest: dead
    book.embed_sum[4:] = 1000.0 * book.cluster_size[4:, None]  # keep the EMA state consistent with it
    for _ in range(3):
        batch = torch.randn(256, 4)
        codes = torch.addmm((book.embed ** 2).sum(1), batch, book.embed.t(), alpha=-2).argmin(1)
        assert not bool((codes >= 4).any())
        book.update(batch, codes)
    revived = book.embed[4:]
    assert bool((revived.abs() < 100).all())
    # each replacement is one of the vectors of the last batch
    assert all(bool((batch == row).all(1).any()) for row in revived)
    codes = torch.addmm((book.embed ** 2).sum(1), batch, book.embed.t(), alpha=-2).argmin(1)
    assert bool((codes >= 4).any())  # and they win vectors now


def test_inference_copy_folds_weight_norm_without_changing_outputs():
    model = tiny_model().train()
    model(torch.randn(2, 1, 640))  # initialise codebooks
    model.eval()
    rng_state = torch.get_rng_state()
    frozen = model.inference_copy()
    assert torch.equal(torch.get_rng_state(), rng_state)
    assert not any("parametrizations" in name for name, _ in frozen.named_parameters())
    wav = torch.randn(2, 1, 640)
    with torch.no_grad():
        assert torch.equal(model.encode(wav), frozen.encode(wav))
        codes = model.encode(wav)
        torch.testing.assert_close(model.decode(codes), frozen.decode(codes), rtol=1e-4, atol=1e-5)
    embed = frozen.quantizer.codebooks[0].embed.clone()
    model.train()(torch.randn(2, 1, 640))  # EMA updates move the original's codebooks, not the copy's
    assert not torch.equal(model.quantizer.codebooks[0].embed, embed)
    assert torch.equal(frozen.quantizer.codebooks[0].embed, embed)


@pytest.mark.parametrize("in_ch,out_ch,kernel,stride,dilation,causal", [
    (6, 5, 1, 1, 1, False),  # pointwise -> matmul
    (1, 5, 7, 1, 1, True),  # mono input -> unfold + addmm
    (1, 4, 8, 4, 1, False),  # mono input, strided
    (6, 1, 7, 1, 1, False),  # mono output -> per-tap matmul
    (6, 1, 3, 1, 3, True),  # mono output, dilated
    (6, 5, 3, 1, 2, False),  # general -> torch conv
])
def test_conv_fast_paths_match_torch_conv(in_ch, out_ch, kernel, stride, dilation, causal):
    torch.manual_seed(0)
    conv = Conv(in_ch, out_ch, kernel, stride, dilation, causal=causal, pad_mode="reflect")
    x = torch.randn(3, in_ch, 64)
    padded = F.pad(x, (conv.left, conv.right), mode="reflect")
    expected = F.conv1d(padded, conv.conv.weight, conv.conv.bias, stride, dilation=dilation)
    out = conv(x)
    assert out.shape == (3, out_ch, 64 // stride)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)


def test_causal_codec_codes_ignore_the_future():
    model = tiny_model(causal=True).eval()
    wav = torch.randn(1, 1, 1024)
    changed = wav.clone()
    changed[..., 640:] = torch.randn(1, 1, 384)
    with torch.no_grad():
        before, after = model.encode(wav), model.encode(changed)
    assert torch.equal(before[..., : 640 // TINY.hop_length], after[..., : 640 // TINY.hop_length])
    assert not torch.equal(before, after)


def test_soundtrail_checkpoint_loads_through_load_codec(tmp_path):
    model = tiny_model().train()
    model(torch.randn(2, 1, 640))
    checkpoint.save_weights(tmp_path, model, "codec", model.config)
    rng_state = torch.get_rng_state()
    codec = load_codec(tmp_path, "cpu")
    assert torch.equal(torch.get_rng_state(), rng_state)  # loading draws no random numbers
    assert isinstance(codec, SoundtrailCodec)
    assert codec.codec_id == sha256_file(tmp_path / "model.safetensors")[:16]
    assert (codec.sample_rate, codec.frame_rate, codec.num_codebooks, codec.codebook_size, codec.latent_dim) == (
        8000, 250.0, 4, 32, 16)
    wav = torch.randn(2, 1, 640)
    with torch.no_grad():
        assert torch.equal(codec.encode(wav), model.eval().encode(wav))


def save_tiny_encodec(folder: Path, **config: Any) -> Any:
    """A randomly initialised mono ``transformers`` ``EncodecModel`` saved with ``save_pretrained`` (no chunking, no
    normalisation: what the tokenizer accepts); ``config`` overrides the tiny defaults. Returns the model."""
    from transformers import EncodecConfig, EncodecModel

    torch.manual_seed(0)
    model = EncodecModel(EncodecConfig(**{"sampling_rate": 8000, "num_filters": 4, "upsampling_ratios": [4, 2],
                                          "hidden_size": 16, "codebook_size": 64, "target_bandwidths": [6.0, 12.0],
                                          "num_lstm_layers": 1, **config})).eval()
    for layer in model.quantizer.layers:  # random init leaves codebooks at zero: give them content
        layer.codebook.embed.normal_()
    model.save_pretrained(folder)
    return model


def test_transformers_encodec_adapter_round_trip(tmp_path):
    model = save_tiny_encodec(tmp_path)
    config = model.config
    codec = load_codec(tmp_path, "cpu")
    assert isinstance(codec, EncodecAdapter) and isinstance(codec, Codec)
    assert codec.codec_id == sha256_file(tmp_path / "model.safetensors")[:16]
    frames = 800 // 8
    assert (codec.sample_rate, codec.frame_rate, codec.latent_dim, codec.codebook_size) == (8000, 1000.0, 16, 64)
    assert codec.num_codebooks == config.num_quantizers == 2
    wav = torch.randn(2, 1, 800)
    codes = codec.encode(wav)
    assert codes.shape == (2, 2, frames)
    with torch.no_grad():
        reference = model.encode(wav, bandwidth=12.0).audio_codes[0]
    assert torch.equal(codes, reference)
    assert torch.equal(codec.encode(wav, 1), reference[:, :1])
    assert codec.dequantize(codes).shape == (2, 16, frames)
    assert codec.decode(codes).shape == (2, 1, 800)
    assert encode_segments(codec, wav[:, 0].numpy(), batch_size=1).shape == (2, 2, frames)


def test_load_codec_rejects_unknown_directories(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_codec(tmp_path)
    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(ValueError):
        load_codec(tmp_path)


def test_encode_segments_is_int16_and_independent_of_batch_size():
    codec = SoundtrailCodec(tiny_model(), "tiny", "cpu")
    segments = np.random.default_rng(0).standard_normal((5, 640)).astype(np.float32) * 0.1
    small, large = encode_segments(codec, segments, batch_size=2), encode_segments(codec, segments, batch_size=5)
    assert small.dtype == np.int16 and small.shape == (5, 4, 20)
    assert np.array_equal(small, large)
    assert encode_segments(codec, segments, n_q=2).shape == (5, 2, 20)
    assert encode_segments(codec, segments[:0]).shape == (0, 4, 20)


def test_segment_quality_flags_short_silent_clipped_and_passes_clean_audio():
    sr = 8000
    clean = chord(2.0, sr)
    assert segment_quality(clean, sr) is None
    assert segment_quality(clean[: sr // 2], sr) == "too short"
    assert segment_quality(np.zeros(2 * sr, np.float32), sr) == "silent"
    assert segment_quality(clean * 1e-4, sr) == "silent"
    assert segment_quality(np.clip(clean * 4, -1, 1), sr) == "clipped"
    assert segment_quality(clean * 4, sr) == "clipped"  # float audio beyond full scale
    full_scale_sine = np.sin(2 * np.pi * 441 * np.arange(2 * sr) / sr).astype(np.float32)
    assert segment_quality(full_scale_sine, sr) is None  # touches 0 dBFS but has no flat tops
    broken = clean.copy()
    broken[100] = np.nan
    assert segment_quality(broken, sr) == "non-finite"


def test_si_snr_matches_known_noise_levels():
    rng = np.random.default_rng(0)
    target = rng.standard_normal(16000)
    target -= target.mean()
    noise = rng.standard_normal(16000)
    noise -= noise.mean()
    noise -= noise @ target / (target @ target) * target  # orthogonal to the target
    noise *= np.linalg.norm(target) / np.linalg.norm(noise) / 10  # 20 dB below
    assert si_snr_db(3.0 * target + 3.0 * noise, target) == pytest.approx(20.0, abs=1e-6)  # scale-invariant
    assert si_snr_db(target, target) > 100


def test_evaluate_codec_reports_quality_and_bitrate(tmp_path):
    paths = []
    for i, freqs in enumerate([(220.0,), (330.0, 440.0)]):
        path = tmp_path / f"held_out_{i}.wav"
        write_wav(path, chord(1.0, 8000, freqs), 8000)
        paths.append(path)
    codec = SoundtrailCodec(tiny_model(), "tiny", "cpu")
    report = evaluate_codec(codec, paths, n_q=2, chunk_seconds=0.3)
    assert report["files"] == 2 and report["seconds"] == pytest.approx(2.0)
    assert report["bitrate_kbps"] == pytest.approx(2 * 5 * 250 / 1000)
    assert math.isfinite(report["si_snr_db"]) and report["mel_distance"] > 0


def test_stft_discriminator_shapes_and_losses():
    torch.manual_seed(0)
    disc = MultiScaleSTFTDiscriminator(DiscriminatorConfig(channels=4, fft_sizes=(256, 128)))
    real, fake = torch.randn(2, 1, 2048), torch.randn(2, 1, 2048, requires_grad=True)
    real_out, fake_out = disc(real), disc(fake)
    assert len(real_out) == 2 and all(logits.shape[:2] == (2, 1) for logits, _ in real_out)
    assert len(real_out[0][1]) == 5  # first conv, 3 dilated, last conv
    d_loss = discriminator_loss(real_out, [(f.detach(), []) for f, _ in fake_out])
    g_loss = generator_loss(fake_out) + feature_matching_loss(real_out, fake_out)
    assert d_loss.item() > 0 and g_loss.item() > 0
    g_loss.backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0
