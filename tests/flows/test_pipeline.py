"""The end-to-end pipeline on a tiny corpus: every stage (shards and checkpoints on an object store), a re-run
that appends nothing, lineage events, Prefect artifacts, and an ingest that survives a Ray worker killed in the
middle of a task."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from unittest import mock

import pytest

from soundtrail.corpus import synthesize_corpus
from soundtrail.corpus.build import BLOCKLIST_REASON
from soundtrail.data.location import AZURE_ACCOUNT_KEY
from soundtrail.data.storage import Storage
from soundtrail.ingest.blocklist import add_to_blocklist
from soundtrail.provenance.ledger import Ledger
from soundtrail.workspace import Workspace
from tests.audio_fixtures import melody, write
from tests.codec.test_codecs import save_tiny_encodec
from tests.object_store import KEY, ObjectStore

pytestmark = pytest.mark.slow

TINY_PIPELINE = """
[pipeline]
inputs = ["inputs/tracks"]
manifest = "inputs/manifest.jsonl"
prompts = ["calm piano with soft pads"]
generate_seconds = 2.0
[codec]
steps = 12
segment_s = 0.5
[tokenize]
segment_s = 2.0
[train]
ar_steps = 40
diffusion_steps = 12
batch_size = 4
crop_seconds = 1.0
text_encoder = "learned"
"""


@pytest.fixture(scope="module")
def pipeline_workspace(tmp_path_factory, azurite: ObjectStore) -> Iterator[Workspace]:
    """The scheduled runs below keep their shards and checkpoints on object storage (Azurite), as a cluster
    deployment with ``storage_uri`` does; the stages reach it from the pipeline's Ray workers."""
    root = tmp_path_factory.mktemp("pipeline")
    (root / "soundtrail.toml").write_text(f'storage_uri = "{azurite.uri()}"\n' + TINY_PIPELINE)
    corpus = synthesize_corpus(root / "inputs", tracks=4, seconds=8.0, seed=3)
    with pytest.MonkeyPatch.context() as environment:
        environment.setenv(AZURE_ACCOUNT_KEY, KEY)
        ws = Workspace(root)
        add_to_blocklist(ws, list(corpus.protected_paths), BLOCKLIST_REASON)
        yield ws


class RecordingReporter:
    """What a terminal's progress bars would have shown, per stage."""

    def __init__(self) -> None:
        self.totals: dict[str, int] = {}
        self.shown: dict[str, int] = {}
        self.notes: dict[str, list[str]] = {}

    def start(self, stage: str, total: int) -> None:
        self.totals[stage], self.shown[stage] = total, 0

    def advance(self, stage: str, amount: int = 1) -> None:
        self.shown[stage] += amount

    def note(self, stage: str, text: str) -> None:
        self.notes.setdefault(stage, []).append(text)

    def finish(self, stage: str) -> None:
        pass


def test_pipeline_runs_every_stage_and_a_rerun_redoes_nothing(pipeline_workspace: Workspace, prefect_server) -> None:
    import ray

    from soundtrail.flows.pipeline import pipeline_flow
    from soundtrail.flows.progress import reporting

    ws = pipeline_workspace
    first_started = datetime.now(UTC)
    with mock.patch.object(ray, "init", wraps=ray.init) as ray_init, reporting(RecordingReporter()) as progress:
        summary = pipeline_flow(str(ws.root))
    assert _tasks_started_since(first_started) >= MODEL_WORK, "the first run trains, encodes and generates"
    assert ray_init.call_count == 1, "every stage's subflow runs on the pipeline's one Ray session"
    # Training runs in Ray tasks; its steps and losses reached the driver's reporter while it ran.
    assert {"codec": 12, "train ar": 40, "train diffusion": 12}.items() <= progress.totals.items()
    assert 0 < progress.shown["train ar"] <= 40 and progress.notes["train ar"][-1].startswith("loss ")
    assert not ray.is_initialized(), "the pipeline stops the Ray it started"
    ingest = summary["ingest"]
    assert (ingest["accepted"], ingest["quarantined"], ingest["duplicate"], ingest["blocked"]) == (4, 2, 1, 1)
    assert set(summary["models"]) == {"ar", "diffusion"}
    ar = summary["models"]["ar"]["metrics"]
    # Trained on the shards: clearly below the uniform baseline ln(codebook size) (5.55 nats for 256 codes).
    assert ar["final_loss"] < ar["uniform_baseline"] - 0.5, ar
    # The diffusion loss is too noisy to judge over a dozen steps: tests/train/test_diffusion.py asserts its fall.
    assert summary["models"]["diffusion"]["metrics"]["steps"] == 12
    assert {output["model_kind"] for output in summary["outputs"]} == {"ar", "diffusion"}
    for output in summary["outputs"]:
        assert output["status"] in ("released", "blocked")
        if output["status"] == "released":
            assert Path(output["path"]).is_file() and output["payload_hex"] == output["output_id"]
    assert Path(summary["report"]).is_file()
    storage = Storage.of(ws)
    assert any(name.startswith("shards/") and name.endswith(".parquet") for name in storage.root.files())
    assert all((storage.locate(model["path"]) / "model.safetensors").is_file() for model in summary["models"].values())
    assert not (ws.root / "shards").exists(), "the shards are on the object store only"
    assert summary["codec"]["action"] == "trained" and summary["codec"]["reason"] == "the workspace has no codec yet"
    assert {(model["action"], model["parent"]) for model in summary["models"].values()} == {("trained", None)}
    assert {output["action"] for output in summary["outputs"]} == {"generated"}
    ledger = Ledger(ws.ledger_url)
    assert ledger.verify().ok
    assert [event["payload"]["chosen_id"] for event in ledger.events("choices")] == [summary["codec"]["codec_id"]]
    head = ledger.head()
    files = _files(ws)

    started = datetime.now(UTC)
    again = pipeline_flow(str(ws.root))
    assert ledger.head() == head, "a re-run with unchanged inputs appends nothing to the ledger"
    assert _tasks_started_since(started) & MODEL_WORK == set(), "nothing trained, encoded or generated again"
    assert _files(ws) == files, "no checkpoint, shard, output or report written again"
    assert (again["codec"]["codec_id"], again["codec"]["action"]) == (summary["codec"]["codec_id"], "kept")
    assert again["tokenize"]["new_shards"] == 0 and again["tokenize"]["shard_set"] == summary["tokenize"]["shard_set"]
    assert {kind: (model["model_id"], model["action"]) for kind, model in again["models"].items()} == {
        kind: (model["model_id"], "kept") for kind, model in summary["models"].items()}
    assert [(o["output_id"], o["status"], o["action"]) for o in again["outputs"]] == [
        (o["output_id"], o["status"], "kept") for o in summary["outputs"]], "released outputs reported, not redone"
    assert again["report"] == summary["report"]

    events = [json.loads(line) for line in (ws.root / "reports" / "openlineage.jsonl").read_text().splitlines()]
    jobs = {event["job"]["name"] for event in events}
    assert {"ingest", "codec", "tokenize", "train-ar", "train-diffusion", "generate-ar", "generate-diffusion"} <= jobs
    parents = {event["run"]["facets"]["parent"]["job"]["name"] for event in events}
    assert parents == {"pipeline"}, "every stage run names the pipeline run as its parent"
    completes = [e for e in events if e["eventType"] == "COMPLETE" and e["job"]["name"] == "tokenize"]
    assert completes and all(out["name"].startswith("shards/") for out in completes[0]["outputs"])


# Prefect tasks that train or generate, and the stage flow that encodes (on its pool of Ray actors, not in
# tasks): a run over unchanged inputs starts none of them.
MODEL_WORK = {"train-codec", "train", "generate", "tokenize"}


def _tasks_started_since(when: datetime) -> set[str]:
    """Names of the Prefect tasks (without their run suffix) and of the flows that started after ``when``."""
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterStartTime,
        TaskRunFilter,
        TaskRunFilterStartTime,
    )

    async def names() -> set[str]:
        async with get_client() as client:
            tasks = await client.read_task_runs(
                task_run_filter=TaskRunFilter(start_time=TaskRunFilterStartTime(after_=when)), limit=200)
            flows = await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(start_time=FlowRunFilterStartTime(after_=when)), limit=200)
            flow_names = {flow.id: flow.name for flow in await client.read_flows(limit=200)}
        return ({re.sub(r"-[0-9a-f]{3}$", "", run.name) for run in tasks}
                | {flow_names[run.flow_id] for run in flows if run.flow_id in flow_names})

    return asyncio.run(names())


def _files(ws: Workspace) -> dict[str, tuple[int, int]]:
    """(mtime, size) of every checkpoint, shard, released output and the audit report, in the workspace and in
    its storage."""
    found = [path for folder in ("checkpoints", "shards", "outputs") for path in (ws.root / folder).rglob("*")]
    local = {str(path): (path.stat().st_mtime_ns, path.stat().st_size)
             for path in [*found, ws.root / "reports" / "audit.html"] if path.is_file()}
    root = Storage.of(ws).root
    stored = root.filesystem.get_file_info([(root / name).path for name in root.files()])
    return {**local, **{info.path: (info.mtime_ns, info.size) for info in stored}}


def test_pipeline_leaves_prefect_artifacts(pipeline_workspace: Workspace, prefect_server) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    async def latest(key: str) -> list:
        async with get_client() as client:
            return await client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))

    import asyncio

    summary = asyncio.run(latest("pipeline-summary"))
    assert summary and "soundtrail pipeline run" in str(summary[0].data)
    assert "ar model" in str(summary[0].data) and "shard set" in str(summary[0].data)
    releases = asyncio.run(latest("release-log"))  # published by each generate stage run
    assert releases and "output_id" in str(releases[0].data)


def test_a_run_with_one_new_file_keeps_the_codec_and_encodes_only_that_file(pipeline_workspace: Workspace,
                                                                            prefect_server) -> None:
    """After the runs above: the workspace codec stays, the new asset gets one new shard in the same shard set, and
    the generators (by the default policy) train new models on the shards now current, continuing their previous
    ones."""
    from soundtrail.flows.pipeline import pipeline_flow

    ws = pipeline_workspace
    ledger = Ledger(ws.ledger_url)
    codecs = ledger.rows("codecs")
    (codec,) = [row["chosen_id"] for row in ledger.rows("choices")]
    shards = {row["id"] for row in ledger.rows("shards", status="current")}
    previous = {row["kind"]: row["id"] for row in ledger.rows("models")}  # one model per family so far
    write(ws.root / "inputs" / "tracks" / "new-melody.wav", melody(41, seconds=8.0))
    with (ws.root / "inputs" / "manifest.jsonl").open("a") as manifest:
        manifest.write(json.dumps({"path": "tracks/new-melody.wav", "license": "CC0-1.0", "rights_holder": "Test Label",
                                   "title": "New Melody", "description": "a plucked melody"}) + "\n")

    started = datetime.now(UTC)
    summary = pipeline_flow(str(ws.root))
    (new_asset,) = [item["asset_id"] for item in summary["ingest"]["items"]
                    if item["path"].endswith("new-melody.wav") and item["status"] == "accepted"]
    assert (summary["codec"]["codec_id"], summary["codec"]["action"]) == (codec, "kept")
    assert ledger.rows("codecs") == codecs and len(ledger.events("choices")) == 1, "no codec trained or chosen"
    assert "train-codec" not in _tasks_started_since(started)
    assert summary["tokenize"]["new_shards"] == 1 and summary["tokenize"]["superseded"] == 0
    current = ledger.rows("shards", status="current")
    (added,) = [row for row in current if row["id"] not in shards]
    assert {row["id"] for row in current} == shards | {added["id"]}, "the earlier shards stay current"
    assert added["asset_ids"] == [new_asset] and added["codec_id"] == codec
    assert added["shard_set"] == summary["tokenize"]["shard_set"]
    for kind, model in summary["models"].items():
        assert (model["action"], model["reason"], model["codec_id"]) == ("trained", "the shards changed", codec)
        assert model["model_id"] not in previous.values() and model["shards"] == len(shards) + 1
        # Where it starts is soundtrail train's decision ([train] init = "continue"): the family's previous model.
        assert (model["parent"], model["init_reason"]) == (
            previous[kind], f"continued from {kind} model {previous[kind]}, trained on other shards")
    ar = summary["models"]["ar"]["metrics"]
    assert ar["final_loss"] < ar["uniform_baseline"] - 0.5, ar
    assert {output["action"] for output in summary["outputs"]} == {"generated"}, "new models, new outputs"
    assert ledger.verify().ok


def test_run_tokenizes_and_trains_on_a_pretrained_encodec(tmp_path: Path, prefect_server) -> None:
    """`[codec] checkpoint` naming a local transformers EncodecModel: no codec is trained, the shards and the
    generator are made with it (one family and no prompts: the runs above cover the rest of the pipeline)."""
    from soundtrail.flows.pipeline import pipeline_flow

    encodec = save_tiny_encodec(tmp_path / "models" / "encodec", upsampling_ratios=[8, 5, 4],  # 50 frames/s
                                target_bandwidths=[1.2]).config  # 4 codebooks
    (tmp_path / "soundtrail.toml").write_text(
        TINY_PIPELINE.replace("[codec]\n", '[codec]\ncheckpoint = "models/encodec"\n')
        .replace('prompts = ["calm piano with soft pads"]', 'prompts = []\nmodels = ["ar"]'))
    synthesize_corpus(tmp_path / "inputs", tracks=3, seconds=8.0, seed=4)
    ws = Workspace(tmp_path)

    summary = pipeline_flow(str(ws.root))
    codec = summary["codec"]
    assert (codec["kind"], codec["action"], codec["reason"]) == ("pretrained", "kept", "[codec] checkpoint names it")
    assert codec["config"] == {"sample_rate": encodec.sampling_rate, "frame_rate": encodec.frame_rate,
                               "num_codebooks": encodec.num_quantizers, "codebook_size": encodec.codebook_size}
    assert not (tmp_path / "checkpoints" / "codec").exists(), "no codec trained"
    ledger = Ledger(ws.ledger_url)
    assert [row["id"] for row in ledger.rows("codecs")] == [codec["codec_id"]]
    shards = ledger.rows("shards", status="current")
    assert shards and {row["codec_id"] for row in shards} == {codec["codec_id"]}
    assert summary["tokenize"]["shard_set"].startswith(codec["codec_id"])
    (ar,) = summary["models"].values()
    assert (ar["kind"], ar["action"], ar["codec_id"], ar["shards"]) == ("ar", "trained", codec["codec_id"], len(shards))
    assert ar["metrics"]["final_loss"] < ar["metrics"]["uniform_baseline"] - 0.5, ar["metrics"]
    assert summary["outputs"] == []
    assert ledger.verify().ok


def _busy_ray_workers() -> list[int]:
    """PIDs of this test's own Ray workers running an ingest batch right now."""
    listing = subprocess.run(["ps", "-eo", "pid=,ppid=,args="], capture_output=True, text=True, check=True).stdout
    parent, title = {}, {}
    for line in listing.splitlines():
        pid, ppid, args = (line.split(None, 2) + [""])[:3]
        parent[int(pid)], title[int(pid)] = int(ppid), args

    def ours(pid: int) -> bool:  # local Ray's raylet, and so its workers, descend from this process
        while pid > 1:
            pid = parent.get(pid, 1)
            if pid == os.getpid():
                return True
        return False

    # A worker running a task is titled after it; Ray's own agents (also ``ray::``) share the raylet's fate.
    return [pid for pid, args in title.items() if args.startswith("ray::analyze-files") and ours(pid)]


def test_ingest_survives_a_ray_worker_killed_mid_task(tmp_path: Path, prefect_server) -> None:
    from soundtrail.flows.ingest import ingest_flow
    from soundtrail.flows.runtime import ray_task_runner

    corpus = synthesize_corpus(tmp_path / "inputs", tracks=8, seconds=8.0, seed=5)
    (tmp_path / "ws").mkdir()
    (tmp_path / "ws" / "soundtrail.toml").write_text("[ingest]\nbatch_size = 3\nworkers = 2\n")
    ws = Workspace(tmp_path / "ws")
    add_to_blocklist(ws, list(corpus.protected_paths), BLOCKLIST_REASON)
    killed: list[int] = []

    def kill_one_worker() -> None:
        deadline = time.monotonic() + 120
        while not killed and time.monotonic() < deadline:
            for pid in _busy_ray_workers():
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                break
            time.sleep(0.05)

    killer = threading.Thread(target=kill_one_worker, daemon=True)
    killer.start()
    summary = ingest_flow.with_options(task_runner=ray_task_runner(ws))(
        str(ws.root), [str(tmp_path / "inputs" / "tracks")], str(corpus.manifest_path))
    killer.join(1)
    assert killed, "no busy Ray worker was seen to kill"
    expected = {status: list(corpus.expected_status.values()).count(status)
                for status in ("accepted", "quarantined", "duplicate", "blocked")}
    assert {status: summary[status] for status in expected} == expected
    assert Ledger(ws.ledger_url).verify().ok


def test_a_screening_key_naming_no_method_stops_the_pipeline_before_any_stage(tmp_path: Path) -> None:
    from soundtrail.config import ConfigError
    from soundtrail.flows.pipeline import pipeline_flow

    (tmp_path / "soundtrail.toml").write_text(TINY_PIPELINE + "[screening]\nlandmark_flag = 0.5\n")
    with pytest.raises(ConfigError, match="landmark_flag: unknown key"):
        pipeline_flow.fn(str(tmp_path))
    assert not (tmp_path / "ledger.db").exists()
