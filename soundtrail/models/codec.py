"""Neural audio codec: SEANet convolutional encoder/decoder around a residual vector quantizer.

The EnCodec / SoundStream recipe, readable top to bottom (nanoGPT style)::

    wav [B,1,T]
      | conv k7 -> C                                    (full sample rate)
      | for s in reversed(strides): ResUnit(s) x R, ELU, conv k=2s stride s, channels x2
      | LSTM with skip (optional), ELU, conv k7 -> D     latents [B,D,F],  F = T / prod(strides)
      v
    ResidualVQ: K codebooks of N vectors; codebook k quantizes what codebooks < k left over
      -> codes [B,K,F] (LongTensor)              dequantize: sum of the K chosen rows -> [B,D,F]
      v
    decoder mirrors the encoder with transposed convs (strides in order) -> wav [B,1,F * prod(strides)]

``strides`` are listed in decoder (upsampling) order, as EnCodec's ``ratios`` are: the encoder
applies them reversed, so the full-rate layers stay thin and the wide layers run at frame rate.

The quantizer (:mod:`soundtrail.models.quantizer`) learns by exponential moving averages; quantizer
dropout trains with a random number of active codebooks, so one model serves every bitrate from ``1``
to ``K`` codebooks (``encode(wav, n_q)``).

Imports only torch: soundtrail/train/codec.py owns data, losses and training, soundtrail/checkpoint.py
checkpoints.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import weight_norm

from soundtrail.models.quantizer import ResidualVQ


@dataclass
class CodecConfig:
    """Architecture of a codec. The defaults are CPU-sized: 16 kHz mono, 50 frames/s, 4 x 256 codes (1.6 kbps)."""

    sample_rate: int = 16_000
    channels: int = 16  # filters of the first conv; doubled at every downsampling
    strides: tuple[int, ...] = (8, 5, 4, 2)  # decoder order; the encoder uses them reversed
    latent_dim: int = 64
    num_codebooks: int = 4
    codebook_size: int = 256
    residual_layers: int = 1  # residual units per resolution, dilations dilation_base ** j
    dilation_base: int = 2
    kernel_size: int = 7
    last_kernel_size: int = 7
    residual_kernel_size: int = 3
    compress: int = 2  # residual branches run at channels // compress
    lstm_layers: int = 0  # EnCodec uses 2; 0 keeps CPU training fast
    causal: bool = False
    pad_mode: str = "constant"  # "constant" (zeros) or "reflect"
    ema_decay: float = 0.9
    kmeans_iters: int = 10
    dead_code_steps: int = 20  # a code unused for this many training steps is replaced
    quantizer_dropout: float = 0.5  # probability that a training batch uses a random n_q in [1, K]

    @property
    def hop_length(self) -> int:
        """Samples per latent frame: the product of the strides."""
        hop = 1
        for stride in self.strides:
            hop *= stride
        return hop

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> CodecConfig:
        """Rebuild from ``dataclasses.asdict`` output read back from JSON (lists become tuples)."""
        known = {f.name for f in fields(cls)}
        kwargs = {key: tuple(value) if isinstance(value, list) else value
                  for key, value in values.items() if key in known}
        return cls(**kwargs)


def encodec_24k() -> CodecConfig:
    """EnCodec 24 kHz layout: strides 8-5-4-2 (75 Hz), 32 filters, 2-layer LSTM, D=128, 8 x 1024 codes (6 kbps).

    Sized for a GPU; ``transformers.EncodecConfig(upsampling_ratios=[8, 5, 4, 2], use_conv_shortcut=False,
    target_bandwidths=[1.5, 3.0, 6.0])`` builds the same network (same parameter count).
    """
    return CodecConfig(sample_rate=24_000, channels=32, strides=(8, 5, 4, 2), latent_dim=128, num_codebooks=8,
                       codebook_size=1024, residual_layers=1, lstm_layers=2, causal=True, pad_mode="reflect",
                       ema_decay=0.99, dead_code_steps=200)


# ---------------------------------------------------------------------------------------------------------------
# Convolution blocks
# ---------------------------------------------------------------------------------------------------------------


def _pad1d(x: torch.Tensor, left: int, right: int, mode: str) -> torch.Tensor:
    """``F.pad`` that also reflects inputs shorter than the padding (zero-extends first, then trims)."""
    if mode != "reflect" or x.shape[-1] > max(left, right):
        return F.pad(x, (left, right), mode=mode)
    extra = max(left, right) - x.shape[-1] + 1
    padded = F.pad(F.pad(x, (0, extra)), (left, right), mode=mode)
    return padded[..., : padded.shape[-1] - extra]


class Conv(nn.Module):
    """Weight-normalised Conv1d padded so that an input of length L gives L / stride frames.

    Lengths are multiples of the hop throughout (``NeuralCodec.encode`` pads once), so the padding
    is fixed at build time: causal puts all of it on the left, non-causal splits it.

    ``elu_input`` applies the ELU that precedes every SEANet conv but the first. Padding and ELU
    commute (ELU is elementwise and ELU(0) = 0), so the ELU runs in place on the padded copy and
    the activation never costs a tensor of its own.

    Three shapes skip oneDNN's convolution, which is 4-8x slower than a GEMM for them on CPU:
    1x1 convs are a matmul over channels; single-input-channel convs (the first layer, on raw
    audio) are the [C, kernel] weight times a [B, kernel, T] matrix of shifted copies of the input; and
    single-output-channel convs (the last layer, to audio) mix channels per tap with one matmul,
    then add the ``kernel`` shifted tap rows.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, dilation: int = 1,
                 causal: bool = False, pad_mode: str = "constant", elu_input: bool = False):
        super().__init__()
        self.conv = weight_norm(nn.Conv1d(in_ch, out_ch, kernel, stride, dilation=dilation))
        total = (kernel - 1) * dilation + 1 - stride
        self.left, self.right = (total, 0) if causal else (total - total // 2, total // 2)
        self.pad_mode, self.elu_input = pad_mode, elu_input
        self.pointwise = kernel == 1 and stride == 1
        self.from_mono = in_ch == 1 and dilation == 1
        self.to_mono = out_ch == 1 and stride == 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.left or self.right:
            x = _pad1d(x, self.left, self.right, self.pad_mode)
            if self.elu_input:
                x = F.elu_(x)
        elif self.elu_input:
            x = F.elu(x)
        weight, bias = self.conv.weight, self.conv.bias
        if self.pointwise:
            return torch.matmul(weight[:, :, 0], x).add_(bias[:, None])
        if self.from_mono:
            columns = x[:, 0].unfold(-1, weight.shape[-1], self.conv.stride[0]).transpose(1, 2).contiguous()
            return torch.matmul(weight[:, 0], columns).add_(bias[:, None])  # [C, kernel] @ [B, kernel, F]
        if self.to_mono:
            dilation = self.conv.dilation[0]
            length = x.shape[-1] - (weight.shape[-1] - 1) * dilation
            taps = torch.matmul(weight[0].t(), x)  # [B, kernel, T + padding]
            out = taps[:, :1, :length] + bias[:, None]
            for k in range(1, weight.shape[-1]):
                out.add_(taps[:, k: k + 1, k * dilation: k * dilation + length])
            return out
        return self.conv(x)


class ConvTranspose(nn.Module):
    """ELU, then a weight-normalised ConvTranspose1d (kernel 2s, stride s) trimmed to exactly L * s samples."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, causal: bool = False):
        super().__init__()
        self.conv = weight_norm(nn.ConvTranspose1d(in_ch, out_ch, 2 * stride, stride))
        total = stride  # (L - 1) * s + 2s = L * s + s
        self.left = 0 if causal else total - total // 2
        self.right = total - self.left

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(F.elu_(x))  # in place: the input is always a decoder-internal activation used only here
        return y[..., self.left: y.shape[-1] - self.right]


class ResidualUnit(nn.Module):
    """x + conv1x1(ELU(dilated conv(ELU(x)))), the inner conv at dim / compress channels."""

    def __init__(self, dim: int, config: CodecConfig, dilation: int):
        super().__init__()
        hidden = dim // config.compress
        self.dilated = Conv(dim, hidden, config.residual_kernel_size, dilation=dilation, causal=config.causal,
                            pad_mode=config.pad_mode, elu_input=True)
        self.pointwise = Conv(hidden, dim, 1, elu_input=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.dilated(x)).add_(x)


class LSTM(nn.Module):
    """Sequence model at frame rate with a skip connection; input and output are [B, C, F]."""

    def __init__(self, dim: int, layers: int):
        super().__init__()
        self.lstm = nn.LSTM(dim, dim, layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seq = x.permute(2, 0, 1)
        return (self.lstm(seq)[0] + seq).permute(1, 2, 0)


def _residual_stack(dim: int, config: CodecConfig) -> list[nn.Module]:
    return [ResidualUnit(dim, config, config.dilation_base ** j) for j in range(config.residual_layers)]


class Encoder(nn.Module):
    """wav [B,1,T] -> latents [B,D,T/hop]."""

    def __init__(self, config: CodecConfig):
        super().__init__()
        c, mode = config.causal, config.pad_mode
        dim = config.channels
        layers: list[nn.Module] = [Conv(1, dim, config.kernel_size, causal=c, pad_mode=mode)]
        for stride in reversed(config.strides):
            layers += _residual_stack(dim, config)
            layers.append(Conv(dim, 2 * dim, 2 * stride, stride=stride, causal=c, pad_mode=mode, elu_input=True))
            dim *= 2
        if config.lstm_layers:
            layers.append(LSTM(dim, config.lstm_layers))
        layers.append(Conv(dim, config.latent_dim, config.last_kernel_size, causal=c, pad_mode=mode, elu_input=True))
        self.layers = nn.Sequential(*layers)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        return self.layers(wav)


class Decoder(nn.Module):
    """latents [B,D,F] -> wav [B,1,F*hop]."""

    def __init__(self, config: CodecConfig):
        super().__init__()
        c, mode = config.causal, config.pad_mode
        dim = config.channels * 2 ** len(config.strides)
        layers: list[nn.Module] = [Conv(config.latent_dim, dim, config.kernel_size, causal=c, pad_mode=mode)]
        if config.lstm_layers:
            layers.append(LSTM(dim, config.lstm_layers))
        for stride in config.strides:
            layers.append(ConvTranspose(dim, dim // 2, stride, causal=c))
            dim //= 2
            layers += _residual_stack(dim, config)
        layers.append(Conv(dim, 1, config.last_kernel_size, causal=c, pad_mode=mode, elu_input=True))
        self.layers = nn.Sequential(*layers)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        return self.layers(latents)


# ---------------------------------------------------------------------------------------------------------------
# The codec
# ---------------------------------------------------------------------------------------------------------------


class CodecOutput(NamedTuple):
    wav: torch.Tensor  # [B,1,T] reconstruction
    codes: torch.Tensor  # [B,n_q,F]
    commit_loss: torch.Tensor
    n_q: int


class NeuralCodec(nn.Module):
    """SEANet encoder/decoder with a residual VQ. ``forward`` trains; ``encode``/``decode`` serve."""

    def __init__(self, config: CodecConfig):
        super().__init__()
        if config.codebook_size > 32768:
            raise ValueError("codebook_size above 32768 does not fit the int16 codes of the shards")
        self.config = config
        self.encoder = Encoder(config)
        self.quantizer = ResidualVQ(config)
        self.decoder = Decoder(config)

    @classmethod
    def to_load_into(cls, config: CodecConfig) -> NeuralCodec:
        """A codec whose weights are about to be replaced: its random initialisation leaves the global RNG as it
        was, so loading a codec does not change what a seeded run draws next.

        Not built on the meta device: there weight norm runs through PyTorch's Python reference kernels, which
        make a process's first build far slower than on the CPU (measured: ``benchmarks/RESULTS.md``), a cost
        every ``screen`` and ``generate`` would pay.
        """
        with torch.random.fork_rng(devices=[]):
            return cls(config)

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def frame_rate(self) -> float:
        return self.config.frame_rate

    @property
    def hop_length(self) -> int:
        return self.config.hop_length

    @property
    def num_codebooks(self) -> int:
        return self.config.num_codebooks

    @property
    def codebook_size(self) -> int:
        return self.config.codebook_size

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    def _pad(self, wav: torch.Tensor) -> torch.Tensor:
        """Zero-pad [B,1,T] on the right to a whole number of frames: F = ceil(T / hop)."""
        if wav.dim() != 3 or wav.shape[1] != 1:
            raise ValueError(f"expected mono audio shaped [B, 1, T], got {tuple(wav.shape)}")
        extra = -wav.shape[-1] % self.hop_length
        return F.pad(wav, (0, extra)) if extra else wav

    def _check_n_q(self, n_q: int | None) -> int:
        n_q = self.num_codebooks if n_q is None else n_q
        if not 1 <= n_q <= self.num_codebooks:
            raise ValueError(f"n_q must be in [1, {self.num_codebooks}], got {n_q}")
        return n_q

    def sample_n_q(self, generator: torch.Generator | None = None) -> int:
        """Quantizer dropout: with probability ``quantizer_dropout`` a uniform n_q in [1, K], else K.

        Data-parallel training passes a ``generator`` seeded alike on every rank: the ranks must agree on n_q.
        """
        if float(torch.rand((), generator=generator)) < self.config.quantizer_dropout:
            return int(torch.randint(1, self.num_codebooks + 1, (), generator=generator))
        return self.num_codebooks

    def forward(self, wav: torch.Tensor, n_q: int | None = None) -> CodecOutput:
        """Reconstruct ``wav``; in training mode ``n_q`` defaults to a quantizer-dropout draw."""
        if n_q is None:
            n_q = self.sample_n_q() if self.training else self.num_codebooks
        n_q = self._check_n_q(n_q)
        x = self._pad(wav)
        quantized, codes, commit = self.quantizer(self.encoder(x), n_q)
        return CodecOutput(self.decoder(quantized)[..., : wav.shape[-1]], codes, commit, n_q)

    def encode(self, wav: torch.Tensor, n_q: int | None = None) -> torch.Tensor:
        """wav [B,1,T] -> codes LongTensor [B,n_q,ceil(T/hop)]."""
        return self.quantizer.encode(self.encoder(self._pad(wav)), self._check_n_q(n_q))

    def dequantize(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [B,K',F] (K' <= K) -> latents [B,D,F], the sum of the chosen codebook rows."""
        self._check_n_q(codes.shape[1])
        return self.quantizer.dequantize(codes)

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """latents [B,D,F] -> wav [B,1,F*hop]."""
        return self.decoder(latents)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [B,K',F] -> wav [B,1,F*hop]."""
        return self.decode_latents(self.dequantize(codes))

    def inference_copy(self) -> NeuralCodec:
        """A frozen copy in eval mode with weight norm folded into plain weights (no per-call renormalising)."""
        # Built fresh rather than deep-copied: a parametrized module's class is shared by its deep copies,
        # and un-parametrizing the copy would strip ``weight`` from the original.
        model = NeuralCodec.to_load_into(self.config)
        model.load_state_dict({name: t.detach().clone() for name, t in self.state_dict().items()}, assign=True)
        model.eval()
        for module in model.modules():
            if parametrize.is_parametrized(module, "weight"):
                parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
        for param in model.parameters():
            param.requires_grad_(False)
        return model
