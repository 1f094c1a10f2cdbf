"""The two generator families side by side: speed and closeness to real audio, on the same captions and seeds.

For the newest AR and diffusion models of a workspace (trained on the same codec), and of a fine-tuning family
(musicgen) once the workspace has one, :func:`compare_generators` generates one clip per (held-out caption, seed)
with each family (the diffusion model once per sampling-step
count), and reports for each

- the **real-time factor** (RTF): seconds of audio per second of compute, where compute is text encoding,
  sampling and codec decoding (:meth:`~soundtrail.train.families.Generator.generate`), with model loading and one
  warm-up generation per model left out; RTF > 1 is faster than real time. It is wall-clock time on this
  machine: on a CPU shared with other work, one torch thread (``--threads 1``) gives steadier figures than
  several threads that wait on each other;
- a **Fréchet distance** to the held-out recordings in two frame embeddings (below).

The report is one JSON document (``reports/compare.json``) plus a quality-vs-speed plot (``reports/compare.png``),
both written atomically. Nothing is trained.

How quality is measured (the paragraph the README carries):

    ``soundtrail eval compare`` scores generated audio with a Fréchet distance (FD) to held-out real
    recordings, the recipe of the Fréchet Audio Distance (Kilgour et al., 2019): fit a Gaussian (mean mu,
    covariance S) to the per-frame embedding vectors of each set and report
    |mu_g - mu_r|^2 + tr(S_g + S_r - 2 (S_g S_r)^(1/2)); 0 means the same frame statistics. FAD embeds frames
    with a pretrained audio classifier (VGGish, PANNs, CLAP); none may be downloaded here, so two embeddings
    built from what the workspace has stand in. **mel**: 64-band log-mel frames in dB (64 ms windows), the
    input those classifiers themselves read. It is fixed (nothing trained on this corpus, no codec in it), so
    it is comparable across codecs, and it sees spectral balance, timbre, loudness and noise. **codec**:
    frames of the workspace codec's quantized latents, ``codec.dequantize(codec.encode(wav))``. This is a
    representation learned from this corpus without the held-out assets, and the very space the diffusion
    model generates and the AR model's tokens index, so it weights what the codec learned to keep. Both
    generators decode through that codec, so the report also gives the **codec floor**: the FD of the
    held-out recordings after a codec round trip, the distance codec distortion alone causes; a generator
    near it is limited by the codec rather than by its own modelling.
    Limits: frame statistics are blind to structure longer than a frame (rhythm, melody, form), and FD from
    a few hundred frames is biased upward, so compare numbers only within one report (same workspace,
    captions, seeds and lengths). The held-out assets never trained the codec, but the generators' shards
    hold every accepted asset: this compares the two families, it does not test generalisation to unseen
    music.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import scipy.linalg
import torch

from soundtrail.atomic import atomic_path, atomic_write_text
from soundtrail.audio import load_mono
from soundtrail.checkpoint import pick_device
from soundtrail.codec.codecs import Codec, load_codec
from soundtrail.codec.quality import reconstruct
from soundtrail.codec.stage import resolve_codec, split_assets
from soundtrail.data.storage import Storage
from soundtrail.provenance.ledger import Ledger, utc_now
from soundtrail.provenance.records import AssetRecord, CodecRecord, ModelRecord
from soundtrail.train.families import FAMILIES, Generator
from soundtrail.train.generator import Sampling
from soundtrail.train.stage import resolve_model
from soundtrail.workspace import Workspace

REPORT_JSON = "compare.json"
REPORT_PLOT = "compare.png"
MARKERS = ("s", "o", "^", "D", "v")


@dataclass(frozen=True)
class CompareConfig:
    """What one comparison generates (CLI flags of ``soundtrail eval compare``)."""

    seconds: float = 4.0  # length of every generated clip
    prompts: int = 4  # clips per family and step count; captions cycle over the held-out assets
    diffusion_steps: tuple[int, ...] = (8, 16, 32)  # sampling steps of families that take them (diffusion: Heun)
    seed: int = 0  # clip i uses seed + i, for every family
    cfg_scale: float = 3.0
    reference_seconds: float = 30.0  # at most this much of each held-out recording enters the reference
    warmup_seconds: float = 0.5  # one untimed generation per model first (lazy initialisation, caches)

    def __post_init__(self) -> None:
        if self.seconds <= 0 or self.prompts < 1 or self.reference_seconds <= 0:
            raise ValueError("seconds, prompts and reference_seconds must be positive")
        if not self.diffusion_steps or min(self.diffusion_steps) < 1:
            raise ValueError("diffusion_steps must name at least one positive step count")


# ---------------------------------------------------------------------------------------------------------------
# Fréchet distance between Gaussians fitted to embedding frames
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Gaussian:
    """Mean and covariance of a set of embedding frames (float64)."""

    mean: np.ndarray  # [d]
    cov: np.ndarray  # [d, d]
    frames: int

    @classmethod
    def fit(cls, frames: np.ndarray) -> Gaussian:
        """Fit to frames [N, d]; N >= 2 (the covariance is the unbiased one, N - 1 in the denominator)."""
        if frames.ndim != 2 or frames.shape[0] < 2:
            raise ValueError(f"need at least two frames of shape [N, d], got {frames.shape}")
        x = frames.astype(np.float64)
        return cls(x.mean(axis=0), np.atleast_2d(np.cov(x, rowvar=False)), int(x.shape[0]))


def frechet_distance(a: Gaussian, b: Gaussian, eps: float = 1e-6) -> float:
    """|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2)), never negative.

    ``(S_a S_b)^(1/2)`` comes from :func:`scipy.linalg.sqrtm`. A rank-deficient covariance (fewer frames than
    dimensions, a constant dimension) can make it inaccurate or complex; then both covariances get ``eps``
    times their mean variance added on the diagonal and the root is taken again (as pytorch-fid does), which
    moves the result by about ``eps`` relative.
    """
    if a.mean.shape != b.mean.shape:
        raise ValueError(f"embeddings differ in width: {a.mean.shape[0]} and {b.mean.shape[0]}")
    diff = a.mean - b.mean
    root = _real_sqrtm(a.cov @ b.cov)
    if root is None:
        scale = max((np.trace(a.cov) + np.trace(b.cov)) / (2 * len(a.cov)), np.finfo(np.float64).tiny)
        offset = eps * scale * np.eye(len(a.cov))
        root = _real_sqrtm((a.cov + offset) @ (b.cov + offset))
        if root is None:
            raise ValueError("the covariance product has no real square root even with a regularised diagonal")
    value = diff @ diff + np.trace(a.cov) + np.trace(b.cov) - 2.0 * np.trace(root)
    return max(float(value), 0.0)


def _real_sqrtm(matrix: np.ndarray, tolerance: float = 1e-5) -> np.ndarray | None:
    """The real square root of ``matrix`` if scipy finds an accurate one, else None.

    A product of two covariances has real non-negative eigenvalues, so its principal root is real: an imaginary
    part beyond rounding, or a root whose square misses the matrix, means the computation failed numerically.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Matrix is singular...": the residual check below decides
        root = scipy.linalg.sqrtm(matrix)
    if not np.all(np.isfinite(root)):
        return None
    size = max(float(np.abs(matrix).max()), np.finfo(np.float64).tiny)
    if np.iscomplexobj(root):
        if float(np.abs(root.imag).max()) > tolerance * math.sqrt(size):
            return None
        root = root.real
    if float(np.abs(root @ root - matrix).max()) > tolerance * size:
        return None
    return root


# ---------------------------------------------------------------------------------------------------------------
# Frame embeddings
# ---------------------------------------------------------------------------------------------------------------

class Embedding(Protocol):
    """Mono float32 audio [T] -> frames [N, d]; ``description`` says what a frame is, for the report."""

    description: str

    def __call__(self, audio: np.ndarray) -> np.ndarray: ...


class MelFrames:
    """64-band log-mel power frames in dB (floor -100 dB), 64 ms Hann windows with 75 % overlap."""

    description = "64-band log-mel frames (dB), 64 ms windows"

    def __init__(self, sample_rate: int, n_mels: int = 64):
        import torchaudio

        n_fft = 2 ** round(math.log2(0.064 * sample_rate))
        self.transform = torchaudio.transforms.MelSpectrogram(sample_rate, n_fft=n_fft, hop_length=n_fft // 4,
                                                              n_mels=n_mels, power=2.0)

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            power = self.transform(torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)))
        return (10.0 * torch.log10(power.clamp(min=1e-10))).T.double().numpy()


class CodecFrames:
    """Frames of the codec's quantized latents, ``dequantize(encode(wav))`` [F, D], in chunks of bounded memory."""

    description = "codec quantized-latent frames, dequantize(encode(wav))"

    def __init__(self, codec: Codec, chunk_seconds: float = 10.0):
        self.codec = codec
        self.chunk = max(1, int(chunk_seconds * codec.sample_rate))

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        pieces = []
        with torch.inference_mode():
            for start in range(0, len(audio), self.chunk):
                piece = np.ascontiguousarray(audio[start: start + self.chunk], dtype=np.float32)
                latents = self.codec.dequantize(self.codec.encode(torch.from_numpy(piece)[None, None]))
                pieces.append(latents[0].T.double().cpu().numpy())
        return np.concatenate(pieces)


def embed_set(clips: Sequence[np.ndarray], embeddings: dict[str, Embedding]) -> dict[str, Gaussian]:
    """One Gaussian per embedding, fitted to the frames of all clips pooled."""
    return {name: Gaussian.fit(np.concatenate([embed(clip) for clip in clips])) for name, embed in embeddings.items()}


# ---------------------------------------------------------------------------------------------------------------
# The comparison
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Prompt:
    """One generation request, identical for every family."""

    caption: str
    seed: int
    asset_id: str  # the held-out asset the caption belongs to


def compared_families(workspace: Workspace) -> list[str]:
    """Every family trained from scratch (a comparison without one of them is refused, naming it), and a
    fine-tuning family once it has a model (it needs a base model the workspace may not have)."""
    with Ledger(workspace.ledger_url) as ledger:
        trained = {row["kind"] for row in ledger.rows("models")}
    return [kind for kind, family in FAMILIES.items() if not family.fine_tunes or kind in trained]


def _shared_codec(models: dict[str, ModelRecord]) -> str:
    """Both families must decode through one codec: otherwise the comparison measures codecs, not generators."""
    codec_ids = {model.codec_id for model in models.values()}
    if len(codec_ids) > 1:
        detail = ", ".join(f"{kind} model {model.id} uses codec {model.codec_id}" for kind, model in models.items())
        raise ValueError(f"{detail}: train both on the current shards (`soundtrail train ar`, "
                         "`soundtrail train diffusion`) to compare them")
    return codec_ids.pop()


def held_out_assets(workspace: Workspace, codec: CodecRecord) -> list[AssetRecord]:
    """Accepted assets kept out of the codec's training (:func:`split_assets`), in id order."""
    with Ledger(workspace.ledger_url) as ledger:
        _, held = split_assets(ledger.rows("assets", status="accepted"))
    seen = set(codec.assets)
    assets = [AssetRecord.from_row(row) for row in held if row["id"] not in seen]
    if not assets:
        raise ValueError("no held-out accepted asset to compare against: ingest at least two accepted assets "
                         f"and train the codec without them (`soundtrail codec train`); codec {codec.id}")
    return assets


def prompts_for(assets: Sequence[AssetRecord], count: int, seed: int) -> list[Prompt]:
    """``count`` requests cycling over the assets' captions; request i uses seed + i."""
    return [Prompt(assets[i % len(assets)].caption, seed + i, assets[i % len(assets)].id) for i in range(count)]


def _timed_clips(generator: Generator, prompts: Sequence[Prompt], config: CompareConfig,
                 sampling: Sampling) -> tuple[list[np.ndarray], float]:
    """One untimed warm-up, then every prompt; returns the clips and the compute seconds they took."""
    generator.generate(prompts[0].caption, config.warmup_seconds, prompts[0].seed, sampling)
    clips, taken = [], 0.0
    for prompt in prompts:
        result = generator.generate(prompt.caption, config.seconds, prompt.seed, sampling)
        clips.append(result.audio)
        taken += result.seconds_taken
    return clips, taken


def compare_generators(workspace: Workspace, config: CompareConfig | None = None,
                       on_result: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Generate with the newest AR and diffusion models on the same held-out captions and seeds; score both.

    Returns the report (see the module docstring); :func:`write_report` saves it with its plot.
    ``on_result`` is called with each result row as it is ready (for progress output).
    """
    config = config or CompareConfig()
    models = {kind: resolve_model(workspace, kind) for kind in compared_families(workspace)}
    codec_record = resolve_codec(workspace, _shared_codec(models))
    device = pick_device()
    storage = Storage.of(workspace)
    codec = load_codec(storage.fetch(codec_record.path), device)
    references = held_out_assets(workspace, codec_record)
    prompts = prompts_for(references, config.prompts, config.seed)
    embeddings: dict[str, Embedding] = {"mel": MelFrames(codec.sample_rate), "codec": CodecFrames(codec)}

    limit = int(config.reference_seconds * codec.sample_rate)
    real_audio = [load_mono(asset.path, codec.sample_rate)[:limit] for asset in references]
    real = embed_set(real_audio, embeddings)
    resynthesised = embed_set([reconstruct(codec, audio) for audio in real_audio], embeddings)
    floor = {name: frechet_distance(resynthesised[name], real[name]) for name in embeddings}

    results = []
    for kind in models:
        family = FAMILIES[kind]
        generator = Generator(models[kind], storage.fetch(models[kind].path), codec, device)
        step_counts = sorted(set(config.diffusion_steps)) if family.sampling_steps else [None]
        for steps in step_counts:
            sampling = Sampling(config.cfg_scale) if steps is None else Sampling(config.cfg_scale, steps)
            clips, taken = _timed_clips(generator, prompts, config, sampling)
            audio_seconds = sum(len(clip) for clip in clips) / codec.sample_rate
            generated = embed_set(clips, embeddings)
            result = {
                "label": kind if steps is None else f"{kind} {steps} steps", "family": kind,
                "model_id": generator.record.id, "train_steps": generator.record.steps, "diffusion_steps": steps,
                "audio_seconds": audio_seconds, "compute_seconds": taken, "rtf": audio_seconds / taken,
                "fd": {name: frechet_distance(generated[name], real[name]) for name in embeddings},
            }
            results.append(result)
            if on_result:
                on_result(result)

    return {
        "created_at": utc_now(),
        "workspace": str(workspace.root),
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "codec_id": codec_record.id,
        "sample_rate": codec.sample_rate,
        "config": {"seconds": config.seconds, "prompts": config.prompts, "seed": config.seed,
                   "cfg_scale": config.cfg_scale, "diffusion_steps": sorted(set(config.diffusion_steps)),
                   "diffusion_method": "heun"},
        "prompts": [{"caption": p.caption, "seed": p.seed, "asset_id": p.asset_id} for p in prompts],
        "embeddings": {name: embed.description for name, embed in embeddings.items()},
        "reference": {"assets": [asset.id for asset in references],
                      "seconds": sum(len(audio) for audio in real_audio) / codec.sample_rate,
                      "frames": {name: real[name].frames for name in embeddings}},
        "codec_floor": floor,
        "results": results,
    }


# ---------------------------------------------------------------------------------------------------------------
# Writing the report
# ---------------------------------------------------------------------------------------------------------------


def write_report(workspace: Workspace, report: dict[str, Any]) -> dict[str, Any]:
    """Write ``reports/compare.json`` and ``reports/compare.png`` atomically; returns the report with both paths."""
    folder = workspace.path("reports")
    report = dict(report, json=str(folder / REPORT_JSON), plot=str(folder / REPORT_PLOT))
    plot_report(report, folder / REPORT_PLOT)
    atomic_write_text(folder / REPORT_JSON, json.dumps(report, indent=2, default=str) + "\n")
    return report


def plot_report(report: dict[str, Any], path: Path) -> None:
    """Quality against speed, one panel per embedding: FD (lower is better) over RTF (log scale, right is faster).

    Drawn on a bare Agg canvas (no pyplot state), so it works headless and in any thread.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    names = list(report["embeddings"])
    figure = Figure(figsize=(5.5 * len(names), 4.2), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, len(names), squeeze=False)[0]
    families = list(dict.fromkeys(row["family"] for row in report["results"]))
    for axis, name in zip(axes, names, strict=True):
        for index, kind in enumerate(families):  # colours and markers by position: any number of families
            rows = [row for row in report["results"] if row["family"] == kind]
            rtf = [row["rtf"] for row in rows]
            fd = [row["fd"][name] for row in rows]
            axis.plot(rtf, fd, marker=MARKERS[index % len(MARKERS)], color=f"C{index}", label=kind,
                      linestyle="-" if len(rows) > 1 else "none")
            for row in rows:
                if row["diffusion_steps"] is not None:
                    axis.annotate(f"{row['diffusion_steps']} steps", (row["rtf"], row["fd"][name]),
                                  textcoords="offset points", xytext=(5, 5), fontsize=8)
        axis.axhline(report["codec_floor"][name], color="grey", linestyle="--", linewidth=1, label="codec floor")
        axis.axvline(1.0, color="grey", linestyle=":", linewidth=1, label="real time")
        axis.set_xscale("log")
        axis.xaxis.set_major_formatter(FuncFormatter(_speed_label))
        axis.xaxis.set_minor_formatter(FuncFormatter(lambda value, position: _speed_label(value, position, (2, 5))))
        axis.set_xlabel("real-time factor (seconds of audio per second of compute)")
        axis.set_ylabel(f"Fréchet distance ({name})")
        axis.set_title(report["embeddings"][name], fontsize=9)
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=8)
    figure.suptitle(f"{report['config']['prompts']} held-out captions x {report['config']['seconds']:g} s "
                    f"on {report['device']} (codec {report['codec_id']})", fontsize=10)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=120)


def _speed_label(value: float, _position: int, mantissas: tuple[int, ...] = ()) -> str:
    """``2x``-style tick labels on the log RTF axis; minor ticks only at the given leading digits."""
    if value <= 0:
        return ""
    if mantissas and round(value / 10 ** math.floor(math.log10(value) + 1e-9)) not in mantissas:
        return ""
    return f"{value:.3g}x"
