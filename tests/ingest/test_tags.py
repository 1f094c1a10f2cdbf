"""Tags read back from files written here with soundfile, mutagen and ffmpeg, hostile ones included."""

from __future__ import annotations

import json
import struct
import subprocess
from pathlib import Path

import mutagen
import numpy as np
import pytest
import soundfile as sf
from mutagen.flac import FLAC, Picture
from mutagen.id3 import APIC, ID3, TCOP, TIT2, TPE1, TXXX, WCOP, WOAR
from mutagen.mp4 import MP4, MP4FreeForm
from mutagen.oggopus import OggOpus
from mutagen.oggvorbis import OggVorbis
from mutagen.wave import WAVE

from soundtrail.ingest.tags import RAW_MAX_FIELDS, RAW_VALUE_CHARS, FileTags, read_tags
from soundtrail.licenses import LicensePolicy, combine_licenses

SR = 8000
SILENCE = np.zeros((SR // 10, 1), dtype=np.float32)
BIG = 8_000_000  # a hostile tag value of 8 MB


def _flac(path: Path, **comments: str) -> Path:
    sf.write(path, SILENCE, SR)
    audio = FLAC(path)
    for key, value in comments.items():
        audio[key] = value
    audio.save()
    return path


def _mp3(path: Path, *frames) -> Path:
    sf.write(path, SILENCE, SR, format="MP3")
    tags = ID3()
    for frame in frames:
        tags.add(frame)
    tags.save(path)
    return path


def test_flac_vorbis_comments(tmp_path: Path) -> None:
    path = _flac(tmp_path / "a.flac", LICENSE="https://creativecommons.org/licenses/by/4.0/", TITLE="Night Tide",
                 ARTIST="Jane Doe", COPYRIGHT="2024 Jane Doe", CONTACT="jane@example.org")
    tags = read_tags(path)
    assert set(tags.license_candidates) == {"https://creativecommons.org/licenses/by/4.0/", "2024 Jane Doe"}
    assert (tags.title, tags.artist, tags.copyright) == ("Night Tide", "Jane Doe", "2024 Jane Doe")
    assert tags.raw["contact"] == "jane@example.org"
    assert tags.notes == []
    assert combine_licenses(None, tags.license_candidates).spdx_id == "CC-BY-4.0"


@pytest.mark.parametrize(("subtype", "opener", "key", "licence"), [
    ("VORBIS", OggVorbis, "licence", "CC0"),
    ("OPUS", OggOpus, "LICENCE", "https://creativecommons.org/licenses/by/4.0/"),
])
def test_ogg_vorbis_comments(tmp_path: Path, subtype: str, opener: type, key: str, licence: str) -> None:
    path = tmp_path / f"a.{subtype.lower()}"
    sf.write(path, SILENCE, SR, format="OGG", subtype=subtype)
    audio = opener(path)
    audio[key] = licence
    audio.save()
    assert read_tags(path).license_candidates == [licence]


def test_mp3_id3_frames(tmp_path: Path) -> None:
    path = _mp3(tmp_path / "a.mp3",
                TCOP(encoding=3, text="2024 Jane Doe, licensed under CC BY-SA 4.0"),
                WCOP(url="https://creativecommons.org/licenses/by-sa/4.0/"),
                TIT2(encoding=3, text="Night Tide"), TPE1(encoding=3, text="Jane Doe"),
                WOAR(url="https://jane.example.org"), TXXX(encoding=3, desc="LICENSE", text="CC-BY-SA-4.0"),
                APIC(encoding=3, mime="image/png", type=3, desc="cover", data=b"\x89PNG" + bytes(50_000)))
    tags = read_tags(path)
    assert set(tags.license_candidates) == {"2024 Jane Doe, licensed under CC BY-SA 4.0", "CC-BY-SA-4.0",
                                            "https://creativecommons.org/licenses/by-sa/4.0/"}
    assert (tags.title, tags.artist) == ("Night Tide", "Jane Doe")
    assert tags.copyright == "2024 Jane Doe, licensed under CC BY-SA 4.0"
    assert tags.raw["WOAR"] == "https://jane.example.org"
    assert not any(key.startswith("APIC") for key in tags.raw)  # cover art is never read as text
    assert combine_licenses("CC-BY-SA-4.0", tags.license_candidates).status == "ok"
    decision = LicensePolicy(allow=["CC-BY-4.0"]).decide(combine_licenses(None, tags.license_candidates))
    assert decision.reason == "licence CC-BY-SA-4.0 is not in the allow list"


def test_id3_user_text_frame_in_british_spelling(tmp_path: Path) -> None:
    path = _mp3(tmp_path / "a.mp3", TXXX(encoding=3, desc="Licence", text="CC0-1.0"))
    assert read_tags(path).license_candidates == ["CC0-1.0"]


@pytest.mark.parametrize("container", ["WAV", "AIFF"])
def test_id3_licence_frames_in_wav_and_aiff(tmp_path: Path, container: str) -> None:
    """The ID3 chunk that WAV and AIFF files carry holds the same licence frames as an MP3's."""
    path = tmp_path / f"a.{container.lower()}"
    sf.write(path, SILENCE, SR, format=container)
    audio = mutagen.File(path)
    audio.add_tags()
    audio.tags.add(TXXX(encoding=3, desc="licence", text="CC-BY-SA-4.0"))
    audio.tags.add(TCOP(encoding=3, text="2024 Jane Doe"))
    audio.save()
    tags = read_tags(path)
    assert isinstance(mutagen.File(path).tags, ID3)
    assert set(tags.license_candidates) == {"CC-BY-SA-4.0", "2024 Jane Doe"}
    assert combine_licenses(None, tags.license_candidates).spdx_id == "CC-BY-SA-4.0"


def test_wav_riff_info_and_id3_chunk(tmp_path: Path) -> None:
    path = tmp_path / "a.wav"
    with sf.SoundFile(path, "w", SR, 1) as handle:  # libsndfile writes these as a LIST/INFO chunk
        handle.copyright = "2024 Jane Doe, CC BY 4.0"
        handle.title = "Tïde"
        handle.artist = "Jane Doe"
        handle.write(SILENCE)
    tags = read_tags(path)
    assert tags.raw == {"INFO:ICOP": "2024 Jane Doe, CC BY 4.0", "INFO:INAM": "Tïde", "INFO:IART": "Jane Doe"}
    assert (tags.title, tags.copyright, tags.license_candidates) == \
        ("Tïde", "2024 Jane Doe, CC BY 4.0", ["2024 Jane Doe, CC BY 4.0"])

    wave = WAVE(path)
    wave.add_tags()
    wave.tags.add(WCOP(url="https://creativecommons.org/licenses/by/4.0/"))
    wave.save()
    tags = read_tags(path)
    assert tags.license_candidates == ["https://creativecommons.org/licenses/by/4.0/", "2024 Jane Doe, CC BY 4.0"]
    assert combine_licenses(None, tags.license_candidates).spdx_id == "CC-BY-4.0"


@pytest.mark.parametrize("licence_key", ["LICENSE", "LICENCE"])
def test_mp4_atoms(tmp_path: Path, licence_key: str) -> None:
    path = tmp_path / "a.m4a"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i", f"anullsrc=r={SR}:cl=mono",
                    "-t", "0.1", "-c:a", "aac", str(path)], check=True)
    audio = MP4(path)
    audio["cprt"] = ["2024 Jane Doe"]
    audio["©nam"] = ["Night Tide"]
    audio["©ART"] = ["Jane Doe"]
    audio[f"----:com.apple.iTunes:{licence_key}"] = [MP4FreeForm(b"https://creativecommons.org/licenses/by-nd/4.0/")]
    audio.save()
    tags = read_tags(path)
    assert (tags.title, tags.artist, tags.copyright) == ("Night Tide", "Jane Doe", "2024 Jane Doe")
    assert combine_licenses(None, tags.license_candidates).spdx_id == "CC-BY-ND-4.0"


def test_multi_megabyte_field_is_skipped_and_the_rest_still_read(tmp_path: Path) -> None:
    path = _flac(tmp_path / "big.flac", COPYRIGHT="x" * BIG, LICENSE="CC-BY-4.0", TITLE="t")
    tags = read_tags(path, max_tag_bytes=1_000_000)
    assert "tag copyright of 8.0 MB exceeds the 1.0 MB limit; ignored" in tags.notes
    assert tags.license_candidates == ["CC-BY-4.0"] and tags.copyright is None
    assert len(json.dumps(tags.to_dict())) < 10_000

    path = _mp3(tmp_path / "big.mp3", TCOP(encoding=3, text="y" * BIG), TIT2(encoding=3, text="t"))
    tags = read_tags(path)
    assert tags.notes == ["tag TCOP of 8.0 MB exceeds the 1.0 MB limit; ignored"]
    assert tags.title == "t" and tags.license_candidates == []


def test_fields_past_the_total_budget_are_ignored(tmp_path: Path) -> None:
    path = _flac(tmp_path / "many.flac", A="a" * 600, B="b" * 600, LICENSE="CC0")
    tags = read_tags(path, max_tag_bytes=1000)
    assert len(tags.notes) == 1 and tags.notes[0].startswith("tags beyond 1.0 kB in total ignored, from")
    assert sum(len(value) for value in tags.raw.values()) <= 1000


def test_oversized_riff_info_chunk_is_skipped_without_reading_it(tmp_path: Path) -> None:
    path = tmp_path / "big.wav"
    sf.write(path, SILENCE, SR)
    info = b"INFO" + b"ICOP" + struct.pack("<I", BIG) + b"z" * BIG
    with open(path, "ab") as handle:
        handle.write(b"LIST" + struct.pack("<I", len(info)) + info)
    tags = read_tags(path)
    assert tags.notes == ["RIFF INFO chunk of 8.0 MB exceeds the 1.0 MB limit; ignored"]
    assert tags.copyright is None


@pytest.mark.parametrize(("chunk", "copyright"), [
    (b"LIST" + struct.pack("<I", 0) + b"INFO", None),  # a list claiming no bytes at all
    (b"LIST" + struct.pack("<I", 13) + b"INFOICOP" + struct.pack("<I", 0xFFFFFFF0) + b"x", "x"),  # an entry of 4 GB
])
def test_riff_chunk_sizes_that_lie(tmp_path: Path, chunk: bytes, copyright: str | None) -> None:
    path = tmp_path / "lying.wav"
    sf.write(path, SILENCE, SR)
    with open(path, "ab") as handle:
        handle.write(chunk)
    tags = read_tags(path)
    assert (tags.copyright, tags.notes) == (copyright, [])


def test_raw_is_bounded_and_json_serialisable(tmp_path: Path) -> None:
    comments = {f"FIELD{i:03d}": f"value {i}" for i in range(RAW_MAX_FIELDS + 20)}
    comments["NOTES"] = "n" * 5000
    path = _flac(tmp_path / "wide.flac", **comments)
    tags = read_tags(path)
    assert len(tags.raw) == RAW_MAX_FIELDS
    assert all(len(value) <= RAW_VALUE_CHARS for value in tags.raw.values())
    assert json.loads(json.dumps(tags.to_dict()))["raw"] == tags.raw


def test_flac_cover_art_is_skipped(tmp_path: Path) -> None:
    path = _flac(tmp_path / "cover.flac", LICENSE="CC0")
    audio = FLAC(path)
    picture = Picture()
    picture.data = bytes(200_000)
    picture.mime = "image/png"
    audio.add_picture(picture)
    audio.save()
    tags = read_tags(path, max_tag_bytes=10_000)  # the picture is larger than the budget but not a text tag
    assert tags.license_candidates == ["CC0"] and tags.notes == []


@pytest.mark.parametrize(("name", "content"), [
    ("text.wav", b"this is not audio at all"),
    ("truncated.flac", b"fLaC\x84\xff\xff\xffgarbage"),
    ("header-only.mp3", b"ID3\x04\x00\x00\x7f\x7f\x7f\x7f"),
    ("empty.ogg", b""),
])
def test_corrupt_files_give_empty_tags_and_a_note(tmp_path: Path, name: str, content: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    tags = read_tags(path)
    assert tags == FileTags(notes=tags.notes)
    assert len(tags.notes) == 1 and tags.notes[0].startswith(("tags unreadable: mutagen", "no tags: mutagen"))


def test_truncated_copy_of_a_tagged_file(tmp_path: Path) -> None:
    whole = _mp3(tmp_path / "whole.mp3", TCOP(encoding=3, text="CC0 " * 1000))
    cut = tmp_path / "cut.mp3"
    cut.write_bytes(whole.read_bytes()[:2000])  # the ID3 header promises more than the file holds
    tags = read_tags(cut)
    assert tags.license_candidates == []
    assert tags.notes and tags.notes[0].startswith("tags unreadable")


def test_missing_file_is_a_note_not_an_exception(tmp_path: Path) -> None:
    assert read_tags(tmp_path / "absent.flac").notes == ["no tags: not a regular file"]
