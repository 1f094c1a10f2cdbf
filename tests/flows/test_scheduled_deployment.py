"""The deployments as a user runs them: a real `prefect server start`, `prefect deploy --all` of
deploy/prefect.yaml, a process worker, and a nightly ingest that fires on its schedule.

`prefect_test_harness` cannot show what this does: with Prefect 3.8 and SQLAlchemy 2.1 the server's
scheduler never inserted a run, and with fastapi 0.151+ the CLI's reads failed with HTTP 422. The test
copy of prefect.yaml differs from the real one only in its schedules (the nightly ingest every 10 s,
nothing else scheduled); the workspace comes from the worker's SOUNDTRAIL_WORKSPACE as the file says.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import httpx
import psutil
import pytest
import yaml
from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.client.schemas.sorting import FlowRunSort

from soundtrail.provenance.ledger import Ledger
from soundtrail.workspace import Workspace
from tests.flows.workspaces import drop_folder_workspace

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
POOL = "soundtrail-process"
STARTUP_S = 180
RUN_DEADLINE_S = 300


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Prefect:
    """Prefect commands against one server, with the environment a user's shell would have."""

    def __init__(self, home: Path, api_url: str, workspace: Path) -> None:
        self.api_url = api_url
        self.logs = home / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        env = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_")}
        self.env = {**env, "PREFECT_HOME": str(home), "PREFECT_API_URL": api_url,
                    "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_UI_ENABLED": "false",
                    "PREFECT_WORKER_QUERY_SECONDS": "1", "RAY_USAGE_STATS_ENABLED": "0",
                    "SOUNDTRAIL_WORKSPACE": str(workspace), "COLUMNS": "200",  # CLI tables unabridged
                    "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        self.started: list[subprocess.Popen] = []

    def start(self, name: str, *args: str) -> subprocess.Popen:
        log = (self.logs / f"{name}.log").open("wb")
        process = subprocess.Popen([sys.executable, "-m", "prefect", *args], cwd=ROOT, env=self.env,
                                   stdout=log, stderr=subprocess.STDOUT)
        self.started.append(process)
        return process

    def run(self, *args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "prefect", *args], cwd=ROOT, env=self.env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"prefect {' '.join(args)}: {done.stdout}\n{done.stderr}"
        return done.stdout

    def client(self) -> SyncPrefectClient:
        """Prefect's client for this server: it retries what a busy SQLite server answers with 503."""
        return SyncPrefectClient(self.api_url)

    def log_tail(self) -> str:
        return "\n".join(f"--- {path.name}\n{path.read_text(errors='replace')[-3000:]}"
                         for path in sorted(self.logs.glob("*.log")))

    def stop_all(self) -> None:
        """Stop every process started here and everything they started (flow runs, Ray), by pid."""
        for process in reversed(self.started):
            try:
                family = [psutil.Process(process.pid), *psutil.Process(process.pid).children(recursive=True)]
            except psutil.NoSuchProcess:
                continue
            for member in family:
                with contextlib.suppress(psutil.NoSuchProcess):
                    member.terminate()
            _, alive = psutil.wait_procs(family, timeout=15)
            for member in alive:
                with contextlib.suppress(psutil.NoSuchProcess):
                    member.kill()
            psutil.wait_procs(alive, timeout=5)


@pytest.fixture
def prefect(tmp_path: Path) -> Iterator[Prefect]:
    """A `prefect server start` of its own (database in tmp_path) on a free port; stopped with all it ran."""
    port = _free_port()
    workspace = drop_folder_workspace(tmp_path / "workspace")
    session = Prefect(tmp_path / "prefect-home", f"http://127.0.0.1:{port}/api", workspace)
    try:
        server = session.start("server", "server", "start", "--host", "127.0.0.1", "--port", str(port))
        deadline = time.monotonic() + STARTUP_S
        while True:
            assert server.poll() is None, f"prefect server exited\n{session.log_tail()}"
            assert time.monotonic() < deadline, f"prefect server not healthy in {STARTUP_S} s\n{session.log_tail()}"
            with contextlib.suppress(httpx.TransportError):  # not accepting connections yet
                if httpx.get(f"{session.api_url}/health", timeout=5).json() is True:
                    break
            time.sleep(0.5)
        yield session
    finally:
        session.stop_all()


def _test_copy(path: Path) -> Path:
    """deploy/prefect.yaml with the nightly ingest every 10 s and no other schedule."""
    project = yaml.safe_load((ROOT / "deploy" / "prefect.yaml").read_text())
    for deployment in project["deployments"]:
        deployment["schedules"] = [{"interval": 10}] if deployment["name"] == "nightly-ingest" else []
    path.write_text(yaml.safe_dump(project, sort_keys=False))
    return path


def _first_scheduled_run(prefect: Prefect, deployment_id: UUID) -> FlowRun:
    """Wait for the deployment's first run created by its schedule to finish; fail on any failed run."""
    deadline = time.monotonic() + RUN_DEADLINE_S
    of_deployment = DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
    with prefect.client() as client:
        while time.monotonic() < deadline:
            runs = client.read_flow_runs(deployment_filter=of_deployment, sort=FlowRunSort.EXPECTED_START_TIME_ASC,
                                         limit=20)
            for run in runs:
                assert run.state_type not in (StateType.FAILED, StateType.CRASHED), (
                    f"run {run.name} {run.state_type}\n{prefect.log_tail()}")
                if run.state_type == StateType.COMPLETED and run.created_by and run.created_by.type == "SCHEDULE":
                    client.pause_deployment(deployment_id)  # deletes the runs scheduled after it
                    return run
            time.sleep(1)
    raise AssertionError(f"no scheduled run completed in {RUN_DEADLINE_S} s\n{prefect.log_tail()}")


def test_scheduled_nightly_ingest_runs_on_a_real_server_and_worker(prefect: Prefect, tmp_path: Path) -> None:
    prefect.run("work-pool", "create", POOL, "--type", "process")
    prefect.run("--no-prompt", "deploy", "--prefect-file", str(_test_copy(tmp_path / "prefect.yaml")), "--all")
    listed = {deployment["name"] for deployment in json.loads(prefect.run("deployment", "ls", "-o", "json"))}
    assert listed == {"pipeline", "nightly-ingest", "nightly-tokenize", "weekly-train", "generate"}
    with prefect.client() as client:
        deployment = client.read_deployment_by_name("ingest/nightly-ingest")
    assert deployment.pull_steps == [
        {"prefect.deployments.steps.set_working_directory": {"directory": str(ROOT)}}], "runs from the checkout"
    assert deployment.parameters == {}, "the workspace comes from the worker's environment"

    prefect.start("worker", "worker", "start", "--pool", POOL, "--work-queue", "cpu", "--work-queue", "gpu")
    run = _first_scheduled_run(prefect, deployment.id)
    assert run.auto_scheduled and run.work_queue_name == "cpu"
    run_id = str(run.id)

    # What the run did: the ledger, its lineage under its own run id, its logs and artifacts via the CLI.
    workspace = Workspace(prefect.env["SOUNDTRAIL_WORKSPACE"])
    with Ledger(workspace.ledger_url) as ledger:
        accepted = ledger.rows("assets", status="accepted")
    assert len(accepted) == 2 and {row["flow_run_id"] for row in accepted} == {run_id}
    lineage = [json.loads(line) for line in (workspace.root / "reports" / "openlineage.jsonl").read_text().splitlines()]
    assert [(e["eventType"], e["job"]["name"]) for e in lineage if e["run"]["runId"] == run_id] == [
        ("START", "ingest"), ("COMPLETE", "ingest")]

    logs = prefect.run("flow-run", "logs", run_id)
    assert "accepted 2, quarantined 1, duplicate 0, blocked 0" in logs, logs
    assert "ingest-summary" in prefect.run("artifact", "ls")
    versions = json.loads(prefect.run("artifact", "inspect", "ingest-summary", "-o", "json"))
    (summary,) = [version for version in versions if version["flow_run_id"] == run_id]
    assert "2 accepted, 1 quarantined" in summary["data"]
