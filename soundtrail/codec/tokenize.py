"""Tokenize: encode accepted assets with the codec into a shard set, incrementally.

A shard set lives in ``shards/<codec_id>-<segment>s/`` of the workspace's storage (the workspace itself, or
``storage_uri``: :mod:`soundtrail.data.storage`). Planning compares the ledger with the
set's manifest:

- shards holding an asset that is no longer accepted (revoked by a takedown) are *stale*: they
  are rewritten without it and the old shard is marked superseded;
- accepted assets in no current shard are *pending*: they are grouped into new shards whose file
  name is a hash of (codec, assets), so a shard finished before a kill is found and reused;
- everything else is kept as is, which makes a re-run with nothing new a no-op.

A :class:`GroupEncoder` holds the codec and encodes group after group, decoding the next while it
encodes the current one (the tokenize flow keeps one per Ray actor); :func:`finalize_set` writes the
manifest last and records the shards in the ledger.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from soundtrail.audio import AudioError, load_mono
from soundtrail.codec.codecs import encode_segments, load_codec
from soundtrail.codec.quality import segment_quality
from soundtrail.data.location import Location
from soundtrail.data.shards import (
    CodecInfo,
    Segment,
    ShardEntry,
    iter_segments,
    manifest_entries,
    read_codec_info,
    write_manifest,
    write_shard,
)
from soundtrail.provenance.ledger import Ledger, utc_now
from soundtrail.provenance.records import AssetRecord


@dataclass
class TokenizePlan:
    """What a tokenize run has to do for one shard set."""

    set_dir: Location
    codec_path: str  # a local folder (fetched from storage by the planner)
    codec_id: str
    keep: list[dict[str, Any]]
    stale: list[dict[str, Any]]
    groups: list[list[AssetRecord]]
    accepted: list[str]  # asset ids a stale shard may keep

    @property
    def nothing_to_do(self) -> bool:
        return not self.stale and not self.groups


@dataclass
class GroupResult:
    """A finished shard, plus the segments that were left out and why."""

    entry: dict[str, Any] | None
    skipped: list[dict[str, str]] = field(default_factory=list)


def shard_set_dir(shards_root: Location, codec_id: str, segment_s: float) -> Location:
    return shards_root / f"{codec_id}-{segment_s:g}s"


def plan_tokenize(ledger: Ledger, shards_root: Location, codec_path: str, codec_id: str, segment_s: float,
                  assets_per_shard: int) -> TokenizePlan:
    """Compare the ledger's accepted assets with the shard set's manifest.

    An asset counts as accepted only when its own events say so: a row relabelled in the table alone
    stops the plan with :class:`~soundtrail.provenance.ledger.ProjectionMismatch` naming it.
    """
    set_dir = shard_set_dir(shards_root, codec_id, segment_s)
    accepted = {row["id"]: row for row in ledger.verified_rows("assets", status="accepted")}
    keep, stale, covered = [], [], set()
    for entry in manifest_entries(set_dir):
        if set(entry.asset_ids) <= set(accepted):
            keep.append(asdict(entry))
            covered.update(entry.asset_ids)
        else:
            stale.append(asdict(entry))
    for entry in stale:
        covered.update(asset for asset in entry["asset_ids"] if asset in accepted)
    pending = [AssetRecord.from_row(accepted[asset_id]) for asset_id in sorted(set(accepted) - covered)]
    groups = [pending[start:start + assets_per_shard] for start in range(0, len(pending), assets_per_shard)]
    return TokenizePlan(set_dir, codec_path, codec_id, keep, stale, groups, sorted(accepted))


def unchanged_summary(plan: TokenizePlan) -> dict[str, Any] | None:
    """What a tokenize run reports for a shard set that needs nothing done; None when the plan has work."""
    if not plan.nothing_to_do or not plan.keep:
        return None
    return {"shard_set": plan.set_dir.name, "shards": len(plan.keep), "new_shards": 0, "superseded": 0,
            "rows": sum(entry["rows"] for entry in plan.keep), "skipped": []}


def group_file_name(codec_id: str, asset_ids: list[str]) -> str:
    digest = hashlib.sha256(f"{codec_id}|{','.join(sorted(asset_ids))}".encode()).hexdigest()[:16]
    return f"part-{digest}.parquet"


@dataclass
class _DecodedGroup:
    """A group's audio cut into codec windows, ready to encode; or the shard a run before a kill finished."""

    path: Location
    finished: dict[str, Any] | None = None
    segments: list[Segment] = field(default_factory=list)
    windows: list[np.ndarray] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)


class GroupEncoder:
    """One loaded codec turning groups of assets into shards, one group after another.

    Loading the codec for every group, then decoding, then encoding leaves the encoder idle while files
    decode. Here the codec stays loaded for as many groups as the caller sends, and :meth:`encode` hands
    the group that comes next (``then``) to a background thread, which decodes and cuts it into windows
    while this group is encoded (libsndfile and the resampler's matrix products release the GIL). Audio
    stays inside this object: callers pass asset records in and get :class:`GroupResult` records out, so a
    Ray actor wrapping it moves only those.

    A group's shard is computed exactly as a fresh encoder would compute it (same windows, same batches),
    so which encoder, and how many, encode a set changes no byte of it.
    """

    def __init__(self, codec_path: str, set_dir: Location, segment_s: float, batch_size: int) -> None:
        self.codec = load_codec(Path(codec_path))
        self.set_dir = set_dir
        self.segment_s = segment_s
        self.batch_size = batch_size
        self.info = CodecInfo(self.codec.codec_id, self.codec.sample_rate, float(self.codec.frame_rate),
                              self.codec.num_codebooks, self.codec.codebook_size)
        self._decoder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tokenize-decode")
        self._ahead: dict[Location, Future[_DecodedGroup]] = {}

    def __enter__(self) -> GroupEncoder:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._decoder.shutdown(wait=True, cancel_futures=True)

    def encode(self, assets: list[AssetRecord], then: list[AssetRecord] | None = None) -> GroupResult:
        """Write the shard of ``assets`` (or find it finished) while ``then``, the next group, is decoded."""
        ahead = self._ahead.pop(self._shard_path(assets), None)
        decoded = ahead.result() if ahead is not None else self._decode(assets)
        if then:
            self._ahead.setdefault(self._shard_path(then), self._decoder.submit(self._decode, then))
        if decoded.finished is not None:
            return GroupResult(decoded.finished)
        if not decoded.segments:
            return GroupResult(None, decoded.skipped)
        codes = encode_segments(self.codec, np.stack(decoded.windows), batch_size=self.batch_size)
        for segment, segment_codes in zip(decoded.segments, codes, strict=True):
            frames = int(np.ceil(segment.duration_s * self.codec.frame_rate))
            segment.codes = segment_codes[:, :frames]
        return GroupResult(asdict(write_shard(decoded.path, decoded.segments, self.info)), decoded.skipped)

    def _shard_path(self, assets: list[AssetRecord]) -> Location:
        return self.set_dir / group_file_name(self.codec.codec_id, [asset.id for asset in assets])

    def _decode(self, assets: list[AssetRecord]) -> _DecodedGroup:
        """Decode, segment and quality-check a group; an undecodable asset is skipped with its reason."""
        path = self._shard_path(assets)
        if path.is_file():  # finished before a kill: reuse it
            rows = list(iter_segments(path, columns=["asset_id"]))
            entry = ShardEntry(path.name, path.sha256(), len(rows), sorted({row["asset_id"] for row in rows}))
            return _DecodedGroup(path, finished=asdict(entry))
        group = _DecodedGroup(path)
        rate = self.codec.sample_rate
        window = int(round(self.segment_s * rate))
        for asset in assets:
            try:
                audio = load_mono(asset.path, rate)
            except (AudioError, OSError) as exc:
                group.skipped.append({"asset_id": asset.id, "segment": "*", "reason": f"cannot decode: {exc}"})
                continue
            for index, start in enumerate(range(0, len(audio), window)):
                piece = audio[start:start + window]
                reason = segment_quality(piece, rate, min_seconds=min(1.0, self.segment_s / 2))
                if reason:
                    group.skipped.append({"asset_id": asset.id, "segment": str(index), "reason": reason})
                    continue
                group.windows.append(np.pad(piece, (0, window - len(piece))))
                group.segments.append(Segment(
                    segment_id=f"{asset.id}:{index}", asset_id=asset.id, start_s=start / rate,
                    duration_s=len(piece) / rate, codes=np.empty((0, 0), np.int16), text=asset.caption,
                    tags=list(asset.tags), license=asset.license, rights_holder=asset.rights_holder))
        return group


def rewrite_without(set_dir: Location, entry: dict[str, Any], allowed: set[str]) -> dict[str, Any] | None:
    """Rewrite a stale shard keeping only rows of still-accepted assets (None if nothing is left)."""
    source = set_dir / entry["file"]
    rows = [row for row in iter_segments(source) if row["asset_id"] in allowed]
    if not rows:
        return None
    info = read_codec_info(source)
    segments = [Segment(**{key: row[key] for key in ("segment_id", "asset_id", "start_s", "duration_s", "codes",
                                                      "text", "tags", "license", "rights_holder")})
                for row in rows]
    kept_assets = sorted({row["asset_id"] for row in rows})
    return asdict(write_shard(set_dir / group_file_name(info.codec_id, kept_assets), segments, info))


def finalize_set(ledger: Ledger, plan: TokenizePlan, new_entries: list[dict[str, Any]], segment_s: float,
                 run_id: str | None) -> dict[str, Any]:
    """Write the manifest last, record current and superseded shards, delete superseded files."""
    set_dir = plan.set_dir
    entries = [ShardEntry(**entry) for entry in plan.keep + new_entries]
    described_by = [set_dir / entry.file for entry in entries] + [set_dir / entry["file"] for entry in plan.stale]
    if not described_by:
        raise ValueError("no accepted audio produced any segment: nothing to write")
    info = read_codec_info(described_by[0])  # an emptied set (all revoked) still says which codec it is for
    manifest = write_manifest(set_dir, entries, info, {"segment_s": segment_s})
    with ledger.writer(run_id=run_id) as writer:
        for entry in entries:
            where = (set_dir / entry.file).reference
            known = writer.get("shards", entry.sha256)
            writer.record("shards", entry.sha256, {
                "shard_set": set_dir.name, "status": "current", "path": where, "rows": entry.rows,
                "asset_ids": entry.asset_ids, "codec_id": plan.codec_id, "created_at": utc_now(),
            } if known is None else {"status": "current", **({"path": where} if known["path"] != where else {})},
                "shard.written")  # the same bytes written elsewhere (a storage_uri set later): recorded where
        current_files = {entry.file for entry in entries}
        for entry in plan.stale:
            writer.record("shards", entry["sha256"], {"status": "superseded"}, "shard.superseded")
            if entry["file"] not in current_files:
                (set_dir / entry["file"]).delete()
    return {"shard_set": set_dir.name, "manifest": manifest.reference, "shards": len(entries),
            "rows": sum(entry.rows for entry in entries), "new_shards": len(new_entries),
            "superseded": len(plan.stale)}
