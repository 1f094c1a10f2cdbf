"""The release gate's plagiarism screen: does generated audio copy a stretch of a training asset?

Three methods, each an index built from the training corpus and queried with the generated output:

    method        catches                                          index
    chromaprint   re-encodes, gain, noise: the same recording      fingerprint.FingerprintIndex (BER of items)
                  (also checks the landmark method's unedited matches: copies mixed under other music)
    tokens        memorised training tokens, re-emitted verbatim   token_ngrams.TokenNgramIndex (codec n-grams)
    landmarks     pitch shift (+-2.5 semitones), tempo (+-8 %)     landmarks.LandmarkIndex (peak quads, triplets)

Each match has a score in [0, 1] whose meaning is the method's own (1 - 2 BER; fraction of the run's n-grams
shared; fraction of the asset's anchor peaks in the stretch found, times sqrt(its length / 5 s)), so
``ScreenThresholds`` holds a flag and a block threshold per method. A match counts only if it covers at least
``min_match_s``; the verdict is ``block`` if any match reaches its method's block threshold, else ``flag`` if any
reaches its flag threshold, else ``pass``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from soundtrail.atomic import atomic_write_text
from soundtrail.audio import mono
from soundtrail.screening.chromaprint import (
    ITEM_SPAN_S,
    FingerprintIndex,
    FingerprintIndexConfig,
    ProposedStretch,
    chromaprint,
)
from soundtrail.screening.landmarks.hashes import LandmarkConfig
from soundtrail.screening.landmarks.index import LandmarkIndex
from soundtrail.screening.tokens import TokenNgramConfig, TokenNgramIndex

Method = Literal["chromaprint", "tokens", "landmarks"]
Verdict = Literal["pass", "flag", "block"]
METHODS: tuple[Method, ...] = ("chromaprint", "tokens", "landmarks")
_MANIFEST = "screener.json"
# Landmark matches this close to no pitch shift and no tempo change are also checked by Chromaprint, whose items
# move with pitch and drift out of line with tempo: a mixed copy that landmarks score under their threshold is
# then confirmed (or not) item by item, at Chromaprint's own thresholds.
_UNEDITED_SEMITONES = 0.2
_UNEDITED_TEMPO = 0.01


@dataclass(frozen=True)
class ScreenMatch:
    asset_id: str
    query_offset_s: float
    asset_offset_s: float
    duration_s: float
    score: float
    method: Method

    def to_dict(self) -> dict[str, str | float]:
        return asdict(self)


@dataclass
class ScreenThresholds:
    """Per-method score thresholds; the defaults keep unrelated music under 1 % flagged (benchmarks/release.py)."""

    min_match_s: float = 5.0
    # Match boundaries are known to about +-0.3 s (Chromaprint items read ~2.7 s of audio, triplets span up to
    # 1.3 s), so a stretch is kept when it is at most this much shorter than ``min_match_s``.
    boundary_tolerance_s: float = 0.6
    chromaprint_flag: float = 0.5  # BER 0.25
    chromaprint_block: float = 0.7  # BER 0.15
    tokens_flag: float = 0.3
    tokens_block: float = 0.6
    landmarks_flag: float = 0.43  # unrelated tracks sharing a progression and groove reach ~0.425
    landmarks_block: float = 0.7  # 5 s copies after pitch/tempo edits score ~0.5-0.8, longer ones more

    def flag_at(self, method: Method) -> float:
        return float(getattr(self, f"{method}_flag"))

    def block_at(self, method: Method) -> float:
        return float(getattr(self, f"{method}_block"))

    @property
    def shortest_s(self) -> float:
        return max(0.0, self.min_match_s - self.boundary_tolerance_s)


@dataclass(frozen=True)
class ScreenResult:
    verdict: Verdict
    matches: list[ScreenMatch] = field(default_factory=list)

    def to_dict(self) -> dict:
        """The CLI contract: ``{"verdict", "matches": [{asset_id, query_offset_s, ...}]}``."""
        return {"verdict": self.verdict, "matches": [match.to_dict() for match in self.matches]}


def verdict_of(matches: list[ScreenMatch], thresholds: ScreenThresholds) -> ScreenResult:
    """Keep matches at or over their method's flag threshold; the strongest level reached is the verdict."""
    kept = sorted((m for m in matches if m.score >= thresholds.flag_at(m.method)), key=lambda m: -m.score)
    if any(m.score >= thresholds.block_at(m.method) for m in kept):
        return ScreenResult("block", kept)
    return ScreenResult("flag" if kept else "pass", kept)


class Screener:
    """The three indexes over one training corpus, and the verdict over their matches."""

    def __init__(self, thresholds: ScreenThresholds | None = None,
                 fingerprint_config: FingerprintIndexConfig | None = None,
                 landmark_config: LandmarkConfig | None = None,
                 token_config: TokenNgramConfig | None = None) -> None:
        self.thresholds = thresholds or ScreenThresholds()
        self.chromaprint = FingerprintIndex(fingerprint_config)
        self.landmarks = LandmarkIndex(landmark_config)
        self.tokens = TokenNgramIndex(token_config)

    def __len__(self) -> int:
        return len(self.landmarks)

    def add_asset(self, asset_id: str, audio_mono: np.ndarray, sample_rate: int,
                  first_codebook_codes: np.ndarray | None = None) -> None:
        """Index one training asset; its codes (``[F]`` or ``[K, F]``) enable the token method for it."""
        audio = _as_mono(audio_mono)
        self.chromaprint.add(asset_id, chromaprint(audio, sample_rate))
        self.landmarks.add(asset_id, audio, sample_rate)
        if first_codebook_codes is not None:
            self.tokens.add(asset_id, first_codebook_codes)

    def matches(self, audio: np.ndarray, sample_rate: int, codes: np.ndarray | None = None) -> list[ScreenMatch]:
        """Every method's matches of at least ``thresholds.shortest_s``, whatever their score."""
        audio = _as_mono(audio)
        shortest = self.thresholds.shortest_s
        found: list[ScreenMatch] = []
        landmark_matches = self.landmarks.query(audio, sample_rate, shortest)
        if len(audio) >= ITEM_SPAN_S * sample_rate:
            max_ber = (1.0 - self.thresholds.chromaprint_flag) / 2.0
            unedited = [ProposedStretch(m.asset_id, m.query_offset_s, m.asset_offset_s, m.duration_s)
                        for m in landmark_matches
                        if abs(m.semitones) <= _UNEDITED_SEMITONES and abs(m.tempo - 1.0) <= _UNEDITED_TEMPO]
            for m in self.chromaprint.query(chromaprint(audio, sample_rate), shortest, max_ber, unedited):
                found.append(ScreenMatch(m.track_id, m.query_offset_s, m.track_offset_s, m.duration_s, m.score,
                                         "chromaprint"))
        for m in landmark_matches:
            found.append(ScreenMatch(m.asset_id, m.query_offset_s, m.asset_offset_s, m.duration_s, m.score,
                                     "landmarks"))
        if codes is not None and len(self.tokens):
            for m in self.tokens.query(codes, shortest):
                found.append(ScreenMatch(m.asset_id, m.query_offset_s, m.asset_offset_s, m.duration_s, m.score,
                                         "tokens"))
        return found

    def screen(self, audio: np.ndarray, sample_rate: int, codes: np.ndarray | None = None) -> ScreenResult:
        """Verdict for generated audio (``[T]`` or ``[C, T]``) and, when the generator made it, its codes."""
        return verdict_of(self.matches(audio, sample_rate, codes), self.thresholds)

    def save(self, directory: str | Path) -> None:
        """Two ``.npz`` indexes and the landmark index's folder, then ``screener.json`` (written last: a directory
        without it is incomplete)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.chromaprint.save(directory / "chromaprint.npz")
        self.landmarks.save(directory / "landmarks")
        self.tokens.save(directory / "tokens.npz")
        manifest = {"assets": len(self), "token_assets": len(self.tokens), "thresholds": asdict(self.thresholds)}
        atomic_write_text(directory / _MANIFEST, json.dumps(manifest, indent=2, sort_keys=True))

    @classmethod
    def load(cls, directory: str | Path, thresholds: ScreenThresholds | None = None) -> Screener:
        """Reload a saved screener; ``thresholds`` (e.g. from the workspace settings) override the saved ones."""
        directory = Path(directory)
        manifest_path = directory / _MANIFEST
        if not manifest_path.exists():
            raise FileNotFoundError(f"{directory}: no complete screening index ({_MANIFEST} missing)")
        manifest = json.loads(manifest_path.read_text())
        screener = cls(thresholds or ScreenThresholds(**manifest["thresholds"]))
        screener.chromaprint = FingerprintIndex.load(directory / "chromaprint.npz")
        screener.landmarks = LandmarkIndex.load(directory / "landmarks")
        screener.tokens = TokenNgramIndex.load(directory / "tokens.npz")
        return screener


def _as_mono(audio: np.ndarray) -> np.ndarray:
    audio = np.asarray(audio, dtype=np.float32)
    return mono(audio) if audio.ndim == 2 else audio
