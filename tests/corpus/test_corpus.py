"""The procedural demo corpus: files, manifest, captions true to the audio, Chromaprint distinctness, ingest outcome."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import re
from pathlib import Path

import acoustid
import chromaprint
import numpy as np
import pytest
import soundfile as sf
from mutagen.flac import FLAC
from mutagen.id3 import ID3
from mutagen.oggvorbis import OggVorbis

from soundtrail.audio import decode, mono, rms_dbfs
from soundtrail.corpus import CorpusSummary, synthesize_corpus
from soundtrail.corpus.build import MIN_SECONDS, available_containers
from soundtrail.corpus.compose import NOTE_NAMES, SCALES, Planner, TrackSpec, compose, same_arrangement
from soundtrail.corpus.distinct import best_offset_ber
from soundtrail.ingest.tags import read_tags
from soundtrail.licenses import combine_licenses

SECONDS = 8.0
TRACKS = 12
FIELDS = {"path", "rights_holder", "source", "attribution", "title", "tags", "description"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> CorpusSummary:
    return synthesize_corpus(tmp_path_factory.mktemp("corpus"), tracks=TRACKS, seconds=SECONDS, seed=0)


@pytest.fixture(scope="module")
def decoded(corpus: CorpusSummary) -> dict[str, tuple[np.ndarray, int]]:
    paths = [track.path for track in corpus.tracks] + [str(p.relative_to(corpus.root)) for p in corpus.protected_paths]
    return {path: decode(corpus.root / path) for path in paths}


def _rows(corpus: CorpusSummary) -> list[dict]:
    return [json.loads(line) for line in corpus.manifest_path.read_text().splitlines()]


def test_manifest_rows_name_every_track_with_the_required_fields(corpus: CorpusSummary) -> None:
    rows = _rows(corpus)
    assert [row["path"] for row in rows] == [track.path for track in corpus.tracks]
    for row, track in zip(rows, corpus.tracks, strict=True):
        assert set(row) >= FIELDS, row
        assert not Path(row["path"]).is_absolute() and (corpus.root / row["path"]).is_file()
        assert ("license" in row) == (track.license_in == "manifest")
        assert isinstance(row["tags"], list) and all(isinstance(tag, str) for tag in row["tags"])
        assert row["description"] == track.spec.caption
    assert sum(track.role == "licensed" for track in corpus.tracks) == TRACKS
    assert set(corpus.expected_status.values()) == {"accepted", "quarantined", "blocked", "duplicate"}
    expected = json.loads((corpus.root / "expected.json").read_text())
    assert expected["expected_status"] == corpus.expected_status
    protected = [str(path.relative_to(corpus.root)) for path in corpus.protected_paths]
    assert expected["protected"] == protected and all(path.is_file() for path in corpus.protected_paths)
    assert not set(protected) & {row["path"] for row in rows}  # the reference work is never offered for ingest
    duplicate = next(track for track in corpus.tracks if track.role == "duplicate")
    order = [row["path"] for row in rows]
    assert order.index(duplicate.copy_of) < order.index(duplicate.path)  # curator order keeps the original first


def test_audio_is_cd_rate_stereo_full_length_and_below_full_scale(corpus: CorpusSummary, decoded: dict) -> None:
    assert {track.container for track in corpus.tracks} == set(available_containers())
    for path, (audio, rate) in decoded.items():
        assert rate == 44_100 and audio.shape[0] == 2, path
        length = SECONDS if not path.startswith("protected/") else 1.5 * SECONDS
        assert abs(audio.shape[1] / rate - length) < 0.01, (path, audio.shape[1] / rate)
        peak = float(np.abs(audio).max())
        assert 0.3 < peak < 1.0 and rms_dbfs(audio) > -30.0, (path, peak)
        assert np.abs(audio[0] - audio[1]).max() > 0.01, path  # panned, not dual mono
    copy = next(track for track in corpus.tracks if track.role == "duplicate")  # lossy: compare levels, not peaks
    assert rms_dbfs(decoded[copy.path][0]) - rms_dbfs(decoded[copy.copy_of][0]) == pytest.approx(copy.gain_db, abs=0.3)


def test_licences_come_in_many_spellings_and_each_reads_back_to_its_spdx_id(corpus: CorpusSummary) -> None:
    rows = {row["path"]: row for row in _rows(corpus)}
    for track in corpus.tracks:
        candidates = read_tags(corpus.root / track.path).license_candidates
        result = combine_licenses(rows[track.path].get("license"), candidates)
        assert result.spdx_id == track.license, (track.path, result)
        if track.license is None:
            assert result.status == "missing"
    spellings = {track.license_text for track in corpus.tracks if track.role == "licensed"}
    assert len(spellings) >= 6 and any(text.startswith("https://") for text in spellings)
    assert any(text.islower() for text in spellings) and any(" " in text for text in spellings)


def test_tag_only_licences_are_in_vorbis_comments_and_id3_frames(corpus: CorpusSummary) -> None:
    tag_only = [track for track in corpus.tracks if track.license_in == "tags"]
    assert {track.container for track in tag_only} == {"flac", "ogg", "mp3"} & set(available_containers())
    for track in tag_only:
        path = corpus.root / track.path
        if track.container == "mp3":
            frames = ID3(path)
            assert "CC" in str(frames["TCOP"]) and frames["WCOP"].url.startswith("https://creativecommons.org/")
        else:
            tags = (FLAC if track.container == "flac" else OggVorbis)(path)
            assert tags["LICENSE"] == [track.license_text]
        assert track.rights_holder in read_tags(path).artist


def test_captions_state_the_parameters_the_score_was_written_from(corpus: CorpusSummary) -> None:
    for track in corpus.tracks:
        spec, caption = track.spec, track.spec.caption
        assert f"{spec.key} {spec.mode} at {spec.bpm} BPM" in caption
        assert all(name in caption for name in (spec.genre, spec.mood, spec.lead, spec.harmony, spec.bass))
        assert {f"{spec.bpm} bpm", f"{spec.key} {spec.mode}", spec.genre, spec.mood} <= set(spec.tags)
        score = compose(spec, SECONDS)
        scale = {(NOTE_NAMES.index(spec.key) + step) % 12 for step in SCALES[spec.mode]}
        for part in ("lead", "harmony", "bass"):
            assert {note.midi % 12 for note in score.notes[part]} <= scale, (track.path, part)
        first_bass = min(score.notes["bass"], key=lambda note: note.start_s)
        first_degree = ["i", "ii", "iii", "iv", "v", "vi", "vii"].index(spec.progression[0].lower())
        assert first_bass.midi % 12 == (NOTE_NAMES.index(spec.key) + SCALES[spec.mode][first_degree]) % 12
        step = 60.0 / spec.bpm / 4
        for hit in score.hits:  # every drum hit on the sixteenth grid, offbeat eighths late by the style's swing
            position = hit.start_s / step
            swung = position - 2 * spec.style.swing
            on_grid = abs(position - round(position)) < 1e-6
            assert on_grid or (abs(swung - round(swung)) < 1e-6 and round(swung) % 4 == 2), (track.path, hit)


def _captioned(corpus: CorpusSummary) -> dict[str, tuple[int, str, str]]:
    """(bpm, key, mode) of every file as its manifest row's tags state them: the text a model trains on."""
    out = {}
    for row in _rows(corpus):
        bpm = next(int(match[1]) for tag in row["tags"] if (match := re.fullmatch(r"(\d+) bpm", tag)))
        key, mode = next(match.groups() for tag in row["tags"]
                         if (match := re.fullmatch(r"([A-G][b#]?) (major|minor)", tag)))
        assert f"{key} {mode} at {bpm} BPM" in row["description"]
        out[row["path"]] = (bpm, key, mode)
    return out


def _onset_autocorrelation(audio: np.ndarray, rate: int, hop: int = 128) -> tuple[np.ndarray, float]:
    """Autocorrelation of spectral flux (positive log-magnitude change), the usual onset-strength signal."""
    frames = np.lib.stride_tricks.sliding_window_view(audio, 1024)[::hop] * np.hanning(1024)
    magnitude = np.log1p(100.0 * np.abs(np.fft.rfft(frames, axis=1)))
    flux = np.maximum(np.diff(magnitude, axis=0), 0.0).sum(axis=1)
    flux -= np.convolve(flux, np.ones(64) / 64, mode="same")
    return np.correlate(flux, flux, mode="full")[len(flux) - 1:], rate / hop


def test_the_beat_heard_in_the_audio_is_the_captioned_tempo(corpus: CorpusSummary, decoded: dict) -> None:
    """Autocorrelation of onsets peaks at the captioned beat period (searched within +-15 %) and nowhere near it."""
    for path, (bpm, _, _) in _captioned(corpus).items():
        audio, rate = decoded[path]
        correlation, frame_rate = _onset_autocorrelation(mono(audio), rate)
        lag = 60.0 * frame_rate / bpm
        window = np.arange(int(0.85 * lag), int(1.15 * lag) + 1)
        peak = int(window[np.argmax(correlation[window])])
        assert 60.0 * frame_rate / peak == pytest.approx(bpm, rel=0.015), path
        off_beat = correlation[[int(0.92 * lag), int(1.08 * lag)]]
        assert correlation[peak] > 0 and (off_beat < 0.5 * correlation[peak]).all(), path


def test_the_audio_sounds_in_the_captioned_key(corpus: CorpusSummary, decoded: dict) -> None:
    """Chroma above 130 Hz (where an 8192-point bin is narrower than a semitone) sits in the captioned scale.

    Overtones put some energy on notes outside the scale (the 3rd partial of the 7th degree), so the
    captioned key must be one of the two best of the twelve transpositions of its scale, not always the best.
    """
    for path, (_, key, mode) in _captioned(corpus).items():
        audio, rate = decoded[path]
        frames = np.lib.stride_tricks.sliding_window_view(mono(audio), 8192)[::4096] * np.hanning(8192)
        power = (np.abs(np.fft.rfft(frames, axis=1)) ** 2).sum(axis=0)
        freqs = np.fft.rfftfreq(8192, 1.0 / rate)
        band = (freqs > 130) & (freqs < 2000)
        pitch_classes = np.round(69 + 12 * np.log2(freqs[band] / 440.0)).astype(int) % 12
        chroma = np.bincount(pitch_classes, weights=power[band], minlength=12)
        fits = np.array([chroma[[(t + step) % 12 for step in SCALES[mode]]].sum() for t in range(12)])
        fits /= chroma.sum()
        tonic = NOTE_NAMES.index(key)
        assert fits[tonic] > 0.7 and (fits > fits[tonic]).sum() <= 1, (path, fits.round(2))


def _fingerprint(audio: np.ndarray, rate: int) -> np.ndarray:
    pcm = (np.clip(mono(audio), -1, 1) * 32767).astype("<i2").tobytes()
    encoded = acoustid.fingerprint(rate, 1, iter([pcm]))
    items, _ = chromaprint.decode_fingerprint(encoded)
    return np.asarray(items, dtype=np.int64).astype(np.uint32)


def test_distinct_tracks_are_far_apart_under_chromaprint_and_planted_copies_are_close(
        corpus: CorpusSummary, decoded: dict) -> None:
    prints = {path: _fingerprint(*audio) for path, audio in decoded.items()}
    overlap = 40  # ~5 s of items, ingestion's min_overlap_s
    copies = {track.path: track.copy_of for track in corpus.tracks if track.copy_of}
    assert len(copies) == 2
    for copy, original in copies.items():
        assert best_offset_ber(prints[original], prints[copy], overlap) < 0.15, copy
    originals = [path for path in prints if path not in copies]
    pairs = itertools.combinations(originals, 2)
    distances = {(a, b): best_offset_ber(prints[a], prints[b], overlap) for a, b in pairs}
    closest = min(distances, key=distances.get)
    assert distances[closest] > 0.36, (closest, distances[closest])
    assert np.mean(list(distances.values())) > 0.42


def test_best_offset_ber_finds_a_shifted_copy_and_respects_the_overlap() -> None:
    rng = np.random.default_rng(0)
    a = rng.integers(0, 2**32, 80, dtype=np.uint64).astype(np.uint32)
    assert best_offset_ber(a, a[17:67], 40) == 0.0
    assert best_offset_ber(a, rng.integers(0, 2**32, 60, dtype=np.uint64).astype(np.uint32), 40) > 0.4
    assert best_offset_ber(a[:30], a[25:], 10) > 0.3  # the copied 5 items are too few to count as an alignment
    assert best_offset_ber(a, np.zeros(0, dtype=np.uint32), 40) == 0.5


def test_same_seed_same_bytes_rerun_touches_nothing_and_stale_files_go(corpus: CorpusSummary, tmp_path: Path) -> None:
    folder = tmp_path / "small"
    small = synthesize_corpus(folder, tracks=1, seconds=SECONDS, seed=0)
    first = small.tracks[0].path  # a corpus's first tracks do not depend on how many follow
    assert (folder / first).read_bytes() == (corpus.root / first).read_bytes()

    def state() -> dict[str, tuple[str, int]]:
        return {str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
                for p in sorted(folder.rglob("*")) if p.is_file()}

    before = state()
    assert synthesize_corpus(folder, tracks=1, seconds=SECONDS, seed=0).expected_status == small.expected_status
    assert state() == before

    other = synthesize_corpus(folder, tracks=1, seconds=SECONDS, seed=1)
    assert before[first][0] != hashlib.sha256((folder / other.tracks[0].path).read_bytes()).hexdigest()
    audio = {str(p.relative_to(folder)) for p in folder.rglob("*") if p.suffix in (".wav", ".flac", ".ogg", ".mp3")}
    assert audio == set(other.expected_status) | {str(p.relative_to(folder)) for p in other.protected_paths}


def test_without_mp3_support_the_corpus_rotates_through_the_other_containers(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    formats = {name: text for name, text in sf.available_formats().items() if name != "MP3"}
    monkeypatch.setattr(sf, "available_formats", lambda: formats)
    summary = synthesize_corpus(tmp_path / "c", tracks=3, seconds=SECONDS, seed=2)
    assert {track.container for track in summary.tracks} == {"wav", "flac", "ogg"}
    assert any(track.license_in == "tags" for track in summary.tracks)


def test_arguments_that_cannot_make_a_working_demo_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least one"):
        synthesize_corpus(tmp_path / "a", tracks=0)
    with pytest.raises(ValueError, match="at least"):
        synthesize_corpus(tmp_path / "b", seconds=MIN_SECONDS - 1)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_planner_spreads_keys_and_rotates_genres() -> None:
    planner = Planner(5)
    specs = []
    for _ in range(12):
        spec = next(planner.candidates(1))
        planner.commit(spec)
        specs.append(spec)
    keys = {(spec.key, spec.mode) for spec in specs}
    assert len(keys) == 12
    genres = [spec.genre for spec in specs]
    assert all(a != b for a, b in itertools.pairwise(genres))


def test_ingesting_the_corpus_gives_every_file_its_expected_status(corpus: CorpusSummary, tmp_path: Path) -> None:
    """The demo's promise, run through ingestion's own analysis and decisions (without Prefect or Ray)."""
    from soundtrail.config import Settings
    from soundtrail.ingest.analyze import analyze_batch
    from soundtrail.ingest.blocklist import add_to_blocklist
    from soundtrail.ingest.catalog import Catalog
    from soundtrail.ingest.manifest import read_manifest, resolve_inputs
    from soundtrail.provenance.ledger import Ledger
    from soundtrail.workspace import Workspace

    workspace = Workspace(tmp_path / "ws", Settings())
    add_to_blocklist(workspace, corpus.protected_paths, "protected reference work")
    manifest = read_manifest(corpus.manifest_path)
    inputs = resolve_inputs([corpus.root / "tracks"], manifest)
    analyses = analyze_batch(inputs, workspace.settings.ingest, workspace.settings.licenses, str(corpus.manifest_path))
    ledger = Ledger(workspace.ledger_url)
    catalog = Catalog(ledger, workspace.settings.ingest, workspace.settings.licenses)
    statuses = {}
    for analysis in sorted(analyses, key=lambda a: (a["manifest_line"] or 1 << 30, a["path"])):
        with catalog.transaction(run_id="test") as writer:
            item = catalog.admit(analysis, writer, "test")
        statuses[str(Path(item.path).relative_to(corpus.root.resolve()))] = (item.status, item.reason)
    ledger.close()
    assert {path: status for path, (status, _) in statuses.items()} == corpus.expected_status, statuses


def test_same_arrangement_sees_one_backing_at_another_key_and_tempo() -> None:
    """G minor i-VI-III-VII is A major IV-I-V-vi a semitone up, started on another chord: the pair the release
    benchmark's landmark screen matched on their accompaniment alone."""
    house = TrackSpec(title="A", genre="house", bpm=121, key="G", mode="minor", progression=("i", "VI", "III", "VII"),
                      lead="bell", harmony="organ", bass="fm bass", seed=1)
    twin = TrackSpec(title="B", genre="house", bpm=118, key="A", mode="major", progression=("IV", "I", "V", "vi"),
                     lead="square lead", harmony="organ", bass="sine bass", seed=2)
    assert same_arrangement(house, twin) and same_arrangement(twin, house)
    assert not same_arrangement(house, twin, max_semitones=0)
    assert not same_arrangement(house, dataclasses.replace(twin, key="G"))  # three semitones below B-flat major
    assert not same_arrangement(house, dataclasses.replace(twin, bpm=131))  # 8.3 % faster
    assert not same_arrangement(house, dataclasses.replace(twin, harmony="electric piano"))
    assert not same_arrangement(house, dataclasses.replace(twin, progression=("I", "IV", "V", "vi")))
