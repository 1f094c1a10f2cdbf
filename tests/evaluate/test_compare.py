"""Generator comparison: Fréchet distance properties, and the report on a tiny in-process workspace."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import ortho_group

from soundtrail.codec.stage import choose_codec, split_assets
from soundtrail.config import Settings, TokenizeSettings, TrainSettings
from soundtrail.data.storage import Storage
from soundtrail.evaluate.compare import (
    CompareConfig,
    Gaussian,
    MelFrames,
    compare_generators,
    frechet_distance,
    write_report,
)
from soundtrail.provenance.ledger import Ledger, utc_now
from soundtrail.train.stage import resolve_model, train_generator
from soundtrail.workspace import Workspace
from tests.audio_fixtures import melody, write, write_manifest
from tests.codec.test_tokenize import tokenize
from tests.conftest import run_cli
from tests.ingest.test_catalog import ingest
from tests.release.workspaces import corpus_codec

# ---------------------------------------------------------------------------------------------------------------
# Fréchet distance
# ---------------------------------------------------------------------------------------------------------------


def gaussian(mean: np.ndarray, cov: np.ndarray) -> Gaussian:
    return Gaussian(np.asarray(mean, dtype=np.float64), np.asarray(cov, dtype=np.float64), frames=1000)


def correlated_frames(seed: int, n: int = 400, d: int = 8) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)) @ rng.standard_normal((d, d)) + rng.standard_normal(d)


def test_distance_of_a_set_to_itself_is_zero() -> None:
    stats = Gaussian.fit(correlated_frames(0))
    assert frechet_distance(stats, stats) == pytest.approx(0.0, abs=1e-6 * np.trace(stats.cov))


def test_distance_is_the_squared_mean_shift_between_equal_covariances_and_grows_with_it() -> None:
    base = Gaussian.fit(correlated_frames(1))
    direction = np.random.default_rng(2).standard_normal(len(base.mean))
    distances = []
    for size in (0.5, 1.0, 2.0, 4.0):
        shifted = Gaussian(base.mean + size * direction, base.cov, base.frames)
        distances.append(frechet_distance(base, shifted))
        assert distances[-1] == pytest.approx(size**2 * direction @ direction, rel=1e-6)
    assert distances == sorted(distances) and distances[0] > 0


def test_distance_matches_the_closed_form_for_diagonal_gaussians() -> None:
    rng = np.random.default_rng(3)
    mean_a, mean_b = rng.standard_normal(6), rng.standard_normal(6)
    var_a, var_b = rng.uniform(0.1, 4.0, 6), rng.uniform(0.1, 4.0, 6)
    expected = np.sum((mean_a - mean_b) ** 2) + np.sum((np.sqrt(var_a) - np.sqrt(var_b)) ** 2)
    got = frechet_distance(gaussian(mean_a, np.diag(var_a)), gaussian(mean_b, np.diag(var_b)))
    assert got == pytest.approx(expected, rel=1e-9)


def test_distance_matches_the_closed_form_for_rotated_covariances() -> None:
    """S_a = R A R^T, S_b = R B R^T commute, so (S_a S_b)^(1/2) = R (AB)^(1/2) R^T: a full, non-diagonal case."""
    rotation = ortho_group.rvs(5, random_state=4)
    var_a, var_b = np.array([0.2, 1.0, 2.0, 3.0, 5.0]), np.array([4.0, 0.5, 2.0, 0.1, 1.0])
    a = gaussian(np.zeros(5), rotation @ np.diag(var_a) @ rotation.T)
    b = gaussian(np.ones(5), rotation @ np.diag(var_b) @ rotation.T)
    expected = 5.0 + np.sum((np.sqrt(var_a) - np.sqrt(var_b)) ** 2)
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-8)
    assert frechet_distance(b, a) == pytest.approx(frechet_distance(a, b), rel=1e-9)


def test_singular_covariances_give_the_closed_form_within_the_regularisation() -> None:
    """A dimension constant in both sets makes both covariances singular; the eps diagonal keeps it finite."""
    a = gaussian(np.zeros(3), np.diag([1.0, 0.0, 0.0]))
    b = gaussian(np.zeros(3), np.diag([4.0, 0.0, 9.0]))
    assert frechet_distance(a, b) == pytest.approx(1.0 + 9.0, rel=1e-4)
    zero = gaussian(np.zeros(3), np.zeros((3, 3)))
    assert frechet_distance(zero, zero) == pytest.approx(0.0, abs=1e-12)


def test_fewer_frames_than_dimensions_still_give_a_finite_distance() -> None:
    few = Gaussian.fit(np.random.default_rng(5).standard_normal((6, 32)))
    other = Gaussian.fit(np.random.default_rng(6).standard_normal((6, 32)) + 1.0)
    assert frechet_distance(few, few) == pytest.approx(0.0, abs=1e-3 * np.trace(few.cov))
    assert np.isfinite(frechet_distance(few, other)) and frechet_distance(few, other) > 0


def test_invalid_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="two frames"):
        Gaussian.fit(np.zeros((1, 4)))
    with pytest.raises(ValueError, match="width"):
        frechet_distance(gaussian(np.zeros(2), np.eye(2)), gaussian(np.zeros(3), np.eye(3)))


def test_mel_embedding_tells_one_tone_colour_from_another() -> None:
    """Two takes of the same sound are closer than two different sounds (the point of the embedding)."""
    rate = 8000
    t = np.arange(2 * rate) / rate
    rng = np.random.default_rng(7)
    embed = MelFrames(rate)

    def tone(freq: float) -> np.ndarray:
        return (0.3 * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(len(t))).astype(np.float32)

    same = frechet_distance(Gaussian.fit(embed(tone(440))), Gaussian.fit(embed(tone(440))))
    different = frechet_distance(Gaussian.fit(embed(tone(440))), Gaussian.fit(embed(tone(1320))))
    assert embed(tone(440)).shape[1] == 64
    assert different > 30 * same  # "same" is not 0: 126 frames in 64 dimensions bias FD upward


# ---------------------------------------------------------------------------------------------------------------
# The report on a tiny workspace: ingest, tiny codec, shards, a few training steps of each family
# ---------------------------------------------------------------------------------------------------------------

TINY_SETTINGS = Settings(
    tokenize=TokenizeSettings(segment_s=1.0),
    train=TrainSettings(ar_steps=3, diffusion_steps=3, batch_size=2, crop_seconds=0.25, text_encoder="learned"),
)
TINY_COMPARE = CompareConfig(seconds=0.5, prompts=2, diffusion_steps=(2, 1), warmup_seconds=0.1)



@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """Three accepted assets (one held out of the codec), a k-means-initialised tiny codec, its shards, and
    three training steps of each generator family through the real stage function."""
    root = tmp_path_factory.mktemp("compare")
    corpus = root / "corpus"
    rows = []
    for seed in (21, 22, 23):
        write(corpus / f"track{seed}.flac", melody(seed, 6.0))
        rows.append({"path": f"track{seed}.flac", "license": "CC0-1.0", "rights_holder": f"Label {seed}",
                     "description": f"plucked melody number {seed}"})
    workspace = Workspace(root / "ws", TINY_SETTINGS)
    ingest(workspace, [corpus], write_manifest(corpus, rows))
    ledger = Ledger(workspace.ledger_url)
    train_rows, _ = split_assets(ledger.rows("assets", status="accepted"))
    codec_path, codec_id = corpus_codec(workspace.path("checkpoints") / "codec",
                                        [Path(row["path"]) for row in train_rows])
    ledger.record("codecs", codec_id, {"kind": "soundtrail", "path": codec_path, "created_at": utc_now(),
                                       "assets": [row["id"] for row in train_rows]}, "codec.trained")
    choose_codec(ledger, codec_id, "the test's codec")
    tokenize(ledger, Storage.of(workspace).shards(), codec_path, codec_id)
    ledger.close()
    for kind in ("ar", "diffusion"):
        train_generator(workspace, kind)
    return workspace


def test_report_compares_both_families_on_the_same_prompts_and_writes_plot_and_json(trained: Workspace) -> None:
    report = write_report(trained, compare_generators(trained, TINY_COMPARE))
    labels = [row["label"] for row in report["results"]]
    assert labels == ["ar", "diffusion 1 steps", "diffusion 2 steps"]
    ledger = Ledger(trained.ledger_url)
    _, held = split_assets(ledger.rows("assets", status="accepted"))
    ledger.close()
    assert [p["asset_id"] for p in report["prompts"]] == [held[0]["id"]] * 2
    assert [p["seed"] for p in report["prompts"]] == [0, 1]
    assert report["prompts"][0]["caption"] == held[0]["description"]
    for row in report["results"]:
        assert row["rtf"] > 0 and row["audio_seconds"] == pytest.approx(2 * 0.5)
        assert set(row["fd"]) == {"mel", "codec"}
        assert all(np.isfinite(value) and value >= 0 for value in row["fd"].values())
    assert all(np.isfinite(value) for value in report["codec_floor"].values())
    plot = Path(report["plot"])
    assert plot == trained.root / "reports" / "compare.png"
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((trained.root / "reports" / "compare.json").read_text())["results"] == report["results"]
    assert not list((trained.root / "reports").glob(".tmp-*"))


def test_cli_prints_one_json_object_and_refuses_bad_step_lists(trained: Workspace, capsys) -> None:
    code, out, _ = run_cli(["eval", "compare", "--seconds", "0.5", "--prompts", "1", "--diffusion-steps", "1",
                            "--json", "-w", trained.root], capsys)
    assert code == 0
    document = json.loads(out)
    assert [row["label"] for row in document["results"]] == ["ar", "diffusion 1 steps"]
    code, _, err = run_cli(["eval", "compare", "--diffusion-steps", "8,zero", "-w", trained.root], capsys)
    assert code == 2 and "comma-separated" in err


def test_missing_models_are_named_with_the_command_that_makes_them(tmp_path: Path, capsys) -> None:
    Ledger(Workspace(tmp_path / "empty").ledger_url).close()  # a workspace with nothing in it yet
    code, _, err = run_cli(["eval", "compare", "-w", tmp_path / "empty"], capsys)
    assert code == 1 and "run `soundtrail train ar`" in err


def test_models_on_different_codecs_are_not_compared(trained: Workspace, tmp_path: Path) -> None:
    """Each family decodes through its own codec: comparing across codecs would measure the codecs."""
    workspace = Workspace(shutil.copytree(trained.root, tmp_path / "ws"), TINY_SETTINGS)
    ledger = Ledger(workspace.ledger_url)
    diffusion = dataclasses.replace(resolve_model(workspace, "diffusion"), codec_id="another-codec",
                                    created_at=utc_now())
    ledger.record("models", "newer-diffusion", diffusion.fields(), "model.trained")
    ledger.close()
    with pytest.raises(ValueError, match="uses codec another-codec.*`soundtrail train diffusion`"):
        compare_generators(workspace, TINY_COMPARE)
