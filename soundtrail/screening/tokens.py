"""Memorised training tokens: long runs of codec n-grams shared with a training asset at one offset.

A generator that memorised a training segment re-emits its codec tokens, so the first (coarsest) codebook of the
generated audio's codes repeats the asset's codes frame for frame. Every window of ``n`` consecutive codes is
hashed; a copied stretch shows as many n-gram hits at one constant offset::

    asset codes   .. 17 42 42  9 300 5 61 ..          n-gram hash at asset frame p
    query codes        .. 17 42 42  9 300 5 61 ..     same hash at query frame p - offset

Chance hits are rare for n = 8 (a codebook of 256 codes has 256^8 n-grams), so a run is read off the hits at one
offset: hits closer than ``max_gap`` frames belong to one run, and its score is the fraction of the run's query
n-grams that hit. A one-token difference removes ``n`` n-grams, so ``max_gap`` defaults a little above ``n``.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from soundtrail.screening.arrays import expand_ranges
from soundtrail.screening.index_file import IndexFile
from soundtrail.screening.method import Content, IndexedMethod, Match

_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)  # odd 64-bit constant: a polynomial hash that wraps mod 2**64


@dataclass
class TokenNgramConfig:
    n: int = 8
    frame_rate: float = 50.0  # codec frames per second (the shard schema's frame rate)
    max_gap: int = 12  # frames between hits that still belong to one run
    min_hits: int = 16  # hits at one offset before it is examined
    candidates: int = 16  # offsets examined per query, most hits first
    max_postings: int = 5_000  # an n-gram held this often (silence) says nothing


def first_codebook(codes: np.ndarray) -> np.ndarray:
    """``[K, F]`` codes (or already ``[F]``) -> the first codebook's ``[F]`` codes as int64."""
    codes = np.asarray(codes)
    return (codes[0] if codes.ndim == 2 else codes).astype(np.int64)


def ngram_hashes(codes: np.ndarray, n: int) -> np.ndarray:
    """uint64 hash of every window of ``n`` consecutive codes (``F - n + 1`` of them)."""
    if len(codes) < n:
        return np.zeros(0, dtype=np.uint64)
    windows = sliding_window_view(codes.astype(np.uint64) + np.uint64(1), n)
    powers = _MULTIPLIER ** np.arange(n - 1, -1, -1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        return (windows * powers).sum(axis=1, dtype=np.uint64)


class TokenNgramIndex(IndexFile):
    """Inverted index from n-gram hash to (asset, frame), as sorted NumPy arrays."""

    def __init__(self, config: TokenNgramConfig | None = None) -> None:
        self.config = config or TokenNgramConfig()
        self._asset_ids: list[str] = []
        self._known: set[str] = set()
        self._pending: list[tuple[int, np.ndarray]] = []
        self._keys = np.zeros(0, dtype=np.uint64)
        self._asset = np.zeros(0, dtype=np.int32)
        self._frame = np.zeros(0, dtype=np.int32)

    def __len__(self) -> int:
        return len(self._asset_ids)

    @property
    def asset_ids(self) -> list[str]:
        return list(self._asset_ids)

    def add(self, asset_id: str, codes: np.ndarray) -> None:
        """Index an asset's codes: ``[F]`` first-codebook codes or ``[K, F]`` (only the first row is used)."""
        if asset_id in self._known:
            raise ValueError(f"asset {asset_id!r} is already in the token index")
        self._asset_ids.append(asset_id)
        self._known.add(asset_id)
        self._pending.append((len(self._asset_ids) - 1, ngram_hashes(first_codebook(codes), self.config.n)))

    def _flush(self) -> None:
        if not self._pending:
            return
        keys = np.concatenate([self._keys] + [hashes for _, hashes in self._pending])
        asset = np.concatenate([self._asset] + [np.full(len(h), i, np.int32) for i, h in self._pending])
        frame = np.concatenate([self._frame] + [np.arange(len(h), dtype=np.int32) for _, h in self._pending])
        order = np.argsort(keys, kind="stable")
        self._keys, self._asset, self._frame = keys[order], asset[order], frame[order]
        self._pending = []

    def query(self, codes: np.ndarray, min_duration_s: float = 5.0) -> list[Match]:
        """Runs of shared n-grams of at least ``min_duration_s``, best score first."""
        self._flush()
        cfg = self.config
        query = ngram_hashes(first_codebook(codes), cfg.n)
        if not len(query) or not len(self._keys):
            return []
        lo = np.searchsorted(self._keys, query, side="left")
        counts = np.searchsorted(self._keys, query, side="right") - lo
        counts[counts > cfg.max_postings] = 0
        query_frame = np.repeat(np.arange(len(query), dtype=np.int64), counts)
        posting = expand_ranges(lo, counts)
        asset = self._asset[posting].astype(np.int64)
        offset = self._frame[posting].astype(np.int64) - query_frame
        span = np.int64(2**32)
        alignments, votes = np.unique(asset * span + offset + span // 2, return_counts=True)
        strong = np.argsort(-votes, kind="stable")[:cfg.candidates]
        matches = []
        for key in alignments[strong[votes[strong] >= cfg.min_hits]].tolist():
            hit_asset, hit_offset = key // span, key % span - span // 2
            frames = np.unique(query_frame[(asset == hit_asset) & (offset == hit_offset)])
            matches.extend(self._runs(frames, self._asset_ids[hit_asset], int(hit_offset), min_duration_s))
        return sorted(matches, key=lambda m: (-m.score, -m.duration_s))

    def _runs(self, frames: np.ndarray, asset_id: str, offset: int, min_duration_s: float) -> list[Match]:
        cfg = self.config
        breaks = np.flatnonzero(np.diff(frames) > cfg.max_gap)
        out = []
        for run in np.split(frames, breaks + 1):
            first, last = int(run[0]), int(run[-1])
            duration_s = (last - first + cfg.n) / cfg.frame_rate
            if duration_s < min_duration_s:
                continue
            out.append(Match(asset_id, query_offset_s=round(first / cfg.frame_rate, 3),
                             asset_offset_s=round((first + offset) / cfg.frame_rate, 3),
                             duration_s=round(duration_s, 3), score=round(len(run) / (last - first + 1), 4),
                             method=NAME))
        return out

    def to_bytes(self) -> bytes:
        self._flush()
        buffer = io.BytesIO()
        config = np.array([getattr(self.config, f.name) for f in fields(self.config)], dtype=np.float64)
        np.savez(buffer, keys=self._keys, asset=self._asset, frame=self._frame, config=config,
                 asset_ids=np.array(self._asset_ids, dtype=np.str_))
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> TokenNgramIndex:
        with np.load(io.BytesIO(data), allow_pickle=False) as stored:
            values = {f.name: type(f.default)(v)
                      for f, v in zip(fields(TokenNgramConfig), stored["config"], strict=True)}
            index = cls(TokenNgramConfig(**values))
            index._keys, index._asset, index._frame = stored["keys"], stored["asset"], stored["frame"]
            index._asset_ids = [str(a) for a in stored["asset_ids"]]
            index._known = set(index._asset_ids)
        return index


NAME = "tokens"


class TokensMethod(IndexedMethod):
    """The screen's token method: a generator re-emitting memorised training tokens. It reads the first codebook
    of the codes (the shards' for assets, the generator's or a re-encoding for a query). Score: the fraction of
    the run's n-grams shared."""

    name = NAME
    reads = "codes"
    flag = 0.3
    block = 0.6
    version = 1
    index_path = "ngrams.npz"

    def __init__(self, frame_rate: float | None = None) -> None:
        self.index = TokenNgramIndex(TokenNgramConfig(frame_rate=frame_rate) if frame_rate else None)

    def add(self, asset_id: str, content: Content) -> None:
        self.index.add(asset_id, content.codes)

    def query(self, content: Content, min_duration_s: float, min_score: float,
              proposals: Sequence[Match] = ()) -> list[Match]:
        return self.index.query(content.codes, min_duration_s)
