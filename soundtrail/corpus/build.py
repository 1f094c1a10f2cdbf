"""The demo corpus on disk: audio in mixed containers, a manifest, and the status each file should get.

::

    DIR/
      manifest.jsonl        one row per file under tracks/, in curator order (an original before its copy)
      expected.json         {"expected_status": {path: status}, "purpose": {path: why}, "protected": [...],
                             "specs": {path: synthesis parameters}}
      tracks/000-<title>.wav ...              the licensed tracks (CC0-1.0, CC-BY-4.0), WAV/FLAC/OGG/MP3 in turn
      tracks/<n>-<title>.flac                 licence CC-BY-NC-4.0 in the manifest   -> quarantined (denied)
      tracks/<n+1>-<title>.wav                no licence anywhere                    -> quarantined
      tracks/<n+2>-<title>-excerpt.ogg        excerpt of the protected work, +2 dB   -> blocked
      tracks/<n+3>-<title>-reupload.mp3       track 000 re-encoded, -4 dB            -> duplicate
      protected/<title>.wav  a protected reference work: not in the manifest; the demo blocklists it first

Licences are spelled as people write them ("cc-by-4.0", "Creative Commons Attribution 4.0", CC URLs),
and licensed tracks 2, 5, 8, ... that are not WAV carry their licence only in their own tags (Vorbis
``LICENSE`` in FLAC/Ogg, ID3 ``TCOP``/``WCOP`` in MP3), their manifest rows without a ``license`` field.

Every byte is a function of (tracks, seconds, seed) and the libsndfile build: files are encoded in
memory (the Ogg stream serial, random in libsndfile, is set from the path) and written only when they
differ, atomically, so a re-run leaves the folder as it was.
"""

from __future__ import annotations

import io
import json
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
from mutagen.flac import FLAC
from mutagen.id3 import TCOP, TIT2, TPE1, WCOP
from mutagen.mp3 import MP3
from mutagen.ogg import OggPage
from mutagen.oggvorbis import OggVorbis

from soundtrail.atomic import atomic_write_bytes
from soundtrail.corpus.compose import Planner, TrackSpec
from soundtrail.corpus.distinct import DistinctConfig, distinct_compositions
from soundtrail.corpus.timbres import SAMPLE_RATE

# Ingestion matches copies over min(5 s, 0.8 x length) of Chromaprint items, and an item reads 2.7 s of audio:
# measured at the default settings, the planted copies of 7 s tracks go unnoticed and those of 7.5 s are caught.
MIN_SECONDS = 7.5
CONTAINERS: dict[str, tuple[str, str]] = {  # extension -> libsndfile format and subtype, in rotation order
    "wav": ("WAV", "PCM_16"), "flac": ("FLAC", "PCM_16"), "ogg": ("OGG", "VORBIS"), "mp3": ("MP3", "MPEG_LAYER_III"),
}
LICENSE_SPELLINGS: dict[str, tuple[str, ...]] = {
    "CC0-1.0": ("CC0-1.0", "cc0-1.0", "CC0 1.0 Universal", "https://creativecommons.org/publicdomain/zero/1.0/",
                "Creative Commons Zero v1.0 Universal", "Public Domain Dedication (CC0 1.0)"),
    "CC-BY-4.0": ("CC-BY-4.0", "cc-by-4.0", "Creative Commons Attribution 4.0",
                  "https://creativecommons.org/licenses/by/4.0/", "CC BY 4.0",
                  "Attribution 4.0 International (CC BY 4.0)"),
}
_URLS = {"CC0-1.0": "https://creativecommons.org/publicdomain/zero/1.0/",
         "CC-BY-4.0": "https://creativecommons.org/licenses/by/4.0/"}
_SHORT = {"CC0-1.0": "CC0 1.0", "CC-BY-4.0": "CC BY 4.0"}
DENIED_LICENSE = "Creative Commons Attribution-NonCommercial 4.0 International"  # CC-BY-NC-4.0
BLOCKLIST_REASON = "protected reference work (soundtrail demo)"
_RIGHTS_HOLDERS = ("Juniper Row", "Tessellate Audio Collective", "Mara Okafor", "Northlight Sound Library",
                   "The Quiet Engines", "Ilse Varga")
_UPLOADER = "anonymous uploader"
_YEAR = 2025


@dataclass
class CorpusConfig:
    """How the failing extras are made; the defaults give one file for every ingest status."""

    duplicate_gain_db: float = -4.0
    protected_gain_db: float = 2.0
    protected_length: float = 1.5  # the protected work is this many track lengths long; its copy is an excerpt
    excerpt_max_s: float = 30.0
    distinct: DistinctConfig = field(default_factory=DistinctConfig)


@dataclass(frozen=True)
class CorpusTrack:
    """One file under ``tracks/`` and what ingestion should make of it.

    ``spec`` is the music the file holds (for a copy, the copied work's). ``license`` is the SPDX id a
    licence reader should find and ``license_text`` the spelling written, in the manifest or only in
    the file's tags (``license_in``); both None when the file has no licence anywhere.
    """

    path: str
    spec: TrackSpec
    role: str  # licensed | denied-licence | no-licence | protected-copy | duplicate
    expected_status: str  # accepted | quarantined | blocked | duplicate
    purpose: str
    title: str
    rights_holder: str
    license: str | None
    license_text: str | None
    license_in: str | None  # "manifest" | "tags" | None
    copy_of: str | None = None
    gain_db: float = 0.0

    @property
    def container(self) -> str:
        return Path(self.path).suffix[1:]


@dataclass(frozen=True)
class CorpusSummary:
    root: Path
    tracks: list[CorpusTrack]  # the licensed tracks first, then the extras meant to fail
    manifest_path: Path
    expected_path: Path
    protected_paths: list[Path]  # absolute; for ``soundtrail blocklist add``

    @property
    def expected_status(self) -> dict[str, str]:
        """Path relative to ``root`` -> the status ingestion should record for it."""
        return {track.path: track.expected_status for track in self.tracks}


def available_containers() -> tuple[str, ...]:
    """The extensions this libsndfile can write, in rotation order (MP3 needs libsndfile 1.1 with LAME)."""
    formats = sf.available_formats()
    return tuple(ext for ext, (fmt, _) in CONTAINERS.items() if fmt in formats)


def synthesize_corpus(out_dir: Path, tracks: int = 12, seconds: float = 8.0, seed: int = 0,
                      config: CorpusConfig | None = None) -> CorpusSummary:
    """Compose, encode and describe ``tracks`` licensed tracks plus the extras; see the module docstring."""
    if tracks < 1:
        raise ValueError("a corpus needs at least one licensed track (the duplicate copies track 000)")
    if seconds < MIN_SECONDS:
        raise ValueError(f"tracks must be at least {MIN_SECONDS:g} s long for Chromaprint to tell copies apart")
    config = config or CorpusConfig()
    out = _Output(Path(out_dir))
    containers = available_containers()
    protected_seconds = config.protected_length * seconds
    compositions = distinct_compositions(Planner(seed), [seconds] * (tracks + 2) + [protected_seconds],
                                         config.distinct)
    spellings_used = dict.fromkeys(LICENSE_SPELLINGS, 0)
    first_audio = np.zeros(0)
    for index in range(tracks):
        spec, audio = next(compositions)
        out.add(_licensed_track(index, spec, seed, containers[index % len(containers)], spellings_used), audio)
        first_audio = audio if index == 0 else first_audio
    spec, audio = next(compositions)
    out.add(CorpusTrack(
        path=_track_path(tracks, spec.title, "flac"), spec=spec, role="denied-licence", expected_status="quarantined",
        purpose="licence CC-BY-NC-4.0 is on the deny list", title=spec.title, rights_holder=_RIGHTS_HOLDERS[0],
        license="CC-BY-NC-4.0", license_text=DENIED_LICENSE, license_in="manifest"), audio)
    spec, audio = next(compositions)
    out.add(CorpusTrack(
        path=_track_path(tracks + 1, spec.title, "wav"), spec=spec, role="no-licence", expected_status="quarantined",
        purpose="no licence in the manifest or the file's tags", title=spec.title, rights_holder=_UPLOADER,
        license=None, license_text=None, license_in=None), audio)

    protected_spec, protected_audio = next(compositions)
    protected_path = out.add_protected(protected_spec, protected_audio)
    excerpt_s = min(seconds, config.excerpt_max_s)
    start = int(round((protected_seconds - excerpt_s) / 2 * SAMPLE_RATE))
    excerpt = _faded(protected_audio[:, start:start + int(round(excerpt_s * SAMPLE_RATE))])
    out.add(CorpusTrack(
        path=_track_path(tracks + 2, protected_spec.title, "ogg", "excerpt"), spec=protected_spec,
        role="protected-copy", expected_status="blocked",
        purpose=f"{excerpt_s:g} s excerpt of {protected_path}, re-encoded, {config.protected_gain_db:+g} dB",
        title=f"{protected_spec.title} (excerpt)", rights_holder=_UPLOADER, license="CC-BY-4.0",
        license_text="CC-BY-4.0", license_in="manifest", copy_of=protected_path, gain_db=config.protected_gain_db),
        _with_gain(excerpt, config.protected_gain_db))

    original = out.tracks[0]
    container = next(ext for ext in ("mp3", "ogg", "flac") if ext in containers and ext != original.container)
    out.add(CorpusTrack(
        path=_track_path(tracks + 3, original.title, container, "reupload"), spec=original.spec, role="duplicate",
        expected_status="duplicate",
        purpose=f"{original.path} re-encoded as {container.upper()}, {config.duplicate_gain_db:+g} dB",
        title=original.title, rights_holder=original.rights_holder, license=original.license,
        license_text=original.license_text, license_in="manifest", copy_of=original.path,
        gain_db=config.duplicate_gain_db), _with_gain(first_audio, config.duplicate_gain_db))
    return out.finish(seed, tracks, seconds)


def _licensed_track(index: int, spec: TrackSpec, seed: int, container: str,
                    spellings_used: dict[str, int]) -> CorpusTrack:
    """A CC0 or CC-BY track, its licence in the next spelling; every third one with tags keeps it in the tags only."""
    rng = np.random.default_rng([seed, 2, index])
    spdx = "CC-BY-4.0" if rng.random() < 0.5 else "CC0-1.0"
    text = LICENSE_SPELLINGS[spdx][spellings_used[spdx] % len(LICENSE_SPELLINGS[spdx])]
    spellings_used[spdx] += 1
    in_tags = container != "wav" and index % 3 == 2
    return CorpusTrack(
        path=_track_path(index, spec.title, container), spec=spec, role="licensed", expected_status="accepted",
        purpose=f"licensed {spdx}, read from the {'file tags' if in_tags else 'manifest'}", title=spec.title,
        rights_holder=str(rng.choice(_RIGHTS_HOLDERS)), license=spdx, license_text=text,
        license_in="tags" if in_tags else "manifest")


class _Output:
    """Writes the corpus folder: each file as soon as it is encoded, the manifest and expected.json last.

    Files an earlier run listed in its expected.json and this run does not write are removed at the
    end (only those: a folder shared with other audio is safe). expected.json is written last, so
    until a run finishes, the previous run's listing stays valid.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tracks: list[CorpusTrack] = []
        self.protected: list[tuple[str, TrackSpec]] = []
        self.previous = self._listed_files()

    def add(self, track: CorpusTrack, audio: np.ndarray) -> None:
        _write_if_changed(self.root / track.path, _encode(audio, track))
        self.tracks.append(track)

    def add_protected(self, spec: TrackSpec, audio: np.ndarray) -> str:
        path = f"protected/{_slug(spec.title)}.wav"
        _write_if_changed(self.root / path, _encode(audio, None))
        self.protected.append((path, spec))
        return path

    def finish(self, seed: int, tracks: int, seconds: float) -> CorpusSummary:
        written = {track.path for track in self.tracks} | {path for path, _ in self.protected}
        for relative in self.previous - written:
            target = (self.root / relative).resolve()
            if self.root.resolve() in target.parents and target.is_file():
                target.unlink()
        manifest_path = self.root / "manifest.jsonl"
        rows = "".join(json.dumps(_manifest_row(track, seed)) + "\n" for track in self.tracks)
        _write_if_changed(manifest_path, rows.encode("utf-8"))
        expected_path = self.root / "expected.json"
        expected = {
            "seed": seed, "tracks": tracks, "seconds": seconds, "blocklist_reason": BLOCKLIST_REASON,
            "expected_status": {track.path: track.expected_status for track in self.tracks},
            "purpose": {track.path: track.purpose for track in self.tracks},
            "protected": [path for path, _ in self.protected],
            "specs": {**{track.path: track.spec.to_dict() for track in self.tracks},
                      **{path: spec.to_dict() for path, spec in self.protected}},
        }
        _write_if_changed(expected_path, (json.dumps(expected, indent=2) + "\n").encode("utf-8"))
        return CorpusSummary(root=self.root, tracks=self.tracks, manifest_path=manifest_path,
                             expected_path=expected_path, protected_paths=[self.root / p for p, _ in self.protected])

    def _listed_files(self) -> set[str]:
        try:
            listed = json.loads((self.root / "expected.json").read_text(encoding="utf-8"))
            return {*listed.get("expected_status", {}), *listed.get("protected", [])}
        except (OSError, ValueError, AttributeError, TypeError):  # no earlier run, or not a listing of ours
            return set()


def _slug(title: str) -> str:
    return "-".join(title.lower().split())


def _track_path(index: int, title: str, container: str, suffix: str = "") -> str:
    return f"tracks/{index:03d}-{_slug(title)}{'-' + suffix if suffix else ''}.{container}"


def _with_gain(audio: np.ndarray, gain_db: float) -> np.ndarray:
    return (audio * 10.0 ** (gain_db / 20.0)).astype(np.float32)


def _faded(audio: np.ndarray, seconds: float = 0.01) -> np.ndarray:
    """An excerpt cut from the middle of a work, with 10 ms ramps so the cuts do not click."""
    ramp = np.linspace(0.0, 1.0, int(seconds * SAMPLE_RATE), dtype=np.float32)
    out = audio.copy()
    out[:, :len(ramp)] *= ramp
    out[:, out.shape[1] - len(ramp):] *= ramp[::-1]
    return out


def _manifest_row(track: CorpusTrack, seed: int) -> dict[str, object]:
    row: dict[str, object] = {"path": track.path}
    if track.license_in == "manifest":
        row["license"] = track.license_text
    attribution = None
    if track.license in ("CC-BY-4.0", "CC-BY-NC-4.0"):
        attribution = f'"{track.title}" by {track.rights_holder}, {track.license_text}'
    row.update(rights_holder=track.rights_holder, source=f"soundtrail procedural demo corpus, seed {seed}",
               attribution=attribution, title=track.title, tags=track.spec.tags, description=track.spec.caption)
    return row


# ---------------------------------------------------------------------------------------------
# Encoding


def _encode(audio: np.ndarray, track: CorpusTrack | None) -> bytes:
    """The file's bytes: audio in the container its path names, with title, artist and licence tags.

    ``track`` None writes a bare WAV (the protected reference master).
    """
    container = track.container if track else "wav"
    fmt, subtype = CONTAINERS[container]
    buffer = io.BytesIO()
    sf.write(buffer, np.clip(audio.T, -1.0, 1.0), SAMPLE_RATE, format=fmt, subtype=subtype)
    if container == "ogg":
        buffer = io.BytesIO(_fixed_ogg_serial(buffer.getvalue(), zlib.crc32(track.path.encode()) & 0x7FFFFFFF))
    if track is not None and container in ("flac", "ogg"):
        _vorbis_comments(buffer, container, track)
    elif track is not None and container == "mp3":
        _id3_frames(buffer, track)
    return buffer.getvalue()


def _fixed_ogg_serial(data: bytes, serial: int) -> bytes:
    """The Ogg stream with its serial number (libsndfile draws it at random) set to ``serial``."""
    source, out = io.BytesIO(data), io.BytesIO()
    while source.tell() < len(data):
        page = OggPage(source)
        page.serial = serial
        out.write(page.write())  # recomputes the page checksum
    return out.getvalue()


def _vorbis_comments(buffer: io.BytesIO, container: str, track: CorpusTrack) -> None:
    buffer.seek(0)
    tags = FLAC(buffer) if container == "flac" else OggVorbis(buffer)
    tags["TITLE"] = track.title
    tags["ARTIST"] = track.rights_holder
    if track.license_in == "tags":
        tags["LICENSE"] = track.license_text
        tags["COPYRIGHT"] = f"{_YEAR} {track.rights_holder}"
    buffer.seek(0)
    tags.save(buffer)


def _id3_frames(buffer: io.BytesIO, track: CorpusTrack) -> None:
    buffer.seek(0)
    mp3 = MP3(buffer)
    mp3.add_tags()
    mp3.tags.add(TIT2(encoding=3, text=[track.title]))
    mp3.tags.add(TPE1(encoding=3, text=[track.rights_holder]))
    if track.license_in == "tags":
        mp3.tags.add(TCOP(encoding=3, text=[f"{_YEAR} {track.rights_holder}, licensed under {_SHORT[track.license]}"]))
        mp3.tags.add(WCOP(url=_URLS[track.license]))
    buffer.seek(0)
    mp3.save(buffer)


# ---------------------------------------------------------------------------------------------
# Writing


def _write_if_changed(path: Path, data: bytes) -> None:
    """Write atomically, and not at all when the file already holds these bytes (a re-run changes nothing)."""
    if path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data:
        return
    atomic_write_bytes(path, data)
