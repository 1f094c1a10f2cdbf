"""Multi-scale STFT discriminator (EnCodec) and the GAN losses a codec trains with.

Each scale looks at the complex STFT of the waveform at one FFT size, real and imaginary parts
as two input channels, time x frequency as the image::

    wav [B,1,T] --STFT(n_fft, hop n_fft/4)--> [B,2,frames,n_fft/2+1]
      conv (3,9) -> C
      conv (3,9) stride (1,2) dilation (d,1)   for d in dilations   (frequency halves each time)
      conv (3,3)
      conv (3,3) -> 1                          logits [B,1,frames,bins]

Several FFT sizes trade time resolution for frequency resolution, so no single artefact hides.
The losses are hinge losses plus an L1 feature-matching term on every intermediate map.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

Judgement = tuple[torch.Tensor, list[torch.Tensor]]  # (logits, feature maps) of one scale


@dataclass
class DiscriminatorConfig:
    channels: int = 32
    fft_sizes: tuple[int, ...] = (1024, 512, 256)
    dilations: tuple[int, ...] = (1, 2, 4)


class STFTDiscriminator(nn.Module):
    """One scale: a 2-D conv stack over the complex spectrogram."""

    def __init__(self, n_fft: int, channels: int, dilations: tuple[int, ...]):
        super().__init__()
        self.n_fft, self.hop = n_fft, n_fft // 4
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        convs = [weight_norm(nn.Conv2d(2, channels, (3, 9), padding=(1, 4)))]
        for dilation in dilations:
            convs.append(weight_norm(nn.Conv2d(channels, channels, (3, 9), stride=(1, 2), dilation=(dilation, 1),
                                               padding=(dilation, 4))))
        convs.append(weight_norm(nn.Conv2d(channels, channels, (3, 3), padding=(1, 1))))
        self.convs = nn.ModuleList(convs)
        self.post = weight_norm(nn.Conv2d(channels, 1, (3, 3), padding=(1, 1)))

    def forward(self, wav: torch.Tensor) -> Judgement:
        spec = torch.stft(wav.squeeze(1), self.n_fft, self.hop, window=self.window, normalized=True,
                          return_complex=True)  # [B, bins, frames]
        x = torch.stack([spec.real, spec.imag], dim=1).transpose(2, 3)  # [B, 2, frames, bins]
        features = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), 0.2)
            features.append(x)
        return self.post(x), features


class MultiScaleSTFTDiscriminator(nn.Module):
    def __init__(self, config: DiscriminatorConfig | None = None):
        super().__init__()
        config = config or DiscriminatorConfig()
        self.config = config
        self.scales = nn.ModuleList(STFTDiscriminator(n, config.channels, config.dilations) for n in config.fft_sizes)

    def forward(self, wav: torch.Tensor) -> list[Judgement]:
        return [scale(wav) for scale in self.scales]


def discriminator_loss(real: list[Judgement], fake: list[Judgement]) -> torch.Tensor:
    """Hinge: push real logits above +1 and fake logits below -1 (fake passed detached)."""
    return sum(F.relu(1 - r).mean() + F.relu(1 + f).mean() for (r, _), (f, _) in zip(real, fake, strict=True)) \
        / len(real)


def generator_loss(fake: list[Judgement]) -> torch.Tensor:
    """Hinge for the generator: raise the discriminator's logits on reconstructions."""
    return sum(F.relu(1 - f).mean() for f, _ in fake) / len(fake)


def feature_matching_loss(real: list[Judgement], fake: list[Judgement]) -> torch.Tensor:
    """L1 between real and fake feature maps, each relative to the real map's mean magnitude."""
    terms = [F.l1_loss(f, r.detach()) / (r.detach().abs().mean() + 1e-8)
             for (_, real_maps), (_, fake_maps) in zip(real, fake, strict=True)
             for r, f in zip(real_maps, fake_maps, strict=True)]
    return torch.stack(terms).mean()
