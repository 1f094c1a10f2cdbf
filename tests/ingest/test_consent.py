"""Consent beyond the licence id: manifest values, and C2PA / CAWG training-and-data-mining assertions read from
files signed here (WAV, FLAC and MP3), whatever their signature's state."""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path

import pytest

from soundtrail.ingest.consent import (
    ConsentError,
    embedded_training_statements,
    expired,
    parse_ai_training,
    parse_license_expires,
    training_refusal,
)
from tests.audio_fixtures import melody, sign_training_mining, write


@pytest.mark.parametrize(("value", "expected"), [
    ("allowed", "allowed"), ("Allowed", "allowed"), ("yes", "allowed"), (True, "allowed"), ("true", "allowed"),
    ("notAllowed", "notAllowed"), ("not allowed", "notAllowed"), ("NOT_ALLOWED", "notAllowed"), ("no", "notAllowed"),
    (False, "notAllowed"), ("not-allowed", "notAllowed"), ("constrained", "constrained"), (None, None), ("", None),
])
def test_ai_training_values(value: object, expected: str | None) -> None:
    assert parse_ai_training(value) == expected


@pytest.mark.parametrize("value", ["maybe", "allowed for research", 1, ["no"], {"use": "allowed"}])
def test_ai_training_values_that_say_nothing_clear_are_errors(value: object) -> None:
    with pytest.raises(ValueError, match="'ai_training' must be allowed or notAllowed"):
        parse_ai_training(value)


def test_licence_expiry_is_an_iso_date_and_its_last_day_still_holds() -> None:
    assert parse_license_expires(" 2027-06-30 ") == "2027-06-30" and parse_license_expires(None) is None
    for bad in ("30/06/2027", "2027-6-30", "20270630", "2027-06-31", "2027-06-30T00:00", 20270630):
        with pytest.raises(ValueError, match="'license_expires' must be a date as YYYY-MM-DD"):
            parse_license_expires(bad)
    assert not expired("2027-06-30", dt.date(2027, 6, 30)) and expired("2027-06-30", dt.date(2027, 7, 1))
    assert not expired(None, dt.date(2999, 1, 1))


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("consent")
    wav = write(folder / "plain.wav", melody(1, seconds=3.0), subtype="PCM_16")
    mp3 = folder / "plain.mp3"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(wav), "-b:a", "128k", str(mp3)], check=True)
    ogg = write(folder / "plain.ogg", melody(1, seconds=3.0), format="OGG", subtype="VORBIS")
    flac = write(folder / "plain.flac", melody(1, seconds=3.0))
    return {"wav": wav, "flac": flac, "mp3": mp3, "ogg": ogg, "identity": folder / "identity"}


@pytest.mark.parametrize("source", ["wav", "flac", "mp3"])
@pytest.mark.parametrize(("label", "entries", "refusal"), [
    ("cawg.training-mining", {"cawg.ai_generative_training": "notAllowed"}, "notAllowed"),
    ("cawg.training-mining", {"cawg.ai_training": "constrained", "cawg.ai_generative_training": "allowed"},
     "constrained"),
    ("c2pa.training-mining", {"c2pa.ai_generative_training": "notAllowed", "c2pa.data_mining": "allowed"},
     "notAllowed"),  # the C2PA 1.x assertion the CAWG one replaced
    ("cawg.training-mining", {"cawg.ai_generative_training": "allowed", "cawg.ai_training": "allowed"}, None),
    ("cawg.training-mining", {"cawg.data_mining": "notAllowed", "cawg.ai_inference": "notAllowed"}, None),
])
def test_training_entries_of_signed_files_are_read(sources: dict[str, Path], tmp_path: Path, source: str,
                                                   label: str, entries: dict[str, str], refusal: str | None) -> None:
    signed = sign_training_mining(sources[source], tmp_path / f"signed{sources[source].suffix}", entries,
                                  sources["identity"], label=label)
    statements = embedded_training_statements(signed)
    assert sorted(statement.stated_by.split(" in urn:")[0] for statement in statements) == sorted(
        f"C2PA {label} ({key})" for key in entries if key.endswith(("ai_generative_training", ".ai_training")))
    refused = training_refusal(statements)
    assert (refused.use if refused else None) == refusal
    if refusal == "constrained":
        assert refused.reason().endswith("constrained (treated as not allowed) by C2PA cawg.training-mining "
                                         f"(cawg.ai_training) in {refused.stated_by.split(' in ')[1]}: ask the label")


def test_a_refusal_holds_in_a_file_edited_after_signing_and_a_broken_store_is_an_error(
        sources: dict[str, Path], tmp_path: Path) -> None:
    signed = sign_training_mining(sources["wav"], tmp_path / "signed.wav",
                                  {"cawg.ai_generative_training": "notAllowed"}, sources["identity"])
    edited = bytearray(signed.read_bytes())
    edited[4000:4010] = bytes(10)  # audio bytes: the data hash no longer matches, the assertion is still there
    (tmp_path / "edited.wav").write_bytes(bytes(edited))
    assert training_refusal(embedded_training_statements(tmp_path / "edited.wav")).use == "notAllowed"
    store_at = signed.read_bytes().rfind(b"C2PA")
    (tmp_path / "cut.wav").write_bytes(signed.read_bytes()[: store_at + 400])
    with pytest.raises(ConsentError, match=r"unreadable content credentials \(C2PA\)"):
        embedded_training_statements(tmp_path / "cut.wav")
    assert embedded_training_statements(sources["wav"]) == [], "no credentials: nothing stated"
    assert embedded_training_statements(sources["ogg"]) == [], "a format c2pa cannot hold states nothing"
