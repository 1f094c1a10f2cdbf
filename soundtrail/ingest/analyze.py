"""Ingest, step 1: look at one file and say everything the ledger needs to know about it.

This runs on Ray workers, one batch of files per Prefect task, and touches no database: it
returns small :class:`FileAnalysis` records (hashes, header facts, licence, Chromaprint) that
the driver then decides on in a fixed order (:mod:`soundtrail.ingest.catalog`). Keeping the
decision out of the workers makes the outcome independent of scheduling, so a killed run,
re-run, ends exactly where an uninterrupted one would.

Every failure becomes a ``problem`` string on the record, never an exception that would
take the rest of the batch down with it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from collections.abc import Collection, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xxhash

from soundtrail.atomic import sha256_file
from soundtrail.audio import AudioError, AudioLimitError, AudioStream, DecodeLimits, mono_frames
from soundtrail.config import IngestSettings, LicenseSettings
from soundtrail.ingest.consent import (
    ConsentError,
    TrainingStatement,
    embedded_training_statements,
    expired,
    training_refusal,
    utc_today,
)
from soundtrail.ingest.manifest import InputFile, ManifestResult, display_path, unattached_problems
from soundtrail.ingest.tags import read_tags
from soundtrail.licenses import LicensePolicy, combine_licenses
from soundtrail.screening.chromaprint import chromaprint_blocks, encode_fingerprint


@dataclass
class FileAnalysis:
    """What one file is; JSON-plain so it travels between Ray workers and the driver."""

    path: str
    asset_id: str
    problem: str | None = None
    sha256: str | None = None
    pcm_hash: str | None = None  # see PcmHash
    duration_s: float | None = None
    sample_rate: int | None = None
    channels: int | None = None
    container: str | None = None
    codec: str | None = None
    file_tags: dict[str, str] = field(default_factory=dict)
    tag_licenses: list[str] = field(default_factory=list)
    license: str | None = None
    license_problem: str | None = None
    rights_holder: str | None = None
    attribution: str | None = None
    source: str | None = None
    title: str | None = None
    description: str | None = None
    tags: list[str] = field(default_factory=list)
    manifest: str | None = None
    manifest_line: int | None = None
    fingerprint: str | None = None
    ai_training: str | None = None  # the strictest statement found (see soundtrail.ingest.consent)
    ai_training_by: str | None = None  # who stated it: the manifest line, or the C2PA assertion and manifest
    license_expires: str | None = None  # ISO date from the manifest row: the last day the licence holds
    size_bytes: int | None = None
    mtime_ns: int | None = None
    known: bool = False  # the bytes hashed to one the ledger already decided at this path: not decoded

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def asset_id_for(path: Path, sha256: str | None) -> str:
    """Stable id of a file at a place: the same bytes at the same path are the same asset.

    An exact copy at another path gets its own id (and is then recorded as a duplicate);
    a file that could not be read is identified by its path alone.
    """
    key = f"{sha256 or 'unreadable'}:".encode() + os.fsencode(path)  # the name's bytes, valid UTF-8 or not
    return hashlib.sha256(key).hexdigest()[:16]


class PcmHash:
    """Identity of the decoded audio (float32 frames, interleaved), to catch the same PCM in another container.

    Fed block by block in file order, it equals the hash of the whole decoded array at once. XXH3-128 rather than
    SHA-256: it only has to tell identical sample data apart (a collision could at worst mark a file a duplicate of
    another, never admit one), and SHA-256 over the decoded samples cost more than decoding a WAV. The file's
    bytes, the identity an audit relies on, keep their SHA-256.
    """

    def __init__(self) -> None:
        self._state = xxhash.xxh3_128()

    def update(self, frames: np.ndarray) -> None:
        self._state.update(memoryview(np.ascontiguousarray(frames)))

    def hexdigest(self) -> str:
        return "xxh3-128:" + self._state.hexdigest()


def analyze_file(item: InputFile, ingest: IngestSettings, licenses: LicenseSettings, policy: LicensePolicy,
                 manifest: str | None = None, today: dt.date | None = None,
                 known_sha256: Collection[str] = ()) -> FileAnalysis:
    """Hash, probe, decode, check, tag-read, licence- and consent-check and fingerprint one file.

    A file whose bytes hash to one of ``known_sha256`` (the ledger's standing decisions at this path) stops there.
    """
    path = Path(item.path)
    entry = item.entry
    analysis = FileAnalysis(path=display_path(path), asset_id=asset_id_for(path, None))
    if entry is not None:
        analysis.rights_holder = entry.rights_holder
        analysis.attribution = entry.attribution
        analysis.source = entry.source
        analysis.title = entry.title
        analysis.description = entry.description
        analysis.tags = list(entry.tags)
        analysis.manifest = display_path(manifest) if manifest else None
        analysis.manifest_line = entry.line
        analysis.license_expires = entry.license_expires
        if entry.ai_training:
            analysis.ai_training = entry.ai_training
            analysis.ai_training_by = manifest_row(analysis.manifest, entry.line)
    if item.problem:
        analysis.problem = item.problem
        return analysis
    try:
        _inspect_audio(path, analysis, ingest, known_sha256)
    except AudioLimitError as exc:
        analysis.problem = f"{exc} ([ingest] {exc.limit})"
        return analysis
    except (AudioError, OSError) as exc:
        analysis.problem = str(exc)
        return analysis
    if analysis.known:
        return analysis
    _check_license(analysis, entry.license if entry else None, licenses, policy)
    _check_consent(path, analysis, today or utc_today())
    return analysis


def _inspect_audio(path: Path, analysis: FileAnalysis, ingest: IngestSettings, known_sha256: Collection[str]) -> None:
    """Header (and its limits) first, so an oversized file costs nothing more; then bytes, tags, and one pass of
    block decoding that hashes, measures and fingerprints every block as it comes."""
    stat = path.stat()
    analysis.size_bytes, analysis.mtime_ns = stat.st_size, stat.st_mtime_ns
    if stat.st_size == 0:
        raise AudioError("empty file (0 bytes)")
    with AudioStream(path, DecodeLimits(ingest.max_duration_s, ingest.max_decoded_mb)) as stream:
        header = stream.info
        analysis.sha256 = sha256_file(path)
        analysis.asset_id = asset_id_for(path, analysis.sha256)
        if analysis.sha256 in known_sha256:
            analysis.known = True
            return
        file_tags = read_tags(path, max_tag_bytes=ingest.max_tag_bytes)
        analysis.file_tags = dict(file_tags.raw)
        if file_tags.notes:  # oversized or unreadable tag fields: kept as evidence beside the tags
            analysis.file_tags["soundtrail:notes"] = "; ".join(file_tags.notes)[:1000]
        analysis.tag_licenses = list(file_tags.license_candidates)
        if file_tags.oversized:
            raise AudioError(f"oversized tag block: {file_tags.oversized}")
        analysis.title = analysis.title or file_tags.title
        pcm = PcmHash()
        items = chromaprint_blocks(_hashed_mono_blocks(stream, pcm), header.sample_rate)
    analysis.sample_rate = header.sample_rate
    analysis.channels = header.channels
    analysis.duration_s = round(stream.frames_read / header.sample_rate, 6)
    analysis.container, analysis.codec = header.container, header.codec
    if analysis.duration_s < ingest.min_duration_s:
        raise AudioError(f"too short: {analysis.duration_s:.2f} s is under the {ingest.min_duration_s:g} s minimum")
    level = stream.level_dbfs
    if level < ingest.silence_dbfs:
        raise AudioError("digital silence" if level == float("-inf") else f"silent: RMS {level:.1f} dBFS")
    analysis.pcm_hash = pcm.hexdigest()
    analysis.fingerprint = encode_fingerprint(items)


def _hashed_mono_blocks(stream: AudioStream, pcm: PcmHash) -> Iterator[np.ndarray]:
    """The stream's blocks mixed down for Chromaprint, each fed to the PCM hash first."""
    for block in stream.blocks():
        pcm.update(block)
        yield mono_frames(block)


def _check_license(analysis: FileAnalysis, manifest_license: str | None, licenses: LicenseSettings,
                   policy: LicensePolicy) -> None:
    result = combine_licenses(manifest_license, analysis.tag_licenses, aliases=licenses.aliases)
    analysis.license = result.spdx_id
    decision = policy.decide(result)
    analysis.license_problem = None if decision.accepted else decision.reason


def _check_consent(path: Path, analysis: FileAnalysis, today: dt.date) -> None:
    """AI-training statements (the manifest row's, the file's C2PA assertions) and the licence's expiry: a refusal
    or an expired licence is a licence problem, beside any the licence itself has."""
    stated = [TrainingStatement(analysis.ai_training, analysis.ai_training_by or "")] if analysis.ai_training else []
    problems = []
    try:
        stated += embedded_training_statements(path)
    except ConsentError as exc:
        problems.append(str(exc))
    refusal = training_refusal(stated)
    if stated:
        shown = refusal or stated[0]
        analysis.ai_training, analysis.ai_training_by = shown.use, shown.stated_by
    if refusal:
        problems.insert(0, refusal.reason())
    if expired(analysis.license_expires, today):
        where = manifest_row(analysis.manifest, analysis.manifest_line)
        problems.append(f"licence expired on {analysis.license_expires} ({where})")
    if problems:
        analysis.license_problem = "; ".join(filter(None, [analysis.license_problem, *problems]))


def manifest_row(manifest: str | None, line: int | None) -> str:
    """Where a file's manifest statements come from, as reasons and consent records name it."""
    return f"{manifest or 'manifest'} line {line}"


def analyze_batch(items: list[InputFile], ingest: IngestSettings, licenses: LicenseSettings,
                  manifest: str | None = None, today: dt.date | None = None,
                  known: Mapping[str, Collection[str]] | None = None) -> list[dict[str, Any]]:
    """One Prefect task's work: every file analysed, none able to stop the others. ``today`` (UTC by default)
    decides which licences have expired; ``known`` maps a path to the sha256 values whose ledger decision at that
    path still stands."""
    results = []
    policy = LicensePolicy(allow=licenses.allow, deny=licenses.deny)
    known = known or {}
    for item in items:
        try:
            analysis = analyze_file(item, ingest, licenses, policy, manifest, today, known.get(str(item.path), ()))
        except Exception as exc:  # noqa: BLE001 - an unexpected failure quarantines this file only
            analysis = FileAnalysis(path=display_path(item.path), asset_id=asset_id_for(Path(item.path), None),
                                    problem=f"unexpected error while reading: {type(exc).__name__}: {exc}")
        results.append(analysis.as_dict())
    return results


def manifest_problem_analyses(manifest: ManifestResult, inputs: list[InputFile]) -> list[dict[str, Any]]:
    """Manifest rows that name no usable file (bad line, ``../`` path, missing file) as quarantine records."""
    records = []
    for problem in unattached_problems(manifest, inputs):
        where = f"{manifest.path}:{problem.line}"
        path = Path(problem.path) if problem.path is not None else Path(where)
        analysis = FileAnalysis(path=display_path(path), asset_id=asset_id_for(Path(where), None),
                                problem=problem.reason,
                                manifest=display_path(manifest.path), manifest_line=problem.line)
        records.append(analysis.as_dict())
    return records
