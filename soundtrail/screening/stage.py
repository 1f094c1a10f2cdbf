"""The workspace's screening index: the training corpus as the release gate's :class:`Screener` sees it.

What goes in: every *accepted* asset's decoded audio (for the registered methods that read audio) and the first
codebook of its codes read back from the *current* shards (for those that read codes); and every *protected*
work, one that must never come out of a generator: each revoked asset (taken down, or revoked for another reason)
and each blocklisted work. A protected work is indexed by its audio when its file is still where the ledger
recorded it, with the bytes it recorded (a revoked asset's usually is), else by the Chromaprint fingerprint the
ledger stored at ingest (a blocklisted reference's file may be gone): Chromaprint always, the audio methods
(landmarks too) only with the audio, the token method never (its codes leave the current shards with the
takedown). A match of a protected work blocks at its method's flag level, and the evidence names the takedown or
blocklist entry (:attr:`Screening.protected`).

A cached copy lives under ``workspace/index/``, named by a key that hashes exactly those inputs and the methods
that index them::

    index/screen-<key>/          <method>/ (one folder per registered method)  screener.json (written last)
    key = sha256({accepted asset ids, protected works (id, audio there or not), current shard sha256s,
                  token codec id, index format, method versions})

Ingesting or taking down an asset, re-tokenizing, or registering a method or changing what one stores, changes
the key, so the next screen brings the index up to date and never screens against a corpus that no longer exists.
Audio analysis is the cost, so new works are added to the previous index's audio methods (a taken-down asset is
already in them and stays); only an asset leaving both the corpus and the protected works rebuilds them; the
methods that read codes are re-read from the shards every time. A build is written to a temporary folder and
renamed into place whole, so a killed build leaves nothing that looks finished; older indexes are removed once the
new one is in place.

Shard segments are ``segment_s`` windows encoded one at a time, and the tokenizer may skip a window (silence,
a short tail). An asset's codes are laid back on its own frame axis with a code no codec emits in the gaps, so
token matches report true asset offsets and no n-gram spans a skipped window.

The token method compares codes, so a query must be encoded with the codec that made the indexed shards. That
codec is taken from the shards themselves (the newest codec with current shards), not from whatever codec was
trained most recently; with no current shards the methods that read codes are off and :attr:`Screening.note`
says so.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from soundtrail.atomic import sha256_file
from soundtrail.audio import AudioError, decode, load_mono
from soundtrail.codec.codecs import encode_segments, load_codec
from soundtrail.config import ConfigError
from soundtrail.data.location import Location
from soundtrail.data.shards import iter_segments, read_codec_info
from soundtrail.data.storage import Storage
from soundtrail.provenance.ledger import Ledger
from soundtrail.screening.chromaprint import decode_fingerprint
from soundtrail.screening.method import Content, ScreeningMethod
from soundtrail.screening.registry import METHODS
from soundtrail.screening.screener import Screener, ScreenResult, ScreenThresholds, saved_methods
from soundtrail.workspace import Workspace

INDEX_DIR = "index"
INDEX_PREFIX = "screen-"
INDEX_FORMAT = 8  # bump when what goes into the index changes beyond a method's own files (each method versions
#                   those), so old caches are not reused


class ScreeningError(RuntimeError):
    """The screening index cannot be built (an accepted asset is unreadable): the gate must not pass audio."""


@dataclass(frozen=True)
class TokenSource:
    """The codec whose current shards feed the token method, and those shards."""

    codec_id: str
    codec_path: str  # the ledger's reference: fetched from storage when a query needs the codec
    frame_rate: float
    codebook_size: int
    shards: tuple[Location, ...]


@dataclass(frozen=True)
class ProtectedWork:
    """A work that must never come out of a generator, and the ledger entry that says so."""

    id: str  # the asset id, or the blocklist id
    kind: Literal["takedown", "revoked", "blocklist"]  # "revoked": an asset revoked without a takedown record
    entry: str  # the takedown id, the asset id, or the blocklist id
    reason: str
    path: str | None  # its audio as recorded, if the file is there
    sha256: str | None  # the bytes recorded for it
    fingerprint: str | None  # its Chromaprint items as the ledger stored them (base64 of little-endian uint32)

    def evidence(self) -> dict[str, str]:
        """What a block names: the work and the entry protecting it."""
        entry = {"takedown": "takedown_id", "revoked": "asset_id", "blocklist": "blocklist_id"}[self.kind]
        return {"work": self.id, "protected_by": self.kind, entry: self.entry, "reason": self.reason}


@dataclass(frozen=True)
class CorpusSnapshot:
    """What the index is built from, read from the ledger in one go."""

    assets: dict[str, str]  # accepted asset id -> path
    shard_sha256s: tuple[str, ...]  # every current shard
    tokens: TokenSource | None
    note: str | None  # why the token method is off, when it is
    protected: dict[str, ProtectedWork] = field(default_factory=dict)

    @property
    def key(self) -> str:
        document = {"format": INDEX_FORMAT, "assets": sorted(self.assets), "shards": sorted(self.shard_sha256s),
                    "protected": sorted([work.id, work.path is not None] for work in self.protected.values()),
                    "token_codec": self.tokens.codec_id if self.tokens else None,
                    "methods": {method.name: method.version for method in METHODS}}
        return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()[:24]


@dataclass
class Screening:
    """A screen's result plus what it was screened against: the evidence the release gate records."""

    result: ScreenResult
    index_key: str
    assets: int
    methods: list[str]
    note: str | None = None
    thresholds: dict[str, float] = field(default_factory=dict)
    protected: list[dict[str, str]] = field(default_factory=list)  # the protected works matched, with their entries
    protected_works: int = 0  # how many were screened against

    def to_dict(self) -> dict[str, Any]:
        """The CLI's ``{"verdict", "matches"}`` plus the index key, asset count, methods run, any note and the
        protected works matched."""
        return {**self.result.to_dict(), "index": self.index_key, "assets": self.assets, "methods": self.methods,
                "note": self.note, "thresholds": self.thresholds, "protected": self.protected,
                "protected_works": self.protected_works}


def screen_thresholds(workspace: Workspace, methods: Sequence[type[ScreeningMethod]] = METHODS) -> ScreenThresholds:
    """The declared thresholds with each one that ``[screening]`` in ``soundtrail.toml`` names taken from it.

    The settings check only the keys' form (``<name>_flag``, ``<name>_block``): one naming no registered method is
    a :class:`ConfigError` here.
    """
    try:
        return ScreenThresholds.declared(methods, **workspace.settings.screening.overrides())
    except ValueError as exc:
        raise ConfigError(f"[screening] {exc}") from exc


def corpus_snapshot(ledger: Ledger, storage: Storage) -> CorpusSnapshot:
    """Accepted assets and current shards as the ledger has them now (the shards where ``storage`` keeps them)."""
    assets = {row["id"]: row["path"] for row in ledger.rows("assets", status="accepted")}
    shards = ledger.rows("shards", status="current")
    by_codec: dict[str, list[str]] = defaultdict(list)
    for row in shards:
        by_codec[row["codec_id"]].append(row["path"])
    codecs = [ledger.get("codecs", codec_id) for codec_id in by_codec]
    codecs = [row for row in codecs if row is not None and row.get("path")]
    tokens, note = None, None
    if not shards:
        note = "no current token shards: token method off (run `soundtrail tokenize`)"
    elif not codecs:
        note = "the codec of the current shards is not in the ledger: token method off"
    else:
        newest = max(codecs, key=lambda row: row.get("created_at") or "")
        stored = tuple(storage.locate(reference) for reference in sorted(by_codec[newest["id"]]))
        info = read_codec_info(stored[0])
        tokens = TokenSource(newest["id"], newest["path"], info.frame_rate, info.codebook_size, stored)
    return CorpusSnapshot(assets, tuple(row["id"] for row in shards), tokens, note, protected_works(ledger))


def protected_works(ledger: Ledger) -> dict[str, ProtectedWork]:
    """Every revoked asset and blocklisted work, read through the chain (a row edited behind its back, say a
    takedown undone in the table, raises instead of quietly leaving the screen)."""
    takedowns = {row["asset_id"]: row for row in ledger.verified_rows("takedowns")}
    revoked = {row["id"]: row for row in ledger.verified_rows("assets", status="revoked")}
    revoked |= {row["id"]: row for row in ledger.verified_rows("assets", ids=takedowns)}
    blocklist = ledger.verified_rows("blocklist")
    fingerprints = {row["id"]: row["items"] for row in
                    ledger.verified_rows("fingerprints", ids=[*revoked, *(row["id"] for row in blocklist)])}
    works: dict[str, ProtectedWork] = {}
    for asset_id, row in revoked.items():
        takedown = takedowns.get(asset_id)
        kind, entry = ("takedown", takedown["id"]) if takedown else ("revoked", asset_id)
        reason = (takedown or {}).get("reason") or row.get("reason") or "revoked"
        works[asset_id] = ProtectedWork(asset_id, kind, entry, reason, _present(row.get("path")), row.get("sha256"),
                                        fingerprints.get(asset_id))
    for row in blocklist:
        works[row["id"]] = ProtectedWork(row["id"], "blocklist", row["id"], row.get("reason") or "protected work",
                                         _present(row.get("path")), row.get("sha256"), fingerprints.get(row["id"]))
    return works


def _present(path: str | None) -> str | None:
    return path if path and Path(path).is_file() else None


def build_screener(snapshot: CorpusSnapshot, thresholds: ScreenThresholds,
                   previous: Mapping[str, ScreeningMethod] | None = None) -> Screener:
    """Index every accepted asset's and protected work's audio in the methods that read audio (a protected work
    without its audio by its stored fingerprint where a method can), and the current shards' codes in the methods
    that read codes.

    A method that reads audio is taken from ``previous`` (the methods of the last index built) and extended when
    every work in it is still accepted or protected (a new ingest or a takedown, the common changes); otherwise
    it is rebuilt. Methods that read codes are always rebuilt: reading codes back from shards is cheap next to
    analysing audio. Each work is decoded once, for all the methods that lack it.
    """
    screener = Screener(thresholds, frame_rate=snapshot.tokens.frame_rate if snapshot.tokens else None)
    accepted = set(snapshot.assets)
    for name, method in (previous or {}).items():
        if method.reads == "audio" and name in screener.methods and \
                set(method.asset_ids) <= accepted | set(snapshot.protected):
            screener.methods[name] = method
    by_audio = [method for method in screener.methods.values() if method.reads == "audio"]
    indexed = {method.name: set(method.asset_ids) for method in by_audio}
    for work_id in sorted(accepted | set(snapshot.protected)):
        lacking = [method for method in by_audio if work_id not in indexed[method.name]]
        if not lacking:
            continue
        if work_id in snapshot.protected:
            content = _protected_content(snapshot.protected[work_id])
        else:
            path = snapshot.assets[work_id]
            try:
                audio, rate = decode(path)
            except (AudioError, OSError) as exc:
                raise ScreeningError(f"screening index: accepted asset {work_id} ({path}) cannot be decoded: {exc}; "
                                     "restore the file or take the asset down") from exc
            content = Content.of(audio, rate)
        for method in lacking:
            if method.indexes(content):
                method.add(work_id, content)
    by_codes = [method for method in screener.methods.values() if method.reads == "codes"]
    if snapshot.tokens and by_codes:
        for asset_id, codes in sorted(asset_codes(snapshot.tokens, accepted).items()):
            for method in by_codes:
                method.add(asset_id, Content(codes=codes))
    return screener


def _protected_content(work: ProtectedWork) -> Content:
    """A protected work's audio when its file still holds the bytes the ledger recorded, else its fingerprint."""
    if work.path is not None and (work.sha256 is None or sha256_file(work.path) == work.sha256):
        try:
            audio, rate = decode(work.path)
            return Content.of(audio, rate)
        except (AudioError, OSError):
            pass
    items = decode_fingerprint(work.fingerprint) if work.fingerprint else None
    return Content(fingerprint=items)


def asset_codes(source: TokenSource, accepted: set[str]) -> dict[str, np.ndarray]:
    """First-codebook codes of each accepted asset, segments placed at their frame offsets.

    Frames no segment covers hold ``codebook_size``, a code the codec never emits, so no n-gram bridges them.
    """
    pieces: dict[str, list[tuple[int, np.ndarray]]] = defaultdict(list)
    for shard in source.shards:
        for row in iter_segments(shard, columns=["asset_id", "start_s", "codes"]):
            if row["asset_id"] in accepted:
                pieces[row["asset_id"]].append((int(round(row["start_s"] * source.frame_rate)), row["codes"][0]))
    laid_out = {}
    for asset_id, segments in pieces.items():
        length = max(start + len(codes) for start, codes in segments)
        frames = np.full(length, source.codebook_size, dtype=np.int64)
        for start, codes in segments:
            frames[start:start + len(codes)] = codes
        laid_out[asset_id] = frames
    return laid_out


@dataclass
class ScreeningIndex:
    """A loaded (or freshly built) screener, the snapshot it stands for and where it is cached."""

    screener: Screener
    snapshot: CorpusSnapshot
    directory: Path
    storage: Storage

    @property
    def methods(self) -> list[str]:
        """The methods a screen runs when it has the query's codes: those that read codes only if any are indexed."""
        return [name for name, method in self.screener.methods.items() if method.reads == "audio" or len(method)]

    def query_codes(self, audio_path: Path) -> np.ndarray | None:
        """The query's ``[K, F]`` codes from the shards' codec, or None when no method that reads codes is on."""
        if self.snapshot.tokens is None or not any(self.screener.methods[name].reads == "codes"
                                                   for name in self.methods):
            return None
        codec = load_codec(self.storage.fetch(self.snapshot.tokens.codec_path))
        audio = load_mono(audio_path, codec.sample_rate)
        return encode_segments(codec, audio[None, :], batch_size=1)[0]

    def screen(self, audio_path: Path, codes: np.ndarray | None = None) -> Screening:
        """Screen a file; ``codes`` (from the generator, same codec as the shards) skip re-encoding it."""
        audio, rate = decode(audio_path)
        if codes is None:
            codes = self.query_codes(audio_path)
        protected = self.snapshot.protected
        result = self.screener.screen(audio, rate, codes, protected=set(protected))
        methods = [name for name in self.methods if codes is not None or self.screener.methods[name].reads == "audio"]
        matched = sorted({match.asset_id for match in result.matches} & set(protected))
        return Screening(result, self.snapshot.key, len(self.snapshot.assets), methods, self.snapshot.note,
                         self.screener.thresholds.to_dict(), [protected[work].evidence() for work in matched],
                         len(protected))


def screening_index(workspace: Workspace, ledger: Ledger | None = None) -> ScreeningIndex:
    """The index for the corpus as it is now: loaded from ``workspace/index/`` or built and cached there."""
    storage = Storage.of(workspace)
    if ledger is None:
        with Ledger(workspace.ledger_url) as own:
            snapshot = corpus_snapshot(own, storage)
    else:
        snapshot = corpus_snapshot(ledger, storage)
    thresholds = screen_thresholds(workspace)
    root = workspace.path(INDEX_DIR)
    directory = root / f"{INDEX_PREFIX}{snapshot.key}"
    try:
        screener = Screener.load(directory, thresholds)
    except FileNotFoundError:
        shutil.rmtree(directory, ignore_errors=True)  # an index folder without its manifest is unfinished
        screener = build_screener(snapshot, thresholds, _previous(root))
        _save_whole(screener, directory)
    _remove_other_indexes(root, keep=directory)
    return ScreeningIndex(screener, snapshot, directory, storage)


def screen_file(workspace: Workspace, path: str | Path, codes: np.ndarray | None = None) -> ScreenResult:
    """Verdict and matches for one audio file against the workspace's training corpus."""
    return screening_index(workspace).screen(Path(path), codes).result


def _save_whole(screener: Screener, directory: Path) -> None:
    """Save into a sibling temporary folder and rename it into place; a concurrent build that won keeps its copy."""
    staging = Path(tempfile.mkdtemp(prefix=f".tmp-{directory.name}.", dir=directory.parent))
    try:
        screener.save(staging)
        try:
            os.rename(staging, directory)
        except OSError:
            if not directory.is_dir():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _previous(root: Path) -> dict[str, ScreeningMethod]:
    """The methods of the newest complete index in ``root`` (normally the only one) saved at their current
    version, to extend; none if there is no such index."""
    for path in sorted(root.glob(f"{INDEX_PREFIX}*"), key=lambda p: p.stat().st_mtime, reverse=True):
        try:
            return saved_methods(path)
        except (OSError, ValueError, KeyError):
            continue
    return {}


def _remove_other_indexes(root: Path, keep: Path) -> None:
    for path in root.glob(f"{INDEX_PREFIX}*"):
        if path != keep and path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
