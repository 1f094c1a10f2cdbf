"""A file's own metadata tags: licence strings, copyright, title and artist, read through mutagen.

Where each format keeps the fields this module reads:

    field      Vorbis comment (FLAC, Ogg, Opus)  ID3 (MP3, WAV, AIFF)      MP4 (M4A)                      RIFF INFO
    licence    LICENSE / LICENCE                 WCOP (URL), TXXX:LICENSE  ----:com.apple.iTunes:LICENSE  (none)
    copyright  COPYRIGHT                         TCOP                      cprt                           ICOP
    title      TITLE                             TIT2                      ©nam                           INAM
    artist     ARTIST                            TPE1                      ©ART                           IART

The licence keys are matched without regard to case and in either spelling (LICENSE or LICENCE) in all three
tag formats.

Copyright notices are licence candidates too: "2024 Jane Doe, licensed under CC BY-SA 4.0" is a
common way to state one. mutagen does not read RIFF INFO, so a small bounded chunk walker does.

Tags are attacker-controlled input. The rules, so that one hostile file never stops a batch:

* a text field larger than ``max_tag_bytes`` is skipped, with a note naming its size, and so is
  every field once the fields read so far add up to ``max_tag_bytes`` (the licence may be lost,
  which quarantines the file as "missing licence" unless its manifest row states one);
* binary fields (cover art) are never read as text and do not count;
* any exception from mutagen on a corrupt file becomes empty tags with a note;
* ``raw`` keeps at most :data:`RAW_MAX_FIELDS` fields of at most :data:`RAW_VALUE_CHARS` characters,
  so the record stays small enough for the ledger and for JSON.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import mutagen
from mutagen.id3 import ID3

RAW_MAX_FIELDS = 64
RAW_VALUE_CHARS = 256
TEXT_VALUE_CHARS = 1000  # title, artist, copyright as kept on the record
_RIFF_MAX_CHUNKS = 4096

Role = Literal["license", "copyright", "title", "artist", "other"]

# Vorbis keys are case-insensitive and MP4 freeform names are matched folded too.
_ROLES: dict[str, Role] = {
    "license": "license", "licence": "license",
    "----:com.apple.itunes:license": "license", "----:com.apple.itunes:licence": "license",
    "copyright": "copyright", "cprt": "copyright", "icop": "copyright",
    "title": "title", "©nam": "title", "inam": "title",
    "artist": "artist", "©art": "artist", "iart": "artist",
}
_ID3_ROLES: dict[str, Role] = {"WCOP": "license", "TCOP": "copyright", "TIT2": "title", "TPE1": "artist"}
_BINARY_KEYS = {"metadata_block_picture", "coverart", "covr"}


@dataclass
class FileTags:
    """What a file says about itself; ``notes`` records anything skipped and why."""

    license_candidates: list[str] = field(default_factory=list)
    title: str | None = None
    artist: str | None = None
    copyright: str | None = None
    raw: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    oversized: str | None = None  # the first note about tags over the size limit: ingestion quarantines on it

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n / 1e3:.1f} kB" if n >= 1000 else f"{n} bytes"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class _Collector:
    """Accepts fields within the byte budget and sorts them into a :class:`FileTags`."""

    def __init__(self, max_tag_bytes: int) -> None:
        self.limit = max_tag_bytes
        self.used = 0
        self.over_budget = False
        self.tags = FileTags()

    def note(self, text: str) -> None:
        self.tags.notes.append(text)

    def oversize(self, text: str) -> None:
        self.note(text)
        self.tags.oversized = self.tags.oversized or text

    def add(self, key: str, value: str, role: Role) -> None:
        size = len(value.encode("utf-8", "replace"))
        if size > self.limit:
            self.oversize(f"tag {key} of {_size(size)} exceeds the {_size(self.limit)} limit; ignored")
            return
        if self.used + size > self.limit:
            if not self.over_budget:
                self.oversize(f"tags beyond {_size(self.limit)} in total ignored, from {key} on")
                self.over_budget = True
            return
        self.used += size
        value = value.strip()
        if not value:
            return
        tags = self.tags
        if role in ("license", "copyright") and value not in tags.license_candidates:
            tags.license_candidates.append(value)
        if role in ("copyright", "title", "artist") and getattr(tags, role) is None:
            setattr(tags, role, _clip(value, TEXT_VALUE_CHARS))
        if key in tags.raw:
            tags.raw[key] = _clip(f"{tags.raw[key]}; {value}", RAW_VALUE_CHARS)
        elif len(tags.raw) < RAW_MAX_FIELDS:
            tags.raw[key] = _clip(value, RAW_VALUE_CHARS)


def _id3_fields(tags: ID3) -> Iterator[tuple[str, str, Role]]:
    for frame in tags.values():
        fid = frame.FrameID
        if fid == "TXXX":
            role: Role = "license" if frame.desc.strip().lower() in ("license", "licence") else "other"
            yield f"TXXX:{frame.desc}", " / ".join(map(str, frame.text)), role
        elif hasattr(frame, "url"):
            yield fid, str(frame.url), _ID3_ROLES.get(fid, "other")
        elif hasattr(frame, "text"):  # text and comment frames; APIC, PRIV, GEOB carry bytes and are skipped
            key = fid if fid in _ID3_ROLES else frame.HashKey
            yield key, " / ".join(map(str, frame.text)), _ID3_ROLES.get(fid, "other")


def _mapping_fields(tags: Any) -> Iterator[tuple[str, str, Role]]:
    """Vorbis comments, MP4 atoms, APEv2: a mapping from key to a list of values (or one value)."""
    for key in tags.keys():  # noqa: SIM118 - iterating a Vorbis comment yields (key, value) pairs, not keys
        folded = key.lower()
        if folded in _BINARY_KEYS:
            continue
        values = tags[key]
        for value in values if isinstance(values, list) else [values]:
            if isinstance(value, bytes):  # MP4 freeform atoms hold UTF-8 bytes
                value = value.decode("utf-8", "replace")
            yield key, str(value), _ROLES.get(folded, "other")


def _riff_info(path: Path, collector: _Collector) -> None:
    """Read a WAV file's ``LIST``/``INFO`` chunk by seeking over the others (audio data is never read)."""
    with open(path, "rb") as handle:
        head = handle.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:] != b"WAVE":
            return
        position = 12
        for _ in range(_RIFF_MAX_CHUNKS):
            handle.seek(position)
            header = handle.read(12)
            if len(header) < 8:
                return
            chunk_id, size = header[:4], int.from_bytes(header[4:8], "little")
            if chunk_id == b"LIST" and header[8:12] == b"INFO":
                if size > collector.limit:
                    collector.oversize(f"RIFF INFO chunk of {_size(size)} exceeds the {_size(collector.limit)} limit; "
                                   "ignored")
                elif size > 4:  # a smaller size would make read() run to the end of the file
                    handle.seek(position + 12)
                    _info_fields(handle.read(size - 4), collector)
            position += 8 + size + (size & 1)


def _info_fields(data: bytes, collector: _Collector) -> None:
    offset = 0
    while offset + 8 <= len(data):
        chunk_id = data[offset:offset + 4].decode("latin-1")
        size = int.from_bytes(data[offset + 4:offset + 8], "little")
        raw = data[offset + 8:offset + 8 + size].split(b"\0", 1)[0]
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:  # older writers use the Windows code page; latin-1 never fails
            text = raw.decode("latin-1")
        collector.add(f"INFO:{chunk_id}", text, _ROLES.get(chunk_id.lower(), "other"))
        offset += 8 + size + (size & 1)


def _describe(exc: Exception) -> str:
    message = _clip(str(exc), 200)
    return f"{type(exc).__module__}.{type(exc).__name__}" + (f": {message}" if message else "")


def read_tags(path: Path, max_tag_bytes: int = 1_000_000) -> FileTags:
    """The tags of ``path``; never raises for bad content (see the module docstring for the limits)."""
    collector = _Collector(max_tag_bytes)
    if not Path(path).is_file():
        collector.note("no tags: not a regular file")
        return collector.tags
    try:
        audio = mutagen.File(path)
    except Exception as exc:  # noqa: BLE001 - mutagen raises many types on hostile files; none may stop a batch
        collector.note(f"tags unreadable: {_describe(exc)}")
        audio = None
    else:
        if audio is None:
            collector.note("no tags: mutagen recognises no format in the file")
    if audio is not None and audio.tags is not None:
        fields = _id3_fields(audio.tags) if isinstance(audio.tags, ID3) else _mapping_fields(audio.tags)
        try:
            for key, value, role in fields:
                collector.add(key, value, role)
        except Exception as exc:  # noqa: BLE001 - a malformed frame met while iterating
            collector.note(f"tags partly unreadable: {_describe(exc)}")
    try:
        _riff_info(path, collector)
    except OSError as exc:
        collector.note(f"RIFF INFO unreadable: {exc}")
    return collector.tags
