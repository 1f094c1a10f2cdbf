"""Compositions that Chromaprint tells apart, so ingestion never mistakes one demo track for a copy of another.

Keys spread by :class:`~soundtrail.corpus.compose.Planner` keep most pairs of tracks at a bit error
rate (BER) near 0.47 at their best alignment, but a short fingerprint has few independent bits, and in
a few dozen pairs one may come out near 0.33. So every new composition is fingerprinted and compared
with all earlier ones at every alignment that overlaps by ``min_overlap_s`` (ingestion's own rule);
one that comes within ``min_ber`` of any is drawn again in the next key on the planner's list::

    planner.candidates ──spec──▶ render ──▶ chromaprint ──▶ BER vs. every earlier track
         ▲                                                      │ >= min_ber: keep, commit
         └──────────────── next candidate ◀──── < min_ber ──────┘ (the most distinct kept after max_attempts)
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from soundtrail.audio import mono
from soundtrail.corpus.compose import Planner, TrackSpec
from soundtrail.corpus.render import render_track
from soundtrail.corpus.timbres import SAMPLE_RATE
from soundtrail.screening.chromaprint import ITEM_SECONDS, bit_errors, chromaprint


@dataclass(frozen=True)
class DistinctConfig:
    min_ber: float = 0.38  # the ingest near-duplicate line is 0.2; unrelated music sits near 0.5
    min_overlap_s: float = 5.0  # alignments shorter than this are not compared (ingestion's min_overlap_s)
    max_attempts: int = 8

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")


def best_offset_ber(a: np.ndarray, b: np.ndarray, min_overlap_items: int) -> float:
    """The lowest BER between Chromaprint items ``a`` and ``b`` over every alignment overlapping that many items.

    Unlike a matcher's candidate voting this tries every offset, so it gives the true worst case for
    "could these two be taken for copies". With fewer items than ``min_overlap_items`` in either, the
    whole of the shorter one must overlap. Returns 0.5 (unrelated) when either is empty.
    """
    a, b = np.asarray(a, dtype=np.uint32), np.asarray(b, dtype=np.uint32)
    if not len(a) or not len(b):
        return 0.5
    need = min(min_overlap_items, len(a), len(b))
    best = 1.0
    for offset in range(need - len(b), len(a) - need + 1):  # b[i] against a[i + offset]
        start, stop = max(0, -offset), min(len(b), len(a) - offset)
        best = min(best, float(bit_errors(a[start + offset:stop + offset], b[start:stop]).mean()))
    return best


def distinct_compositions(planner: Planner, durations: list[float],
                          config: DistinctConfig | None = None) -> Iterator[tuple[TrackSpec, np.ndarray]]:
    """For each duration, the next track from ``planner`` and its audio, kept apart from all earlier ones."""
    config = config or DistinctConfig()
    kept: list[np.ndarray] = []
    for seconds in durations:
        best: tuple[float, TrackSpec, np.ndarray, np.ndarray] | None = None
        for spec in planner.candidates(config.max_attempts):
            audio = render_track(spec, seconds)
            items = chromaprint(mono(audio), SAMPLE_RATE)
            overlap = int(min(config.min_overlap_s, 0.8 * seconds) / ITEM_SECONDS)
            ber = min((best_offset_ber(other, items, overlap) for other in kept), default=0.5)
            if best is None or ber > best[0]:
                best = (ber, spec, audio, items)
            if ber >= config.min_ber:
                break
        assert best is not None  # max_attempts >= 1, checked by the config
        _, spec, audio, items = best
        planner.commit(spec)
        kept.append(items)
        yield spec, audio
