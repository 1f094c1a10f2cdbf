"""Chromaprint fingerprints: compute them, and find copied stretches of one in an index of others.

A Chromaprint fingerprint is a sequence of 32-bit sub-fingerprints ("items"), one every ``ITEM_SECONDS``
(~0.124 s); each item summarises the chroma of the ``ITEM_SPAN_S`` (~2.7 s) of audio that starts there::

    audio   |------------------------------------------------------------|
    item 0  [=========== ITEM_SPAN_S ===========]
    item 1      [=====================================]
    item i   i * ITEM_SECONDS -> [=====================================]

Two recordings of the same music give items that differ in few bits (bit error rate, BER, under ~0.15 for a
re-encode, gain change or container change); unrelated music differs in about half of them (BER ~0.5). This
module uses ``NEAR_COPY_BER = 0.25`` as the line between the two, and ``match_score = 1 - 2 * BER`` (1 for an
identical copy, 0 for unrelated music), so a score threshold of 0.5 is that same line.

``FingerprintIndex`` is the AcoustID recipe in compact NumPy arrays: items of all assets concatenated, an inverted
index (item keys sorted, with the positions that hold them), offset voting on key hits to find candidate
alignments, then the BER at each candidate alignment to confirm a copied stretch and find where it starts and ends.
A query may also bring stretches another method proposes (matches of its own), whose alignment is then checked by
BER the same way: as a screening method (``ChromaprintMethod``) it takes the landmark method's unedited matches,
which find copies mixed under other music that leave too few exactly equal items for the votes.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache

import acoustid
import chromaprint as chromaprint_codec
import numpy as np
from scipy.signal import remez, upfirdn

from soundtrail.screening.arrays import expand_ranges
from soundtrail.screening.index_file import IndexFile
from soundtrail.screening.method import Content, IndexedMethod, Match

_CHROMAPRINT_RATE = 11_025  # Chromaprint resamples everything to this rate internally
_CHROMA_MAX_HZ = 3_520  # ... and reads chroma from 28 Hz to this frequency
_FRAME = 4096  # its FFT frame
_HOP = _FRAME // 3  # frames overlap by two thirds
_CONTEXT_FRAMES = 19  # 5-tap chroma smoothing + 16-frame-wide classifiers: one item reads 20 frames
ITEM_SECONDS = _HOP / _CHROMAPRINT_RATE
ITEM_SPAN_S = (_CONTEXT_FRAMES * _HOP + _FRAME) / _CHROMAPRINT_RATE
NEAR_COPY_BER = 0.25
# Where a run of low-BER items starts and ends in the audio: an item reads as copied once most of its window is
# inside the copied stretch. Calibrated on copies planted in synthetic music (mean error under 0.1 s, spread ~0.3 s).
_COPY_LEAD_S = 0.65
_COPY_TAIL_S = 1.2
_MIN_PROPOSAL_ITEMS = 8  # ~1 s of items wholly inside a proposed stretch before its BER means anything
_MAX_SECONDS = 24 * 3600  # pyacoustid stops reading after 120 s by default; a fingerprint covers the whole file


def chromaprint(audio_mono: np.ndarray, sample_rate: int) -> np.ndarray:
    """Raw Chromaprint items (uint32, one per ``ITEM_SECONDS``) of float audio in [-1, 1].

    Audio shorter than ``ITEM_SPAN_S`` has no complete item and gives an empty array.
    """
    return chromaprint_blocks([np.asarray(audio_mono, dtype=np.float32).reshape(-1)], sample_rate)


def chromaprint_blocks(blocks: Iterable[np.ndarray], sample_rate: int) -> np.ndarray:
    """:func:`chromaprint` of mono float blocks that follow each other, the same items as of their concatenation.

    Ingest fingerprints a file while it decodes it, block by block, so that a long file never has to be held
    whole; Chromaprint itself is a stream (it takes an iterator of PCM chunks) and the decimator keeps its state
    across blocks.
    """
    decimator = _Decimator(sample_rate)
    seen = 0

    def pcm_chunks() -> Iterator[bytes]:
        nonlocal seen
        for block in blocks:
            seen += len(block)
            decimated = decimator.feed(np.asarray(block, dtype=np.float32))
            yield (np.clip(decimated, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()

    try:
        encoded = acoustid.fingerprint(decimator.rate, 1, pcm_chunks(), maxlength=_MAX_SECONDS)
    except acoustid.FingerprintGenerationError:
        if seen >= ITEM_SPAN_S * sample_rate:
            raise
        encoded = None  # too short for an item: Chromaprint may refuse, and the answer is "no items" anyway
    if encoded is None or seen < ITEM_SPAN_S * sample_rate:
        return np.zeros(0, dtype=np.uint32)
    items, _algorithm = chromaprint_codec.decode_fingerprint(encoded)
    return np.asarray(items, dtype=np.int64).astype(np.uint32)


def encode_fingerprint(items: np.ndarray) -> str:
    """Raw Chromaprint items as base64 of little-endian uint32: compact and JSON-plain (how the ledger stores them)."""
    return base64.b64encode(np.ascontiguousarray(items, dtype="<u4").tobytes()).decode("ascii")


def decode_fingerprint(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<u4").astype(np.uint32)


class _Decimator:
    """Brings 22.05/44.1/88.2 kHz audio down to Chromaprint's 11,025 Hz with a short FIR, before Chromaprint sees it.

    Chromaprint's own resampler (FFmpeg's ``av_resample`` in 16-bit integers) takes most of its time at 44.1 kHz.
    Chromaprint reads chroma below 3,520 Hz only, so the decimator
    must keep that band and remove what would alias into it (above 11,025 - 3,520 Hz); between the two anything
    goes. An equiripple filter of 4 taps per phase does that (passband within 0.4 dB, stopband under -27 dB) at a
    fraction of the cost (measured: ``benchmarks/RESULTS.md``) and yields the same items
    (bit error rate under 0.01 against Chromaprint's resampling, even with broadband noise above 5.5 kHz that
    plain subsampling would alias to 0.05; a test holds it under 0.02). Other rates (48 kHz ...) are left to
    Chromaprint: :meth:`feed` passes them through.

    Fed block by block, it gives what ``upfirdn(h, whole, down=factor)[:len(whole) // factor]`` gives: output ``n``
    is the filter over inputs up to ``n * factor``, and is emitted once the input through ``n * factor + factor - 1``
    has arrived. ``_pending`` keeps the inputs from ``_start`` (a multiple of ``factor``) on, as many as the next
    output's filter reaches back.
    """

    def __init__(self, sample_rate: int) -> None:
        factor, remainder = divmod(sample_rate, _CHROMAPRINT_RATE)
        self.factor = factor if not remainder and factor >= 2 else 1
        self.rate = _CHROMAPRINT_RATE if self.factor > 1 else sample_rate
        self._filter = _decimation_filter(self.factor) if self.factor > 1 else None
        self._pending = np.zeros(0, dtype=np.float32)
        self._start = 0  # input index of _pending[0]
        self._emitted = 0  # outputs given so far

    def feed(self, block: np.ndarray) -> np.ndarray:
        if self._filter is None:
            return block
        factor, taps = self.factor, len(self._filter)
        self._pending = np.concatenate([self._pending, block])
        ready = (self._start + len(self._pending)) // factor  # outputs whose last input has arrived
        first = self._emitted - self._start // factor
        out = upfirdn(self._filter, self._pending, down=factor)[first:ready - self._start // factor]
        self._emitted = ready
        keep_from = max(0, (ready * factor - taps + 1) // factor * factor)  # the next output reaches back this far
        self._pending = self._pending[keep_from - self._start:]
        self._start = keep_from
        return out.astype(np.float32, copy=False)


@lru_cache(maxsize=8)
def _decimation_filter(factor: int) -> np.ndarray:
    rate = factor * _CHROMAPRINT_RATE
    bands = [0, _CHROMA_MAX_HZ, _CHROMAPRINT_RATE - _CHROMA_MAX_HZ, rate / 2]
    return remez(4 * factor, bands, [1, 0], fs=rate).astype(np.float32)


def match_span_s(item_count: int) -> float:
    """Seconds of audio that ``item_count`` consecutive matching items stand for (a match's reported duration)."""
    return item_count * ITEM_SECONDS + _COPY_TAIL_S - _COPY_LEAD_S


def match_score(ber: float) -> float:
    """1 for identical items, 0 for unrelated music (BER 0.5 or more)."""
    return float(np.clip(1.0 - 2.0 * ber, 0.0, 1.0))


def bit_errors(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-item fraction of differing bits between two equally long item arrays."""
    return np.bitwise_count(np.bitwise_xor(a, b)).astype(np.float32) / 32.0


def _overlap(len_a: int, len_b: int, offset: int) -> tuple[int, int]:
    """Range of ``b`` indices ``i`` with ``0 <= i + offset < len_a``."""
    return max(0, -offset), min(len_b, len_a - offset)


@dataclass
class FingerprintIndexConfig:
    key_bits: int = 20  # items are indexed by their top bits (as AcoustID does): a re-encode flips few of them
    smooth_items: int = 12  # ~1.5 s window over which the per-item BER is averaged to find a copied stretch
    max_gap_items: int = 8  # a stretch interrupted by less than ~1 s of damage is one stretch
    min_votes: int = 3  # key hits at one alignment before it is checked bit by bit
    max_candidates: int = 24  # alignments checked per query, most votes first
    max_postings: int = 20_000  # a key held by more positions than this carries no information (silence)


class _Segment:
    """An immutable run of assets: their items concatenated and an inverted index over them."""

    def __init__(self, items: np.ndarray, starts: np.ndarray, first_asset: int, key_shift: int) -> None:
        self.items = items
        self.starts = starts  # [assets + 1] offsets into items
        self.first_asset = first_asset
        keys = items >> np.uint32(key_shift)
        self.order = np.argsort(keys, kind="stable").astype(np.uint32 if len(items) < 2**32 else np.int64)
        self.keys = keys[self.order]

    @classmethod
    def build(cls, fingerprints: list[np.ndarray], first_asset: int, key_shift: int) -> _Segment:
        lengths = np.array([len(fp) for fp in fingerprints], dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(lengths)])
        items = np.concatenate(fingerprints) if fingerprints else np.zeros(0, dtype=np.uint32)
        return cls(items.astype(np.uint32), starts, first_asset, key_shift)

    @staticmethod
    def merge(older: _Segment, newer: _Segment, key_shift: int) -> _Segment:
        starts = np.concatenate([older.starts, newer.starts[1:] + older.starts[-1]])
        return _Segment(np.concatenate([older.items, newer.items]), starts, older.first_asset, key_shift)

    @property
    def asset_count(self) -> int:
        return len(self.starts) - 1

    def asset_items(self, local_asset: int) -> np.ndarray:
        return self.items[self.starts[local_asset]:self.starts[local_asset + 1]]

    def votes(self, query_keys: np.ndarray, max_postings: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(local asset, offset = asset position - query position, votes) for every alignment with a hit."""
        lo = np.searchsorted(self.keys, query_keys, side="left")
        hi = np.searchsorted(self.keys, query_keys, side="right")
        counts = hi - lo
        counts[counts > max_postings] = 0
        if counts.sum() == 0:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty, empty
        query_pos = np.repeat(np.arange(len(query_keys), dtype=np.int64), counts)
        global_pos = self.order[expand_ranges(lo, counts)].astype(np.int64)
        asset = np.searchsorted(self.starts, global_pos, side="right") - 1
        offset = global_pos - self.starts[asset] - query_pos
        span = np.int64(2**32)
        combined, votes = np.unique(asset * span + offset + span // 2, return_counts=True)
        return combined // span, combined % span - span // 2, votes


class FingerprintIndex(IndexFile):
    """Find stretches of a query fingerprint copied from indexed assets (duplicates, blocklisted works, outputs).

    Tracks added since the last query are indexed as a new segment at the next query; segments of similar size
    are merged (as in a log-structured merge tree), so interleaved ``add``/``query`` calls during ingestion cost
    O(N log N) overall rather than a full rebuild per file.
    """

    def __init__(self, config: FingerprintIndexConfig | None = None) -> None:
        self.config = config or FingerprintIndexConfig()
        self._key_shift = 32 - self.config.key_bits
        self._asset_ids: list[str] = []
        self._numbers: dict[str, int] = {}  # asset id -> its position in _asset_ids
        self._segments: list[_Segment] = []
        self._pending: list[np.ndarray] = []

    def __len__(self) -> int:
        return len(self._asset_ids)

    @property
    def asset_ids(self) -> list[str]:
        return list(self._asset_ids)

    def add(self, asset_id: str, fingerprint: np.ndarray) -> None:
        if asset_id in self._numbers:
            raise ValueError(f"asset {asset_id!r} is already in the fingerprint index")
        self._numbers[asset_id] = len(self._asset_ids)
        self._asset_ids.append(asset_id)
        self._pending.append(np.asarray(fingerprint, dtype=np.uint32).copy())

    def _flush(self) -> None:
        if not self._pending:
            return
        first = len(self._asset_ids) - len(self._pending)
        self._segments.append(_Segment.build(self._pending, first, self._key_shift))
        self._pending = []
        while len(self._segments) >= 2 and len(self._segments[-2].items) <= 2 * len(self._segments[-1].items):
            newer = self._segments.pop()
            older = self._segments.pop()
            self._segments.append(_Segment.merge(older, newer, self._key_shift))

    def query(self, fingerprint: np.ndarray, min_duration_s: float = 5.0, max_ber: float = NEAR_COPY_BER,
              proposals: Sequence[Match] = ()) -> list[Match]:
        """Copied stretches of at least ``min_duration_s`` whose BER stays under ``max_ber``, best first.

        ``proposals`` are stretches another method found at an alignment of its own; each one at least
        ``min_duration_s`` long is checked too (see :meth:`_confirm_proposal`), and kept when its BER is under
        ``max_ber``.
        """
        self._flush()
        query = np.asarray(fingerprint, dtype=np.uint32)
        if not len(query) or not self._segments:
            return []
        cfg = self.config
        query_keys = query >> np.uint32(self._key_shift)
        candidates = []
        for segment in self._segments:
            assets, offsets, votes = segment.votes(query_keys, cfg.max_postings)
            support = _neighbour_votes(assets, offsets, votes)
            keep = support >= cfg.min_votes
            candidates.extend((int(s), segment, int(t), int(o))
                              for s, t, o in zip(support[keep], assets[keep], offsets[keep], strict=True))
        candidates.sort(key=lambda c: -c[0])
        matches: list[Match] = []
        for _support, segment, local_asset, offset in candidates[:cfg.max_candidates]:
            items = segment.asset_items(local_asset)
            asset_id = self._asset_ids[segment.first_asset + local_asset]
            matches.extend(self._confirm(query, items, asset_id, offset, min_duration_s, max_ber))
        confirmed = (self._confirm_proposal(query, proposal, max_ber) for proposal in proposals
                     if proposal.duration_s >= min_duration_s)
        return _best_per_stretch(matches + [match for match in confirmed if match is not None])

    def _asset_items(self, asset_id: str) -> np.ndarray:
        number = self._numbers[asset_id]
        segment = next(s for s in self._segments if s.first_asset <= number < s.first_asset + s.asset_count)
        return segment.asset_items(number - segment.first_asset)

    def _confirm_proposal(self, query: np.ndarray, proposal: Match, max_ber: float) -> Match | None:
        """The proposed stretch as a match, if the query items wholly inside it agree with the asset's at the
        proposed alignment (or one item either side: the two item grids need not line up) to within ``max_ber``.

        Why: a copy mixed under other music keeps its items close to the original's (BER ~0.1-0.25 on the release
        benchmark) but few of them exactly, so the index's key votes miss it, while the landmark method still
        finds where it is. Only the items wholly inside the stretch are compared: the ones reaching past it read
        the other music too. The proposed stretch is kept as it was found (its length is the other method's).
        """
        if proposal.asset_id not in self._numbers:
            return None
        items = self._asset_items(proposal.asset_id)
        first = int(np.ceil(proposal.query_offset_s / ITEM_SECONDS))
        end = int(np.floor((proposal.query_offset_s + proposal.duration_s - ITEM_SPAN_S) / ITEM_SECONDS)) + 1
        proposed = int(round((proposal.asset_offset_s - proposal.query_offset_s) / ITEM_SECONDS))
        bers = []
        for offset in (proposed - 1, proposed, proposed + 1):
            start, stop = _overlap(len(items), len(query), offset)
            start, stop = max(start, first), min(stop, end)
            if stop - start >= _MIN_PROPOSAL_ITEMS:
                bers.append(float(bit_errors(items[start + offset:stop + offset], query[start:stop]).mean()))
        ber = min(bers, default=1.0)
        if ber > max_ber:
            return None
        return _match(proposal.asset_id, proposal.query_offset_s, proposal.asset_offset_s, proposal.duration_s, ber)

    def _confirm(self, query: np.ndarray, items: np.ndarray, asset_id: str, offset: int,
                 min_duration_s: float, max_ber: float) -> list[Match]:
        """Copied stretches at ``items[i + offset] ~ query[i]``: where the smoothed BER stays under ``max_ber``."""
        start, stop = _overlap(len(items), len(query), offset)
        if stop - start < 1:
            return []
        errors = bit_errors(items[start + offset:stop + offset], query[start:stop])
        found = []
        for first, last in _low_error_runs(errors, max_ber, self.config.smooth_items, self.config.max_gap_items):
            duration_s = match_span_s(last + 1 - first)
            ber = float(errors[first:last + 1].mean())
            if duration_s < min_duration_s or ber > max_ber:
                continue
            query_item = start + first
            found.append(_match(asset_id, round(query_item * ITEM_SECONDS + _COPY_LEAD_S, 3),
                                round((query_item + offset) * ITEM_SECONDS + _COPY_LEAD_S, 3), round(duration_s, 3),
                                ber))
        return found

    def to_bytes(self) -> bytes:
        """One ``.npz`` (no pickles): all items, asset boundaries, asset ids and the config."""
        self._flush()
        merged = _Segment.build([], 0, self._key_shift)
        for segment in self._segments:
            merged = _Segment.merge(merged, segment, self._key_shift) if merged.asset_count else segment
        buffer = io.BytesIO()
        config = np.array([self.config.key_bits, self.config.smooth_items, self.config.max_gap_items,
                           self.config.min_votes, self.config.max_candidates, self.config.max_postings])
        np.savez(buffer, items=merged.items, starts=merged.starts, config=config,
                 asset_ids=np.array(self._asset_ids, dtype=np.str_))
        self._segments = [merged] if merged.asset_count else []
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> FingerprintIndex:
        with np.load(io.BytesIO(data), allow_pickle=False) as stored:
            index = cls(FingerprintIndexConfig(*(int(v) for v in stored["config"])))
            asset_ids = [str(t) for t in stored["asset_ids"]]
            if asset_ids:
                index._segments = [_Segment(stored["items"], stored["starts"], 0, index._key_shift)]
        index._asset_ids = asset_ids
        index._numbers = {asset_id: number for number, asset_id in enumerate(asset_ids)}
        return index



def _neighbour_votes(assets: np.ndarray, offsets: np.ndarray, votes: np.ndarray) -> np.ndarray:
    """Votes at each alignment plus those at the offsets either side (item grids may sit half an item apart)."""
    if not len(votes):
        return votes
    span = np.int64(2**32)
    keys = assets * span + offsets  # sorted already: np.unique returned them in this order
    support = votes.copy()
    for step in (-1, 1):
        at = np.searchsorted(keys, keys + step)
        at_clipped = np.minimum(at, len(keys) - 1)
        hit = keys[at_clipped] == keys + step
        support[hit] += votes[at_clipped[hit]]
    return support


def _low_error_runs(errors: np.ndarray, max_ber: float, window: int, max_gap: int) -> list[tuple[int, int]]:
    """Inclusive (first, last) item ranges where the moving-average BER is under ``max_ber``."""
    kernel = np.ones(min(window, len(errors)), dtype=np.float32)
    smoothed = np.convolve(errors, kernel, mode="same") / np.convolve(np.ones_like(errors), kernel, mode="same")
    below = np.flatnonzero(smoothed <= max_ber)
    if not len(below):
        return []
    breaks = np.flatnonzero(np.diff(below) > max_gap + 1)
    firsts = np.concatenate([[below[0]], below[breaks + 1]])
    lasts = np.concatenate([below[breaks], [below[-1]]])
    return list(zip(firsts.tolist(), lasts.tolist(), strict=True))


def _match(asset_id: str, query_offset_s: float, asset_offset_s: float, duration_s: float, ber: float) -> Match:
    """A copied stretch scored by its BER, which the match keeps in its details (ingest reads it)."""
    return Match(asset_id, query_offset_s, asset_offset_s, duration_s, score=round(match_score(ber), 4), method=NAME,
                 details={"ber": round(ber, 4)})


def _best_per_stretch(matches: list[Match]) -> list[Match]:
    """Neighbouring alignments find the same stretch: keep the lowest-BER match among overlapping ones."""
    kept: list[Match] = []
    for match in sorted(matches, key=lambda m: (m.details["ber"], -m.duration_s)):
        if not any(k.asset_id == match.asset_id and _overlaps(k, match) for k in kept):
            kept.append(match)
    return kept


def _overlaps(a: Match, b: Match) -> bool:
    return (a.query_offset_s < b.query_offset_s + b.duration_s and b.query_offset_s < a.query_offset_s + a.duration_s
            and abs((a.asset_offset_s - a.query_offset_s) - (b.asset_offset_s - b.query_offset_s)) < 2.0)


NAME = "chromaprint"
# Proposals this close to no pitch shift and no tempo change are checked: Chromaprint's items move with pitch and
# drift out of line with tempo. A mixed copy that the landmark method scores under its threshold is then confirmed
# (or not) item by item, at Chromaprint's own thresholds.
_UNEDITED_SEMITONES = 0.2
_UNEDITED_TEMPO = 0.01


class ChromaprintMethod(IndexedMethod):
    """The screen's Chromaprint method: the same recording after re-encodes, gain or noise, and copies mixed under
    other music where the landmark method proposes them. Score ``1 - 2 * BER``."""

    name = NAME
    reads = "audio"
    flag = 0.5  # BER 0.25 (NEAR_COPY_BER)
    block = 0.7  # BER 0.15
    version = 1
    proposals_from = ("landmarks",)
    index_path = "fingerprints.npz"

    def __init__(self, frame_rate: float | None = None) -> None:
        self.index = FingerprintIndex()

    def indexes(self, content: Content) -> bool:
        return content.has("audio") or content.fingerprint is not None

    def add(self, asset_id: str, content: Content) -> None:
        """The audio's items, or the stored fingerprint's when there is no audio."""
        items = content.fingerprint if content.audio is None else chromaprint(content.audio, content.sample_rate)
        self.index.add(asset_id, np.asarray(items, dtype=np.uint32))

    def query(self, content: Content, min_duration_s: float, min_score: float,
              proposals: Sequence[Match] = ()) -> list[Match]:
        unedited = [p for p in proposals
                    if abs(p.semitones) <= _UNEDITED_SEMITONES and abs(p.tempo - 1.0) <= _UNEDITED_TEMPO]
        max_ber = (1.0 - min_score) / 2.0
        return self.index.query(chromaprint(content.audio, content.sample_rate), min_duration_s, max_ber, unedited)
