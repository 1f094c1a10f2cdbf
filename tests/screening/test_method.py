"""The screening contract: a method registered beside the others is built, run, thresholded, saved and loaded by
the Screener, and every threshold is declared once, with ``[screening]`` overriding it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from soundtrail.config import ConfigError
from soundtrail.screening.method import Content, Match, ScreeningMethod
from soundtrail.screening.registry import METHODS
from soundtrail.screening.screener import Levels, Screener, ScreenThresholds, saved_methods, verdict_of
from soundtrail.screening.stage import screen_thresholds
from soundtrail.workspace import Workspace
from tests.screening.test_signals import SAMPLE_RATE, synth_music

SR = SAMPLE_RATE
PROBE = 256  # samples compared at each probe of the query ...
PROBE_EVERY_S = 0.5  # ... and how often the query is probed


def _pcm(audio: np.ndarray) -> np.ndarray:
    return np.round(np.clip(audio, -1.0, 1.0) * 32767).astype(np.int16)


def _true_runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """(start, stop) of each run of True."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], flags.astype(np.int8), [0]])))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


class ExactSamplesMethod(ScreeningMethod):
    """A method registered only in these tests: stretches of the query whose 16-bit samples equal an asset's, found
    by probing the query every half second and checking each probe's every place in the assets. Real, but it
    finds bit-exact copies only."""

    name = "exact"
    reads = "audio"
    flag = 0.9
    block = 0.99
    version = 1

    def __init__(self, frame_rate: float | None = None) -> None:
        self.assets: dict[str, tuple[int, np.ndarray]] = {}  # asset id -> (sample rate, its samples)

    @property
    def asset_ids(self) -> list[str]:
        return list(self.assets)

    def add(self, asset_id: str, content: Content) -> None:
        if asset_id in self.assets:
            raise ValueError(f"{asset_id} is already indexed")
        self.assets[asset_id] = (content.sample_rate, _pcm(content.audio))

    def query(self, content: Content, min_duration_s: float, min_score: float,
              proposals: Sequence[Match] = ()) -> list[Match]:
        query, rate = _pcm(content.audio), content.sample_rate
        matches = []
        for asset_id, (asset_rate, samples) in self.assets.items():
            offsets = set()
            for at in range(0, len(query) - PROBE, int(PROBE_EVERY_S * rate)) if asset_rate == rate else ():
                probe = query[at:at + PROBE]
                places = np.flatnonzero(samples[:len(samples) - PROBE] == probe[0])
                offsets |= {int(p) - at for p in places if np.array_equal(samples[p:p + PROBE], probe)}
            for offset in sorted(offsets):  # asset sample = query sample + offset
                first, stop = max(0, -offset), min(len(query), len(samples) - offset)
                for start, end in _true_runs(query[first:stop] == samples[first + offset:stop + offset]):
                    if end - start >= min_duration_s * rate:
                        matches.append(Match(asset_id, (first + start) / rate, (first + start + offset) / rate,
                                             (end - start) / rate, score=1.0, method=self.name))
        return matches

    def save(self, directory: Path) -> None:
        np.savez(directory / "samples.npz", *(samples for _, samples in self.assets.values()),
                 ids=np.array(self.asset_ids), rates=np.array([rate for rate, _ in self.assets.values()]))

    @classmethod
    def load(cls, directory: Path) -> ExactSamplesMethod:
        method = cls()
        with np.load(directory / "samples.npz") as stored:
            method.assets = {str(asset_id): (int(stored["rates"][i]), stored[f"arr_{i}"])
                             for i, asset_id in enumerate(stored["ids"])}
        return method


WITH_EXACT = (*METHODS, ExactSamplesMethod)


@pytest.fixture(scope="module")
def tracks() -> list[np.ndarray]:
    return [synth_music(16.0, seed) for seed in range(3)]


@pytest.fixture(scope="module")
def screener(tracks) -> Screener:
    screener = Screener(methods=WITH_EXACT)
    for i, track in enumerate(tracks):
        screener.add_asset(f"a{i}", track, SR)
    return screener


def _copied(tracks: list[np.ndarray]) -> np.ndarray:
    """8 s of asset a1 from its 2 s mark, planted at 5 s of 20 s of other music."""
    query = synth_music(20.0, 77)
    query[5 * SR:13 * SR] = tracks[1][2 * SR:10 * SR]
    return query


def test_a_registered_method_is_run_and_its_matches_alone_decide_the_verdict(tracks, screener) -> None:
    assert len(screener.methods["exact"]) == len(screener) == 3
    result = screener.screen(_copied(tracks), SR)
    found = [m for m in result.matches if m.method == "exact"]
    assert result.verdict == "block" and found and {m.asset_id for m in found} == {"a1"}
    assert all(m.asset_offset_s - m.query_offset_s == pytest.approx(2.0 - 5.0, abs=0.05) for m in found)

    others_silent = ScreenThresholds.declared(WITH_EXACT, chromaprint_flag=2.0, chromaprint_block=2.0,
                                              landmarks_flag=2.0, landmarks_block=2.0)
    only_exact = verdict_of(screener.matches(_copied(tracks), SR), others_silent)
    assert only_exact.verdict == "block" and {m.method for m in only_exact.matches} == {"exact"}
    exact_flags_only = ScreenThresholds.declared(WITH_EXACT, **{**others_silent.to_dict(), "exact_block": 2.0})
    assert verdict_of(screener.matches(_copied(tracks), SR), exact_flags_only).verdict == "flag"
    assert screener.screen(synth_music(20.0, 400), SR).verdict == "pass"


def test_a_saved_screener_holds_every_registered_method_and_no_other(tmp_path, tracks, screener) -> None:
    screener.save(tmp_path / "with")
    reloaded = Screener.load(tmp_path / "with", methods=WITH_EXACT)
    assert reloaded.thresholds == screener.thresholds
    assert reloaded.screen(_copied(tracks), SR) == screener.screen(_copied(tracks), SR)
    without = Screener.load(tmp_path / "with")  # the registry as shipped: the extra folder is not read
    assert list(without.methods) == [method.name for method in METHODS]
    assert "exact" not in {m.method for m in without.matches(_copied(tracks), SR)}

    without.save(tmp_path / "without")
    with pytest.raises(FileNotFoundError, match="exact"):  # saved before the method was registered: incomplete
        Screener.load(tmp_path / "without", methods=WITH_EXACT)
    assert list(saved_methods(tmp_path / "without", WITH_EXACT)) == [method.name for method in METHODS]


def test_methods_run_after_the_methods_whose_matches_they_take(tracks) -> None:
    received: list[Match] = []

    class Listener(ExactSamplesMethod):
        name = "listener"
        proposals_from = ("exact",)

        def query(self, content: Content, min_duration_s: float, min_score: float,
                  proposals: Sequence[Match] = ()) -> list[Match]:
            received.extend(proposals)
            return []

    listening = Screener(methods=(Listener, ExactSamplesMethod))  # listed first, run second
    for i, track in enumerate(tracks):
        listening.add_asset(f"a{i}", track, SR)
    matches = listening.matches(_copied(tracks), SR)
    assert received and received == [m for m in matches if m.method == "exact"]

    class Ping(ExactSamplesMethod):
        name = "ping"
        proposals_from = ("pong",)

    class Pong(ExactSamplesMethod):
        name = "pong"
        proposals_from = ("ping",)

    with pytest.raises(ValueError, match="cycle"):
        Screener(methods=(Ping, Pong)).matches(_copied(tracks), SR)
    with pytest.raises(ValueError, match="share a name"):
        Screener(methods=(ExactSamplesMethod, ExactSamplesMethod))


def test_thresholds_are_declared_once_on_the_methods_and_workspace_keys_override_them(tmp_path) -> None:
    declared = ScreenThresholds.declared(WITH_EXACT)
    assert declared.levels == {method.name: Levels(method.flag, method.block) for method in WITH_EXACT}

    (tmp_path / "soundtrail.toml").write_text("[screening]\nexact_block = 0.95\nlandmarks_flag = 0.5\n"
                                              "min_match_s = 4\n")
    configured = screen_thresholds(Workspace(tmp_path), WITH_EXACT)
    assert configured.levels["exact"] == Levels(ExactSamplesMethod.flag, 0.95)
    assert configured.flag_at("landmarks") == 0.5 and configured.min_match_s == 4.0
    assert configured.boundary_tolerance_s == declared.boundary_tolerance_s
    assert {name: configured.levels[name] for name in ("chromaprint", "tokens")} == {
        name: declared.levels[name] for name in ("chromaprint", "tokens")}

    every_key = {key: round(value / 2, 3) for key, value in ScreenThresholds.declared().to_dict().items()}
    (tmp_path / "soundtrail.toml").write_text("[screening]\n" + "".join(f"{k} = {v}\n" for k, v in every_key.items()))
    assert screen_thresholds(Workspace(tmp_path)).to_dict() == every_key

    (tmp_path / "soundtrail.toml").write_text("[screening]\nexakt_block = 0.99\n")  # a method never registered
    with pytest.raises(ConfigError, match="exakt_block: unknown key"):
        screen_thresholds(Workspace(tmp_path), WITH_EXACT)
    (tmp_path / "soundtrail.toml").write_text("[screening]\nexact_blocking = 0.99\n")  # not a threshold's form
    with pytest.raises(ConfigError, match="screening.exact_blocking: unknown key"):
        Workspace(tmp_path)
