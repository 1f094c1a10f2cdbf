"""Shards and checkpoints on ``storage_uri``: a ``file://`` folder elsewhere and a real object store (Azurite).

The same tests run against both: a local filesystem with rename, and an object store without directories or
rename where an object appears when its upload completes.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from soundtrail import checkpoint
from soundtrail.config import CodecSettings, Settings, TokenizeSettings, TrainSettings
from soundtrail.data.dataset import ShardStream
from soundtrail.data.location import Location, StorageError, open_filesystem
from soundtrail.data.shards import iter_segments, read_codec_info, shard_paths, verify_shards
from soundtrail.data.storage import Storage
from soundtrail.provenance.ledger import Ledger
from soundtrail.workspace import Workspace
from tests.data.test_shards import CODEC, write_set
from tests.object_store import ObjectStore


@pytest.fixture(params=["file", "azurite"])
def storage_uri(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A storage URI outside the workspace: another local folder, or a container on Azurite."""
    if request.param == "file":
        return (tmp_path / "elsewhere" / "soundtrail").as_uri()
    store: ObjectStore = request.getfixturevalue("object_store")
    return store.uri()


def test_a_shard_set_on_storage_is_the_same_bytes_and_batches_as_in_the_workspace(
        tmp_path: Path, storage_uri: str) -> None:
    storage = Storage.of(Workspace(tmp_path / "ws", Settings(storage_uri=storage_uri)))
    stored, local = storage.shards() / "set", Location.local(tmp_path / "local" / "set")
    write_set(stored, shards=3, per_shard=4)
    write_set(local, shards=3, per_shard=4)

    assert verify_shards(stored) == []
    assert read_codec_info(shard_paths(stored)[0]) == CODEC
    assert [shard.sha256() for shard in shard_paths(stored)] == [shard.sha256() for shard in shard_paths(local)]
    assert [row["segment_id"] for shard in shard_paths(stored) for row in iter_segments(shard)] == \
        [f"a{index}:{i}" for index in range(3) for i in range(4)]
    from_storage = ShardStream(shard_paths(stored), frames=16, batch_size=3, seed=4)
    from_workspace = ShardStream(shard_paths(local), frames=16, batch_size=3, seed=4)
    for step in range(5):
        assert torch.equal(from_storage.batch(step)["codes"], from_workspace.batch(step)["codes"])

    assert storage.root.files() == ["shards/set/manifest.json"] + [f"shards/set/part-{i:03d}.parquet"
                                                                      for i in range(3)]
    assert not (tmp_path / "ws" / "shards").exists(), "nothing of the shards lands in the workspace"
    reference = shard_paths(stored)[0].reference
    assert reference.startswith(storage_uri.split("?")[0]) and "Eby8" not in reference
    assert storage.locate(reference).sha256() == shard_paths(stored)[0].sha256()

    (stored / "part-001.parquet").write_bytes(b"not the shard")
    (stored / "part-002.parquet").delete()
    assert verify_shards(stored) == ["part-001.parquet: sha256 differs from the manifest",
                                     "part-002.parquet: missing"]


def _finished_checkpoint(folder: Path) -> None:
    """A checkpoint folder as training leaves it: weights, a sub-folder, step checkpoints, config.json last."""
    (folder / "text_encoder").mkdir(parents=True)
    (folder / "steps" / "step-3").mkdir(parents=True)
    (folder / checkpoint.WEIGHTS).write_bytes(np.arange(1000, dtype=np.float32).tobytes())
    (folder / "text_encoder" / "tokenizer.json").write_text('{"vocab": 3}')
    (folder / "steps" / "step-3" / checkpoint.TRAIN_STATE).write_bytes(b"optimizer state")
    (folder / checkpoint.CONFIG).write_text('{"kind": "ar"}')


def test_a_published_checkpoint_is_fetched_whole_where_the_workspace_lost_it(
        tmp_path: Path, storage_uri: str) -> None:
    workspace = Workspace(tmp_path / "ws", Settings(storage_uri=storage_uri))
    storage = Storage.of(workspace)
    folder = workspace.path("checkpoints") / "ar" / "run1"
    _finished_checkpoint(folder)

    reference = storage.publish(folder, leave_out=("steps",))
    assert storage.root.files() == ["checkpoints/ar/run1/config.json", "checkpoints/ar/run1/model.safetensors",
                                      "checkpoints/ar/run1/text_encoder/tokenizer.json"], "steps/ stays behind"
    assert storage.publish(folder, leave_out=("steps",)) == reference, "publishing again finds it published"

    expected = {name: (folder / name).read_bytes() for name in (checkpoint.WEIGHTS, checkpoint.CONFIG,
                                                                "text_encoder/tokenizer.json")}
    shutil.rmtree(workspace.root / "checkpoints")
    fetched = storage.fetch(reference)
    assert fetched == folder
    assert {name: (fetched / name).read_bytes() for name in expected} == expected
    assert not (fetched / "steps").exists()


def test_an_unfinished_upload_or_download_is_never_taken_for_a_checkpoint(tmp_path: Path, storage_uri: str) -> None:
    workspace = Workspace(tmp_path / "ws", Settings(storage_uri=storage_uri))
    storage = Storage.of(workspace)
    folder = workspace.path("checkpoints") / "ar" / "run2"
    _finished_checkpoint(folder)
    (folder / checkpoint.CONFIG).unlink()
    with pytest.raises(StorageError, match="is not finished: it has no config.json"):
        storage.publish(folder)

    # An upload killed before its last file: the weights are there, config.json is not.
    target = storage.mirror(folder)
    (target / checkpoint.WEIGHTS).upload_from(folder / checkpoint.WEIGHTS)
    with pytest.raises(StorageError, match="holds no finished checkpoint"):
        storage.fetch(target.reference)

    # Finished now; a download killed before config.json left the weights only: it is downloaded again.
    (folder / checkpoint.CONFIG).write_text('{"kind": "ar"}')
    reference = storage.publish(folder)
    shutil.rmtree(folder)
    folder.mkdir(parents=True)
    (folder / checkpoint.WEIGHTS).write_bytes(b"half a download")
    assert checkpoint.is_complete(storage.fetch(reference))
    assert (folder / checkpoint.WEIGHTS).read_bytes() == np.arange(1000, dtype=np.float32).tobytes()


def test_storage_refuses_secrets_in_its_uri_and_references_from_elsewhere(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="must not carry a password"):
        open_filesystem("s3://KEYID:SECRET@bucket/soundtrail")
    with pytest.raises(StorageError, match="storage_uri 'nowhere://x'"):
        open_filesystem("nowhere://x")
    storage = Storage.of(Workspace(tmp_path / "ws", Settings(storage_uri=(tmp_path / "a").as_uri())))
    with pytest.raises(StorageError, match="stored under another storage_uri"):
        storage.locate((tmp_path / "b" / "shards" / "x.parquet").as_uri())


def test_without_storage_uri_the_workspace_is_the_storage_and_references_are_its_paths(tmp_path: Path) -> None:
    """What a workspace from before storage_uri recorded (plain paths) is what it records and reads now."""
    workspace = Workspace(tmp_path / "ws", Settings())
    storage = Storage.of(workspace)
    folder = workspace.path("checkpoints") / "ar" / "run3"
    _finished_checkpoint(folder)
    assert storage.publish(folder, leave_out=("steps",)) == str(folder)
    assert storage.fetch(str(folder)) == folder
    assert (storage.shards() / "set" / "part-0.parquet").reference == str(workspace.root / "shards" / "set" /
                                                                          "part-0.parquet")


def test_training_on_storage_then_generating_on_a_workspace_that_lost_its_checkpoints(
        tmp_path: Path, object_store: ObjectStore) -> None:
    """Codec, shards and model go to Azurite; with the workspace's checkpoints gone, a plan still finds the model
    and a release fetches model and codec back and screens against the stored shards (the stages as the flows
    run them, in this process)."""
    from soundtrail.release.generate import generate
    from soundtrail.train.stage import plan_generator, train_generator, train_workspace_codec
    from tests.codec.test_codecs import TINY
    from tests.train.test_stage import workspace_with_assets

    uri = object_store.uri()
    settings = Settings(storage_uri=uri, codec=CodecSettings(steps=2, batch_size=2, segment_s=0.25),
                        tokenize=TokenizeSettings(segment_s=1.0),
                        train=TrainSettings(ar_steps=3, batch_size=2, crop_seconds=0.25, text_encoder="learned"))
    workspace = workspace_with_assets(tmp_path / "ws", settings)
    codec = train_workspace_codec(workspace, config=TINY).codec
    _tokenize(workspace)
    model = train_generator(workspace, "ar").model
    assert model.metrics["final_loss"] < model.metrics["initial_loss"]

    stored = object_store.files(uri)
    assert codec.path.startswith(uri.split("?")[0]) and model.path.startswith(uri.split("?")[0])
    assert any(name.startswith("shards/") and name.endswith("/manifest.json") for name in stored)
    assert f"{model.path.split('?')[0].removeprefix(uri.split('?')[0] + '/')}/{checkpoint.WEIGHTS}" in stored
    assert not (workspace.root / "shards").exists()
    assert not any("/steps/" in name for name in stored)

    shutil.rmtree(workspace.root / "checkpoints")
    assert plan_generator(workspace, "ar").model == model, "the plan finds the stored model: nothing to train"
    released = generate(workspace, "ar", "melody", 1.0, seed=1)  # screened against the shards on Azurite
    assert released["status"] == "released" and Path(released["path"]).is_file()
    with Ledger(workspace.ledger_url) as ledger:
        screening = ledger.get("outputs", released["output_id"])["screening"]
    assert "tokens" in screening["methods"], "the token method read the stored shards"
    assert checkpoint.is_complete(Path(model.path.split("?")[0].replace(uri.split("?")[0], str(workspace.root))))


def _tokenize(workspace: Workspace) -> dict:
    """The tokenize flow's steps in this process, into the workspace's storage."""
    from soundtrail.codec.stage import resolve_codec, tokenize_plan
    from soundtrail.codec.tokenize import GroupEncoder, finalize_set

    plan = tokenize_plan(workspace, resolve_codec(workspace))
    with GroupEncoder(plan.codec_path, plan.set_dir, 1.0, batch_size=4) as encoder:
        entries = [encoder.encode(group).entry for group in plan.groups]
    with Ledger(workspace.ledger_url) as ledger:
        return finalize_set(ledger, plan, [entry for entry in entries if entry], 1.0, None)


def test_a_workspace_given_a_storage_uri_later_writes_its_shards_there_and_keeps_its_models(
        tmp_path: Path) -> None:
    """The same shards (same bytes, same ids) written again to the new storage, their rows pointing there; the
    model trained on them before keeps being the family's model (recorded at its workspace folder)."""
    from soundtrail.codec.stage import choose_codec, record_codec
    from soundtrail.provenance.records import CodecRecord
    from soundtrail.train.stage import plan_generator, train_generator, training_data
    from tests.codec.test_tokenize import tiny_codec
    from tests.train.test_stage import workspace_with_assets

    settings = Settings(tokenize=TokenizeSettings(segment_s=1.0),
                        train=TrainSettings(ar_steps=2, batch_size=2, crop_seconds=0.25, text_encoder="learned"))
    workspace = workspace_with_assets(tmp_path / "ws", settings)
    codec_path, codec_id = tiny_codec(tmp_path / "codec")
    with Ledger(workspace.ledger_url) as ledger:
        record_codec(ledger, CodecRecord(codec_id, "soundtrail", codec_path, {}, ()))
        choose_codec(ledger, codec_id, "the test's codec")
    _tokenize(workspace)
    model = train_generator(workspace, "ar").model
    with Ledger(workspace.ledger_url) as ledger:
        before = {row["id"]: row["path"] for row in ledger.rows("shards", status="current")}
    assert all(path.startswith(str(workspace.root / "shards")) for path in before.values())

    uri = (tmp_path / "archive").as_uri()
    moved = Workspace(workspace.root, settings.model_copy(update={"storage_uri": uri}))
    assert _tokenize(moved)["new_shards"] == len(before)
    with Ledger(moved.ledger_url) as ledger:
        after = {row["id"]: row["path"] for row in ledger.rows("shards", status="current")}
        assert ledger.verify().ok
    assert after.keys() == before.keys(), "the same bytes: the same shard ids"
    assert all(path.startswith(uri + "/shards/") for path in after.values())
    assert sorted(file.reference for file in training_data(moved).files) == sorted(after.values())
    plan = plan_generator(moved, "ar")
    assert (plan.model, plan.reason) == (model, "trained on the current shards already")
