"""The release gate's plagiarism screen: does generated audio copy a stretch of a training asset?

The registered methods (:mod:`soundtrail.screening.registry`), each an index built from the training corpus and
queried with the generated output::

    method        catches                                          reads   index
    chromaprint   re-encodes, gain, noise: the same recording      audio   chromaprint.FingerprintIndex (BER)
                  (also checks the landmark method's unedited matches: copies mixed under other music)
    landmarks     pitch shift (+-2.5 semitones), tempo (+-8 %)     audio   landmarks.index.LandmarkIndex
    tokens        memorised training tokens, re-emitted verbatim   codes   tokens.TokenNgramIndex (codec n-grams)

Each match has a score in [0, 1] whose meaning is its method's own, so each method declares a flag and a block
threshold (:class:`ScreenThresholds` gathers them). A match counts only if it covers at least ``min_match_s``;
the verdict is ``block`` if any match reaches its method's block threshold, else ``flag`` if any reaches its flag
threshold, else ``pass``. Works indexed as *protected* (taken down, blocklisted: works that must never come out)
block at their method's flag threshold: a stretch close enough to report is too close to release.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from soundtrail.atomic import atomic_write_text
from soundtrail.screening.method import Content, Match, ScreeningMethod
from soundtrail.screening.registry import METHODS

Verdict = Literal["pass", "flag", "block"]
_MANIFEST = "screener.json"


@dataclass(frozen=True)
class Levels:
    """A method's score thresholds: a match reaching ``flag`` is reported, one reaching ``block`` stops a release."""

    flag: float
    block: float


@dataclass(frozen=True)
class ScreenThresholds:
    """How long a match must be, and each method's levels.

    Declared once: the two lengths here, each method's levels on its class; :meth:`declared` gathers them, and
    the flat names it takes (``min_match_s``, ``landmarks_block``, ...) are the keys of ``[screening]`` in
    ``soundtrail.toml`` and of a saved screener's manifest. The defaults keep unrelated music under 1 % flagged
    (benchmarks/release.py).
    """

    levels: Mapping[str, Levels]
    min_match_s: float = 5.0
    # Match boundaries are known to about +-0.3 s (Chromaprint items read ~2.7 s of audio, triplets span up to
    # 1.3 s), so a stretch is kept when it is at most this much shorter than ``min_match_s``.
    boundary_tolerance_s: float = 0.6

    @classmethod
    def declared(cls, methods: Sequence[type[ScreeningMethod]] = METHODS, **overrides: float) -> ScreenThresholds:
        """The declared thresholds of ``methods``, with ``overrides`` by flat name; an unknown name is a ValueError
        that names it."""
        values = {"min_match_s": cls.min_match_s, "boundary_tolerance_s": cls.boundary_tolerance_s}
        for method in methods:
            values |= {f"{method.name}_flag": method.flag, f"{method.name}_block": method.block}
        unknown = sorted(set(overrides) - set(values))
        if unknown:
            raise ValueError(f"{unknown[0]}: unknown key (screening methods: "
                             f"{', '.join(method.name for method in methods)})")
        values |= overrides
        levels = {method.name: Levels(float(values[f"{method.name}_flag"]), float(values[f"{method.name}_block"]))
                  for method in methods}
        return cls(levels, float(values["min_match_s"]), float(values["boundary_tolerance_s"]))

    def to_dict(self) -> dict[str, float]:
        """The flat names :meth:`declared` takes, every one of them."""
        flat = {"min_match_s": self.min_match_s, "boundary_tolerance_s": self.boundary_tolerance_s}
        for name, levels in self.levels.items():
            flat |= {f"{name}_flag": levels.flag, f"{name}_block": levels.block}
        return flat

    def flag_at(self, method: str) -> float:
        return self.levels[method].flag

    def block_at(self, method: str) -> float:
        return self.levels[method].block

    @property
    def shortest_s(self) -> float:
        return max(0.0, self.min_match_s - self.boundary_tolerance_s)


@dataclass(frozen=True)
class ScreenResult:
    verdict: Verdict
    matches: list[Match] = field(default_factory=list)

    def to_dict(self) -> dict:
        """The CLI contract: ``{"verdict", "matches": [{asset_id, query_offset_s, ...}]}``."""
        return {"verdict": self.verdict, "matches": [match.to_dict() for match in self.matches]}


def verdict_of(matches: list[Match], thresholds: ScreenThresholds,
               protected: Collection[str] = frozenset()) -> ScreenResult:
    """Keep matches at or over their method's flag threshold; the strongest level reached is the verdict, and a
    kept match of a ``protected`` work blocks."""
    kept = sorted((m for m in matches if m.score >= thresholds.flag_at(m.method)), key=lambda m: -m.score)
    if any(m.score >= thresholds.block_at(m.method) or m.asset_id in protected for m in kept):
        return ScreenResult("block", kept)
    return ScreenResult("flag" if kept else "pass", kept)


class Screener:
    """The registered methods' indexes over one training corpus, and the verdict over their matches."""

    def __init__(self, thresholds: ScreenThresholds | None = None,
                 methods: Sequence[type[ScreeningMethod]] = METHODS, frame_rate: float | None = None) -> None:
        """``frame_rate``: codec frames per second of the codes that methods reading codes will index."""
        names = [method.name for method in methods]
        if len(set(names)) != len(names):
            raise ValueError(f"screening methods share a name: {names}")
        self.thresholds = thresholds or ScreenThresholds.declared(methods)
        unset = [name for name in names if name not in self.thresholds.levels]
        if unset:
            raise ValueError(f"no thresholds for screening method {unset[0]}")
        self.methods: dict[str, ScreeningMethod] = {method.name: method(frame_rate=frame_rate) for method in methods}

    def __len__(self) -> int:
        """Assets indexed by at least one method."""
        return len(set().union(*(method.asset_ids for method in self.methods.values())))

    def add_asset(self, asset_id: str, audio: np.ndarray, sample_rate: int, codes: np.ndarray | None = None) -> None:
        """Index one training asset (``[T]`` or ``[C, T]``) in every method; its codes (``[F]`` or ``[K, F]``)
        enable the methods that read codes for it."""
        content = Content.of(audio, sample_rate, codes)
        for method in self.methods.values():
            if method.indexes(content):
                method.add(asset_id, content)

    def matches(self, audio: np.ndarray, sample_rate: int, codes: np.ndarray | None = None) -> list[Match]:
        """Every method's matches of at least ``thresholds.shortest_s``, in registry order; a method may have left
        out matches under its flag threshold. Methods whose input the query lacks (no codes) are not run."""
        content = Content.of(audio, sample_rate, codes)
        found: dict[str, list[Match]] = {name: [] for name in self.methods}
        for method in self._run_order():
            if content.has(method.reads):
                proposals = [match for name in method.proposals_from for match in found.get(name, ())]
                found[method.name] = method.query(content, self.thresholds.shortest_s,
                                                  self.thresholds.flag_at(method.name), proposals)
        return [match for name in self.methods for match in found[name]]

    def _run_order(self) -> list[ScreeningMethod]:
        """The methods in registry order, except that each runs after the methods it takes proposals from."""
        pending, done, order = list(self.methods.values()), set(), []
        while pending:
            ready = next((m for m in pending if all(name in done or name not in self.methods
                                                    for name in m.proposals_from)), None)
            if ready is None:
                raise ValueError(f"screening methods take proposals from each other in a cycle: "
                                 f"{[m.name for m in pending]}")
            pending.remove(ready)
            done.add(ready.name)
            order.append(ready)
        return order

    def screen(self, audio: np.ndarray, sample_rate: int, codes: np.ndarray | None = None,
               protected: Collection[str] = frozenset()) -> ScreenResult:
        """Verdict for generated audio (``[T]`` or ``[C, T]``) and, when the generator made it, its codes;
        ``protected``: the indexed ids that block at their flag threshold."""
        return verdict_of(self.matches(audio, sample_rate, codes), self.thresholds, protected)

    def save(self, directory: str | Path) -> None:
        """A folder per method, then ``screener.json`` (written last: a directory without it is incomplete)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        for name, method in self.methods.items():
            (directory / name).mkdir(exist_ok=True)
            method.save(directory / name)
        manifest = {"assets": len(self), "thresholds": self.thresholds.to_dict(),
                    "methods": {name: {"assets": len(method), "version": method.version}
                                for name, method in self.methods.items()}}
        atomic_write_text(directory / _MANIFEST, json.dumps(manifest, indent=2, sort_keys=True))

    @classmethod
    def load(cls, directory: str | Path, thresholds: ScreenThresholds | None = None,
             methods: Sequence[type[ScreeningMethod]] = METHODS) -> Screener:
        """Reload a saved screener; ``thresholds`` (e.g. from the workspace settings) override the saved ones.
        ``FileNotFoundError`` unless every method in ``methods`` was saved there, at its current version."""
        directory = Path(directory)
        manifest = _manifest(directory)
        loaded = saved_methods(directory, methods)
        missing = [method.name for method in methods if method.name not in loaded]
        if missing:
            raise FileNotFoundError(f"{directory}: no {missing[0]} index of its current version")
        if thresholds is None:  # the saved ones, for these methods (the folder may hold more)
            names = ScreenThresholds.declared(methods).to_dict()
            thresholds = ScreenThresholds.declared(methods, **{name: value for name, value
                                                               in manifest["thresholds"].items() if name in names})
        screener = cls(thresholds, methods)
        screener.methods = loaded
        return screener


def saved_methods(directory: str | Path,
                  methods: Sequence[type[ScreeningMethod]] = METHODS) -> dict[str, ScreeningMethod]:
    """Those of ``methods`` that a complete saved screener holds at their current version, loaded (in
    ``methods``' order): what a newer screener can start from."""
    directory = Path(directory)
    saved = _manifest(directory)["methods"]
    return {method.name: method.load(directory / method.name) for method in methods
            if saved.get(method.name, {}).get("version") == method.version}


def _manifest(directory: Path) -> dict:
    path = directory / _MANIFEST
    if not path.exists():
        raise FileNotFoundError(f"{directory}: no complete screening index ({_MANIFEST} missing)")
    return json.loads(path.read_text())
