"""Data-parallel training on Ray Train (gloo on two CPU workers): the loss falls, the ledger says what each rank
read, two workers of B take the step one worker of 2B takes, and a run whose workers are killed between
checkpoints resumes to the weights of a run never stopped.

One local Ray for the module; every test pays for its own worker groups (seconds each), so the runs are tiny.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from soundtrail import checkpoint
from soundtrail.config import ScalingSettings, Settings, TrainSettings
from soundtrail.data.storage import Storage
from soundtrail.flows.distributed import RayTrainLauncher
from soundtrail.models.ar import ARConfig
from soundtrail.models.codec import CodecConfig
from soundtrail.models.conditioning import LearnedTextConfig, LearnedTextEncoder
from soundtrail.train.ar import ARBatch, train_ar
from soundtrail.train.codec import CodecTrainConfig, run_codec
from soundtrail.train.diffusion import DiffusionFamily
from soundtrail.train.generator import GeneratorSettings, TrainingData
from soundtrail.train.loop import LoopConfig, Placement, StepCallback, TrainResult
from soundtrail.train.stage import generator_settings, train_generator, training_data
from soundtrail.train.unit import OptimizerConfig
from soundtrail.workspace import Workspace
from tests.audio_fixtures import melody, write
from tests.object_store import ObjectStore

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
TWO_CPU_WORKERS = ScalingSettings(workers=2, gpus_per_worker=0, max_failures=0)
CODEC = CodecConfig(sample_rate=8000, channels=4, strides=(4, 4, 2), latent_dim=16, num_codebooks=2, codebook_size=16)
V, K, T = 16, 2, 12
MUSICGEN_STEPS = 12
MUSICGEN_LEARNED = 0.5  # nats per code the two-worker fine-tuning must take off in MUSICGEN_STEPS steps


@pytest.fixture(scope="module", autouse=True)
def local_ray() -> Iterator[None]:
    """Two CPUs, as on the developers' machines; the workers import this checkout (and these tests)."""
    import ray

    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": path, "OMP_NUM_THREADS": "1"}})
    try:
        yield
    finally:
        ray.shutdown()


def test_two_workers_train_a_generator_and_the_ledger_names_each_ranks_shards(tmp_path: Path) -> None:
    from tests.train.test_stage import workspace_with_shards

    workspace, _, shards = workspace_with_shards(tmp_path, TrainSettings(
        ar_steps=20, batch_size=2, crop_seconds=0.25, text_encoder="learned", learning_rate=3e-3))

    steps: list[int] = []
    storage = Storage.of(workspace)
    trained = train_generator(workspace, "ar", on_step=lambda step, loss: steps.append(step),
                              launcher=RayTrainLauncher(TWO_CPU_WORKERS, storage))
    model = trained.model
    metrics = model.metrics
    print(f"two workers: AR loss {metrics['initial_loss']:.3f} -> {metrics['final_loss']:.4f} in 20 steps")
    assert metrics["final_loss"] < 0.2 * metrics["initial_loss"], metrics  # seen: 1.1 -> under 0.01
    assert steps == list(range(1, 21)), "rank 0's steps reach the caller"
    assert model.training["world_size"] == 2 and model.shards == tuple(shards)
    by_rank = model.training["shards_by_rank"]
    assert len(by_rank) == 2 and all(by_rank) and set(by_rank[0]) | set(by_rank[1]) == set(shards)
    folder = storage.fetch(model.path)
    document = checkpoint.read_config(folder)
    assert document["train"]["world_size"] == 2 and document["config"]["preset"] == "tiny"
    assert not (folder / "steps").exists(), "Ray Train's step checkpoints are gone once the model is"


def test_the_musicgen_family_fine_tunes_on_two_workers(tmp_path: Path) -> None:
    """The fine-tuning family goes through the same launcher: a tiny full MusicGen (its frozen T5 copied into the
    model folder once, by the rank that writes the model) fine-tunes on two gloo workers, and the record says so."""
    from soundtrail.train.musicgen import load_musicgen
    from soundtrail.train.pretrained import read_pretrained
    from tests.train.musicgen_bases import tiny_encodec, tiny_musicgen
    from tests.train.test_musicgen import add_assets, settings_for

    encodec = tiny_encodec(tmp_path / "encodec")
    base = tiny_musicgen(tmp_path / "musicgen", encodec)
    settings = settings_for(base, encodec).model_copy(update={"train": TrainSettings(
        musicgen_steps=MUSICGEN_STEPS, batch_size=2, crop_seconds=0.2, text_encoder="learned", ema_decay=0.0)})
    workspace = Workspace(tmp_path / "ws", settings)
    add_assets(workspace, range(3), encodec)

    storage = Storage.of(workspace)
    model = train_generator(workspace, "musicgen", launcher=RayTrainLauncher(TWO_CPU_WORKERS, storage)).model
    initial, final = model.metrics["initial_loss"], model.metrics["final_loss"]
    print(f"two workers: musicgen fine-tuning {initial:.3f} -> {final:.3f} in {MUSICGEN_STEPS} steps")
    assert final < initial - MUSICGEN_LEARNED, model.metrics
    assert model.base_model == read_pretrained(base).id and model.training["world_size"] == 2
    assert model.training["preset"] is None, "sized by its base model"
    by_rank = model.training["shards_by_rank"]
    assert len(by_rank) == 2 and set(by_rank[0]) | set(by_rank[1]) == set(model.shards)
    network = load_musicgen(storage.fetch(model.path), "cpu")  # the T5 copy's digest is checked against config.json
    assert network.generate(["calm piano"], 6, generator=torch.Generator().manual_seed(0)).shape == (1, 2, 6)


# --- one step of two workers against one worker of twice the batch; the uninterrupted reference run -----------


def ar_batches(batch_size: int, rank: int, world_size: int) -> callable:
    """Rank ``rank``'s share of a global batch of ``batch_size * world_size`` examples per step."""
    from tests.train.test_ar import dataset

    codes, captions = dataset()

    def make_batches(start: int) -> Iterator[ARBatch]:
        step = start
        while True:
            picks = np.random.default_rng([7, step]).integers(0, len(captions), size=batch_size * world_size)
            mine = picks[rank * batch_size:(rank + 1) * batch_size]
            yield codes[torch.from_numpy(mine)], [captions[i] for i in mine]
            step += 1

    return make_batches


def train_tiny_ar(directory: Path, steps: int, batch_size: int, placement: Placement,
                  on_step: StepCallback | None = None, dropout: float = 0.0) -> TrainResult:
    torch.manual_seed(3)
    encoder = LearnedTextEncoder(LearnedTextConfig(dim=32, n_layers=1, n_heads=2))
    config = ARConfig(n_codebooks=K, codebook_size=V, d_model=64, n_layers=2, n_heads=4, max_steps=32,
                      dropout=dropout, cond_dropout=dropout)
    return train_ar(ar_batches(batch_size, placement.rank, placement.world_size), directory, config,
                    LoopConfig(steps=steps, checkpoint_every=2), OptimizerConfig(lr=3e-3, warmup_steps=2,
                                                                                 ema_decay=0.9),
                    encoder, on_step=on_step, placement=placement)


def codec_files(folder: Path) -> list[str]:
    return [str(write(folder / f"m{index}.wav", melody(index, 1.0, 8000), 8000)) for index in range(3)]


def train_tiny_codec(directory: Path, files: list[str], batch_size: int, placement: Placement) -> TrainResult:
    train = CodecTrainConfig(batch_size=batch_size, segment_seconds=0.25, mel_fft_sizes=(256,), adversarial=True,
                             disc_channels=4, disc_fft_sizes=(256, 128))
    return run_codec(files, directory, CODEC, 1, train, None, placement)


def diffusion_on_shards(root: Path) -> tuple[TrainingData, GeneratorSettings]:
    from tests.train.test_stage import workspace_with_shards

    workspace, _, _ = workspace_with_shards(root, TrainSettings(diffusion_steps=3, batch_size=2, crop_seconds=0.25,
                                                                text_encoder="learned", ema_decay=0.0))
    return training_data(workspace), generator_settings(workspace, "diffusion")


@pytest.fixture(scope="module")
def two_worker_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """In one worker group: one step of AR and of the codec at 2 examples a rank, 3 steps of the diffusion family
    on shards, and 6 steps of an AR with dropout (the reference the killed run must meet). A Ray Train run is one
    training, so all but the last keep their step checkpoints in their own folders (rank 0 writes them, as a
    single process would)."""
    root = tmp_path_factory.mktemp("two-workers")
    files = codec_files(root / "audio")
    data, diffusion = diffusion_on_shards(root / "shards")

    def work(placement: Placement, on_step: StepCallback | None) -> TrainResult:
        own_folder = dataclasses.replace(placement, store=None)
        train_tiny_codec(root / "codec", files, 2, own_folder)
        train_tiny_ar(root / "ar", 1, 2, own_folder)
        DiffusionFamily().train(data, diffusion, root / "diffusion", None, own_folder)
        return train_tiny_ar(root / "reference", 6, 2, placement, dropout=0.1)

    RayTrainLauncher(TWO_CPU_WORKERS)(work, root / "reference", None)
    return root


def assert_same_weights(a: Path, b: Path, **tolerance: float) -> None:
    first, second = load_file(str(a / checkpoint.WEIGHTS)), load_file(str(b / checkpoint.WEIGHTS))
    assert first.keys() == second.keys()
    for name, tensor in first.items():
        torch.testing.assert_close(second[name], tensor, msg=name, **tolerance)


def test_one_step_of_two_workers_is_one_step_of_one_with_twice_the_batch(two_worker_runs: Path,
                                                                         tmp_path: Path) -> None:
    """AR (EMA on) and the codec (its adversary and codebooks too): world size 2 x 2 examples == 1 x 4."""
    torch.set_num_threads(1)
    train_tiny_ar(tmp_path / "ar", 1, 4, Placement())
    train_tiny_codec(tmp_path / "codec", codec_files(two_worker_runs / "audio"), 4, Placement())
    assert_same_weights(two_worker_runs / "ar", tmp_path / "ar", rtol=1e-5, atol=1e-6)
    assert_same_weights(two_worker_runs / "codec", tmp_path / "codec", rtol=1e-4, atol=1e-5)
    changed = load_file(str(two_worker_runs / "codec" / checkpoint.WEIGHTS))
    assert bool(changed["quantizer.codebooks.0.initialized"]), "the codebooks learned from the gathered batch"


def test_the_diffusion_family_trains_on_two_workers_with_the_whole_streams_statistics(two_worker_runs: Path,
                                                                                     tmp_path: Path) -> None:
    """Every rank normalises latents by the same statistics, those of the whole stream: what one process uses."""
    torch.set_num_threads(1)
    data, settings = diffusion_on_shards(tmp_path)
    alone = DiffusionFamily().train(data, dataclasses.replace(settings, steps=1), tmp_path / "alone", None,
                                    Placement())
    document = checkpoint.read_config(two_worker_runs / "diffusion")
    assert document["train"]["world_size"] == 2 and document["step"] == 3
    assert np.isfinite(document["final_loss"])
    two = load_file(str(two_worker_runs / "diffusion" / checkpoint.WEIGHTS))
    one = load_file(str(alone.checkpoint_dir / checkpoint.WEIGHTS))
    for name in ("dit.latent_mean", "dit.latent_std"):
        torch.testing.assert_close(two[name], one[name], msg=name)


# --- a run killed between checkpoints ---------------------------------------------------------------------


def test_workers_killed_between_checkpoints_resume_to_the_same_weights(two_worker_runs: Path, tmp_path: Path,
                                                                       object_store: ObjectStore) -> None:
    """Rank 1 dies after step 3 (checkpoint at 2): Ray Train restarts the group, which resumes at 2. It dies again
    after step 5 with no restarts left: the run fails, and the same command again resumes from Ray Train's
    snapshot: at 4, or at 2 when the worker died before Ray Train had taken in the step-4 report (a checkpoint
    counts once Ray Train has registered it). Either way it ends on the reference run's weights and losses.

    The step checkpoints live on an object store (Azurite, as a ``storage_uri`` puts them): the resumes read them
    back from there."""
    uri = object_store.uri()
    storage = Storage.of(Workspace(tmp_path, Settings(storage_uri=uri)))
    markers = tmp_path / "markers"
    markers.mkdir()

    def work(placement: Placement, on_step: StepCallback | None) -> TrainResult:
        def die(step: int, loss: float) -> None:
            marker = markers / f"killed-after-{step}"
            if placement.rank == 1 and step in (3, 5) and not marker.exists():
                marker.touch()
                os._exit(1)

        return train_tiny_ar(tmp_path / "run", 6, 2, placement, on_step=die, dropout=0.1)

    with pytest.raises(Exception):  # noqa: B017, PT011 - Ray Train's error for a worker group that died
        RayTrainLauncher(TWO_CPU_WORKERS.model_copy(update={"max_failures": 1}), storage)(work, tmp_path / "run",
                                                                                          None)
    assert sorted(path.name for path in markers.iterdir()) == ["killed-after-3", "killed-after-5"]
    assert not checkpoint.is_complete(tmp_path / "run")
    snapshot = object_store.files(uri)
    assert any(name.startswith("run/steps/step-") and name.endswith(checkpoint.TRAIN_STATE) for name in snapshot), \
        snapshot
    assert not (tmp_path / "run" / "steps").exists(), "the steps went to the object store, not the local folder"
    result = RayTrainLauncher(TWO_CPU_WORKERS, storage)(work, tmp_path / "run", None)
    assert not any(name.startswith("run/steps/") for name in object_store.files(uri)), "removed once finished"
    assert result.start_step in (2, 4) and result.total_steps == 6, result.start_step
    reference = checkpoint.read_config(two_worker_runs / "reference")
    assert result.final_loss == pytest.approx(reference["final_loss"], abs=0) and \
        result.initial_loss == pytest.approx(reference["initial_loss"], abs=0)
    assert_same_weights(two_worker_runs / "reference", tmp_path / "run", rtol=0, atol=0)
