"""Token shards: Parquet files of codec codes, one row per audio segment, plus a set manifest.

Schema (zstd Parquet, loadable as-is by ``datasets.load_dataset("parquet", data_files=...)``)::

    segment_id  string          "<asset_id>:<index>"
    asset_id    string
    start_s     double          where the segment starts in the asset
    duration_s  double
    codes       list<list<int16>>   [codebook][frame]
    text        string          caption for conditioning
    tags        list<string>
    license     string          SPDX id
    rights_holder string

The codec's id, sample rate, frame rate, codebooks and codebook size sit in the schema
metadata, so a shard says how to decode itself. A shard set is a folder with the shards and a
``manifest.json`` (each shard's sha256 and row count) written last: a folder without a
manifest, or a shard not named in it, is unfinished work. Sets live in the workspace or in object storage
(``storage_uri``), so every function here takes a :class:`~soundtrail.data.location.Location`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from soundtrail.data.location import Location

MANIFEST = "manifest.json"
METADATA_KEY = b"soundtrail"

SCHEMA = pa.schema([
    pa.field("segment_id", pa.string(), nullable=False),
    pa.field("asset_id", pa.string(), nullable=False),
    pa.field("start_s", pa.float64(), nullable=False),
    pa.field("duration_s", pa.float64(), nullable=False),
    pa.field("codes", pa.list_(pa.list_(pa.int16())), nullable=False),
    pa.field("text", pa.string()),
    pa.field("tags", pa.list_(pa.string())),
    pa.field("license", pa.string()),
    pa.field("rights_holder", pa.string()),
])


@dataclass(frozen=True)
class CodecInfo:
    """How the codes in a shard were made; stored in the Parquet schema metadata."""

    codec_id: str
    sample_rate: int
    frame_rate: float
    num_codebooks: int
    codebook_size: int


@dataclass
class Segment:
    """One row of a shard."""

    segment_id: str
    asset_id: str
    start_s: float
    duration_s: float
    codes: np.ndarray  # int16 [K, F]
    text: str = ""
    tags: list[str] = field(default_factory=list)
    license: str | None = None
    rights_holder: str | None = None


@dataclass
class ShardEntry:
    """A finished shard as the set manifest lists it."""

    file: str
    sha256: str
    rows: int
    asset_ids: list[str]


def write_shard(path: Location, segments: Iterable[Segment], codec: CodecInfo) -> ShardEntry:
    """Write segments to ``path`` whole or not at all (:meth:`Location.write_bytes`) and describe the result."""
    rows = list(segments)
    for segment in rows:
        if segment.codes.ndim != 2 or segment.codes.shape[0] != codec.num_codebooks:
            raise ValueError(f"segment {segment.segment_id}: codes shape {segment.codes.shape} does not match "
                             f"{codec.num_codebooks} codebooks")
    schema = SCHEMA.with_metadata({METADATA_KEY: json.dumps(asdict(codec)).encode()})
    table = pa.Table.from_pydict({
        "segment_id": [s.segment_id for s in rows],
        "asset_id": [s.asset_id for s in rows],
        "start_s": [float(s.start_s) for s in rows],
        "duration_s": [float(s.duration_s) for s in rows],
        "codes": [np.asarray(s.codes, dtype=np.int16).tolist() for s in rows],
        "text": [s.text for s in rows],
        "tags": [list(s.tags) for s in rows],
        "license": [s.license for s in rows],
        "rights_holder": [s.rights_holder for s in rows],
    }, schema=schema)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    data = sink.getvalue().to_pybytes()
    path.write_bytes(data)
    return ShardEntry(file=path.name, sha256=hashlib.sha256(data).hexdigest(), rows=len(rows),
                      asset_ids=sorted({s.asset_id for s in rows}))


def read_codec_info(path: Location) -> CodecInfo:
    with path.open_input() as source:
        metadata = pq.read_schema(source).metadata or {}
    return CodecInfo(**json.loads(metadata[METADATA_KEY]))


def read_columns(path: Location, columns: list[str]) -> pa.Table:
    """Only ``columns`` of one shard (Parquet reads just their column chunks)."""
    with path.open_input() as source:
        return pq.read_table(source, columns=columns)


def write_manifest(set_dir: Location, entries: list[ShardEntry], codec: CodecInfo,
                   extra: dict[str, Any]) -> Location:
    """Write the set manifest last: the shard set is complete once this file exists."""
    document = {"codec": asdict(codec), "shards": [asdict(entry) for entry in sorted(entries, key=lambda e: e.file)],
                "rows": sum(entry.rows for entry in entries), **extra}
    path = set_dir / MANIFEST
    path.write_text(json.dumps(document, indent=2, sort_keys=True))
    return path


def read_manifest(set_dir: Location) -> dict[str, Any] | None:
    path = set_dir / MANIFEST
    return json.loads(path.read_text()) if path.is_file() else None


def manifest_entries(set_dir: Location) -> list[ShardEntry]:
    document = read_manifest(set_dir)
    return [ShardEntry(**entry) for entry in document["shards"]] if document else []


def verify_shards(set_dir: Location) -> list[str]:
    """Problems with a shard set: missing shards, changed bytes, wrong row counts (empty = fine)."""
    problems = []
    for entry in manifest_entries(set_dir):
        path = set_dir / entry.file
        if not path.is_file():
            problems.append(f"{entry.file}: missing")
        elif path.sha256() != entry.sha256:
            problems.append(f"{entry.file}: sha256 differs from the manifest")
        else:
            with path.open_input() as source:
                if pq.read_metadata(source).num_rows != entry.rows:
                    problems.append(f"{entry.file}: row count differs from the manifest")
    return problems


def shard_paths(set_dir: Location) -> list[Location]:
    """The finished shards of a set, in manifest order."""
    return [set_dir / entry.file for entry in manifest_entries(set_dir)]


def iter_segments(path: Location, columns: list[str] | None = None,
                  batch_size: int = 256) -> Iterator[dict[str, Any]]:
    """Rows of one shard as dicts, codes as int16 ``[K, F]`` arrays."""
    with path.open_input() as source:
        parquet = pq.ParquetFile(source)
        for batch in parquet.iter_batches(batch_size=batch_size, columns=columns):
            for row in batch.to_pylist():
                if "codes" in row:
                    row["codes"] = np.asarray(row["codes"], dtype=np.int16)
                yield row
