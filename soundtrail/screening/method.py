"""What every screening method is: one contract, one match type (as Panako's ``Strategy`` and ``QueryResult``).

A method is an index over the training corpus that finds stretches of a query copied from an indexed asset::

    Screener ──add(asset_id, Content)──▶ method ──▶ its index (save/load: a folder of its own)
             ──query(Content, ...)─────▶ method ──▶ [Match(asset_id, query_offset_s, asset_offset_s, duration_s,
                                                           score, method, semitones, tempo, details)]

What a method reads (``reads``) is the audio or the codec's codes of it (:class:`Content` carries both, and a
Chromaprint fingerprint already computed when the audio itself is gone: see :meth:`ScreeningMethod.indexes`). Its
score is in [0, 1] with a meaning of its own, so each method declares the score at which a match is flagged and
the score at which it blocks a release (``flag``, ``block``), once, on its class; ``[screening]`` in
``soundtrail.toml`` may override them by ``<name>_flag`` and ``<name>_block``. A method may take the matches of
methods that ran before it as proposals to check in its own way (``proposals_from``): the Screener runs each
method after the ones it names.

Adding a method: a subclass in a module of its own and its line in :mod:`soundtrail.screening.registry`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Self

import numpy as np

from soundtrail.audio import mono

Reads = Literal["audio", "codes"]


@dataclass(frozen=True)
class Match:
    """A stretch of the query that copies a stretch of an indexed asset, as one method found it.

    ``asset_id`` names what was indexed: a training asset in the release screen (ingest's Chromaprint checks index
    accepted assets and blocklisted works). ``semitones`` and ``tempo`` (query tempo / asset tempo) are the edit
    the method measured between the two; methods that find only unedited copies leave them at 0 and 1. ``details``
    holds a method's own measurements (Chromaprint's bit error rate, ...); only the six fields of
    :meth:`to_dict` are reported.
    """

    asset_id: str
    query_offset_s: float
    asset_offset_s: float
    duration_s: float
    score: float
    method: str
    semitones: float = 0.0
    tempo: float = 1.0
    details: Mapping[str, float] = field(default_factory=dict, hash=False)

    def to_dict(self) -> dict[str, str | float]:
        """The CLI and ledger contract: ``{asset_id, query_offset_s, asset_offset_s, duration_s, score, method}``."""
        return {"asset_id": self.asset_id, "query_offset_s": self.query_offset_s,
                "asset_offset_s": self.asset_offset_s, "duration_s": self.duration_s, "score": self.score,
                "method": self.method}


@dataclass(frozen=True)
class Content:
    """What a method indexes or is queried with: mono audio at its sample rate, and the codec's codes of it
    (``[K, F]`` or the first codebook's ``[F]``) when there are any. Either may be missing: the shards give an
    asset's codes without decoding its audio, and a query from outside the generator has no codes.

    ``fingerprint`` is a work's Chromaprint items (uint32) as the ledger stored them at ingest, for a protected
    work whose audio is gone (a blocklisted reference kept as its fingerprint only): what the methods that can
    index a fingerprint (:meth:`ScreeningMethod.indexes`) still index."""

    audio: np.ndarray | None = None
    sample_rate: int = 0
    codes: np.ndarray | None = None
    fingerprint: np.ndarray | None = None

    @classmethod
    def of(cls, audio: np.ndarray, sample_rate: int, codes: np.ndarray | None = None) -> Content:
        """Content of ``[T]`` or ``[C, T]`` audio (mixed down to mono float32) and its codes, if any."""
        return cls(mono(np.asarray(audio, dtype=np.float32)), sample_rate, codes)

    def has(self, what: Reads) -> bool:
        """Whether the part a method reads is there."""
        return (self.audio if what == "audio" else self.codes) is not None


class ScreeningMethod(ABC):
    """One screening method's index. Subclasses declare the class attributes and implement the abstract methods
    (:class:`IndexedMethod` implements the bookkeeping for a method kept in one index object)."""

    name: ClassVar[str]  # the ``method`` of its matches, its thresholds' key prefix, its folder in a saved screener
    reads: ClassVar[Reads]
    flag: ClassVar[float]  # a match scoring at least this is reported (verdict flag) ...
    block: ClassVar[float]  # ... and at least this blocks the release
    version: ClassVar[int]  # of what ``save`` writes: bump it when that changes, so cached indexes are rebuilt
    proposals_from: ClassVar[tuple[str, ...]] = ()  # methods whose matches ``query`` receives as ``proposals``

    @abstractmethod
    def __init__(self, frame_rate: float | None = None) -> None:
        """An empty index; ``frame_rate`` is the codec frames per second of the codes a method that reads codes
        will index (the shards'); methods that read audio have no use for it."""

    @property
    @abstractmethod
    def asset_ids(self) -> Sequence[str]:
        """The assets indexed, in the order they were added."""

    def __len__(self) -> int:
        return len(self.asset_ids)

    def indexes(self, content: Content) -> bool:
        """Whether :meth:`add` can index ``content``: when the part the method reads is there (a method that can
        also index something else, such as a stored fingerprint, says so here)."""
        return content.has(self.reads)

    @abstractmethod
    def add(self, asset_id: str, content: Content) -> None:
        """Index one asset (``indexes(content)`` holds); an id already indexed is a ValueError."""

    @abstractmethod
    def query(self, content: Content, min_duration_s: float, min_score: float,
              proposals: Sequence[Match] = ()) -> list[Match]:
        """Copied stretches of at least ``min_duration_s``. Matches under ``min_score`` (the method's flag
        threshold) are not reported anyway: a method may skip them early or return them. ``proposals`` are the
        matches of the methods named in ``proposals_from``."""

    @abstractmethod
    def save(self, directory: Path) -> None:
        """Write the index into ``directory`` (its own folder, created by the caller's screener)."""

    @classmethod
    @abstractmethod
    def load(cls, directory: Path) -> Self:
        """The index ``save`` wrote; ``FileNotFoundError`` when it is not there."""


class IndexedMethod(ScreeningMethod):
    """A method kept in one index object: ``index`` knows its ``asset_ids`` and ``len()``, ``save(path)`` writes it
    and its class's ``load(path)`` reads it back, at ``index_path`` in the method's folder (the folder itself when
    empty). Subclasses make the empty index in ``__init__`` and say what ``add`` and ``query`` give it."""

    index_path: ClassVar[str] = ""
    index: Any

    @property
    def asset_ids(self) -> list[str]:
        return self.index.asset_ids

    def __len__(self) -> int:
        return len(self.index)

    def save(self, directory: Path) -> None:
        self.index.save(directory / self.index_path)

    @classmethod
    def load(cls, directory: Path) -> Self:
        method = cls()
        method.index = type(method.index).load(directory / cls.index_path)
        return method
