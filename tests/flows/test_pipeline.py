"""The end-to-end pipeline on a tiny corpus: every stage, a re-run that appends nothing, lineage
events, Prefect artifacts, and an ingest that survives a Ray worker killed in the middle of a task."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from unittest import mock

import pytest

from soundtrail.corpus import synthesize_corpus
from soundtrail.corpus.build import BLOCKLIST_REASON
from soundtrail.ingest.blocklist import add_to_blocklist
from soundtrail.provenance.ledger import Ledger
from soundtrail.workspace import Workspace

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
def pipeline_workspace(tmp_path_factory) -> Workspace:
    root = tmp_path_factory.mktemp("pipeline")
    (root / "soundtrail.toml").write_text(TINY_PIPELINE)
    corpus = synthesize_corpus(root / "inputs", tracks=4, seconds=8.0, seed=3)
    ws = Workspace(root)
    add_to_blocklist(ws, list(corpus.protected_paths), BLOCKLIST_REASON)
    return ws


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
    with mock.patch.object(ray, "init", wraps=ray.init) as ray_init, reporting(RecordingReporter()) as progress:
        summary = pipeline_flow(str(ws.root))
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
    ledger = Ledger(ws.ledger_url)
    assert ledger.verify().ok
    head = ledger.head()

    again = pipeline_flow(str(ws.root))
    assert ledger.head() == head, "a re-run with unchanged inputs appends nothing to the ledger"
    assert [o["output_id"] for o in again["outputs"]] == [o["output_id"] for o in summary["outputs"]]

    events = [json.loads(line) for line in (ws.root / "reports" / "openlineage.jsonl").read_text().splitlines()]
    jobs = {event["job"]["name"] for event in events}
    assert {"ingest", "codec", "tokenize", "train-ar", "train-diffusion", "generate-ar", "generate-diffusion"} <= jobs
    parents = {event["run"]["facets"]["parent"]["job"]["name"] for event in events}
    assert parents == {"pipeline"}, "every stage run names the pipeline run as its parent"
    completes = [e for e in events if e["eventType"] == "COMPLETE" and e["job"]["name"] == "tokenize"]
    assert completes and all(out["name"].startswith("shards/") for out in completes[0]["outputs"])


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
