"""The generator families by name, and generation from a recorded model.

:data:`FAMILIES` is the one table of which families exist: the CLI, the config check, ``resolve_model`` and
``eval compare`` all read it. Adding a family is a module implementing
:class:`~soundtrail.train.generator.GeneratorFamily` and one line here.

:func:`generate` is the model call at the end of ``soundtrail generate`` (command -> ``generate_flow`` ->
``generate_task`` -> :func:`soundtrail.release.generate.generate`, which puts the release gate after it):
load the recorded model and its codec, sample, decode, trim to the asked length.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from soundtrail.checkpoint import pick_device
from soundtrail.codec.codecs import Codec, load_codec
from soundtrail.provenance.records import ModelRecord
from soundtrail.train.ar import ARFamily
from soundtrail.train.diffusion import DiffusionFamily
from soundtrail.train.generator import GeneratorFamily, Sampling
from soundtrail.train.musicgen import MusicgenFamily

FAMILIES: dict[str, GeneratorFamily] = {family.name: family for family in (
    ARFamily(),
    DiffusionFamily(),
    MusicgenFamily(),
)}


DEFAULT_SAMPLING = Sampling()


class UnknownFamilyError(ValueError):
    """A name that is not in :data:`FAMILIES`; the message lists the registered ones."""


def family(name: str) -> GeneratorFamily:
    """The registered family called ``name``."""
    if name not in FAMILIES:
        raise UnknownFamilyError(f"unknown generator family {name!r}; registered: {', '.join(FAMILIES)}")
    return FAMILIES[name]


def check_family_names(names: Iterable[str], where: str) -> None:
    """Refuse a setting (``where``, e.g. ``[pipeline] models``) that names a family not registered."""
    unknown = [name for name in names if name not in FAMILIES]
    if unknown:
        raise UnknownFamilyError(f"{where}: unknown generator famil{'y' if len(unknown) == 1 else 'ies'} "
                                 f"{', '.join(map(repr, unknown))}; registered: {', '.join(FAMILIES)}")


@dataclass(frozen=True)
class Generated:
    """Audio from a generator, before the release gate."""

    audio: np.ndarray  # mono float32
    sample_rate: int
    codes: np.ndarray | None  # [K, F] when the model produced tokens of the shards' codec
    seconds_taken: float  # sampling and decoding; loading left out


class Generator:
    """A recorded model loaded with its codec, ready to generate again and again (``eval compare`` times it).

    ``folder`` is the model's checkpoint on this machine (the stage code fetches it from storage)."""

    def __init__(self, model: ModelRecord, folder: Path, codec: Codec, device: torch.device | str | None = None):
        self.record = model
        self.family = family(model.kind)
        self.codec = codec
        self.network: Any = self.family.load(folder, device or pick_device())

    def generate(self, prompt: str, seconds: float, seed: int, sampling: Sampling = DEFAULT_SAMPLING) -> Generated:
        """``seconds`` of audio for ``prompt``; the same seed gives the same audio."""
        frames = max(1, math.ceil(seconds * self.codec.frame_rate))
        start = time.perf_counter()
        with torch.inference_mode():
            sampled = self.family.generate(self.network, self.codec, prompt, frames, seed, sampling)
        audio = sampled.wav.reshape(-1).float().cpu().numpy()[: int(round(seconds * self.codec.sample_rate))]
        return Generated(audio.astype(np.float32), self.codec.sample_rate, sampled.codes,
                         time.perf_counter() - start)


def generate(model: ModelRecord, model_folder: Path, codec_folder: Path, prompt: str, seconds: float, seed: int,
             sampling: Sampling = DEFAULT_SAMPLING) -> Generated:
    """Load ``model`` (from ``model_folder``) and its codec (from ``codec_folder``), then generate ``seconds`` of
    audio for ``prompt``."""
    return Generator(model, model_folder, load_codec(codec_folder)).generate(prompt, seconds, seed, sampling)
