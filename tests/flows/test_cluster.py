"""A real two-node Ray cluster with token authentication, as the users run it: `ray start` for a head and a
worker node (own ports, own temp dirs), soundtrail joining it by ``ray_address``.

Ingest batches must run on both nodes (Ray's state API says where each task ran), the token must be
read from Ray's documented variable, a driver without it must get one line naming the fix, and the
``ray://`` form (a Ray client server on the head) must work as the README says.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from soundtrail.flows.watchdog import end_processes
from tests.audio_fixtures import melody, write, write_manifest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
RAY = str(Path(sys.executable).with_name("ray"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Cluster:
    gcs: str  # host:port of the head's GCS
    client: str  # ray://host:port of the head's Ray client server
    token: str


def node_env(cookie: str, token: str) -> dict[str, str]:
    """Environment for `ray start`: this checkout importable, token mode on, and a cookie to stop it by."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("RAY_AUTH")}
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token, SOUNDTRAIL_OWNERS=cookie, RAY_USAGE_STATS_ENABLED="0",
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    return env


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[Cluster]:
    """A head and one worker node, one CPU each, started as separate `ray start` processes with a token.

    `ray stop` would stop every Ray on the machine, so the nodes carry a cookie in their environment and are
    ended by it (the same mechanism that ends what a killed soundtrail command started).
    """
    cookie, token = secrets.token_hex(8), secrets.token_hex(16)
    env = node_env(cookie, token)
    gcs = f"127.0.0.1:{free_port()}"
    client_port = free_port()
    head = [RAY, "start", "--head", "--port", gcs.split(":")[1], "--node-ip-address", "127.0.0.1", "--num-cpus", "1",
            "--temp-dir", str(tmp_path_factory.mktemp("ray-head")), "--dashboard-port", str(free_port()),
            "--dashboard-agent-listen-port", str(free_port()), "--ray-client-server-port", str(client_port),
            "--disable-usage-stats"]
    worker = [RAY, "start", "--address", gcs, "--node-ip-address", "127.0.0.1", "--num-cpus", "1",
              "--temp-dir", str(tmp_path_factory.mktemp("ray-worker")),
              "--dashboard-agent-listen-port", str(free_port()), "--disable-usage-stats"]
    try:
        for command in (head, worker):
            started = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
            assert started.returncode == 0, started.stderr[-2000:]
        yield Cluster(gcs=gcs, client=f"ray://127.0.0.1:{client_port}", token=token)
    finally:
        end_processes(cookie)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("cluster-corpus")
    rows = []
    for index in range(6):
        write(folder / f"track{index}.flac", melody(200 + index))
        rows.append({"path": f"track{index}.flac", "license": "CC-BY-4.0", "rights_holder": "Label"})
    return folder, write_manifest(folder, rows)


def soundtrail(args: list[str], env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """The CLI as a user runs it, in its own process (its Ray driver must not outlive it in pytest)."""
    return subprocess.run([sys.executable, "-c", "from soundtrail.cli import run; run()", *map(str, args)],
                          env=env, capture_output=True, text=True, timeout=timeout)


def driver_env(tmp_path: Path, ray_address: str, **extra: str) -> dict[str, str]:
    """A driver's environment: no token anywhere unless given (HOME has no ~/.ray/auth_token)."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {key: value for key, value in os.environ.items() if not key.startswith("RAY_AUTH")}
    env.update(HOME=str(home), SOUNDTRAIL_RAY_ADDRESS=ray_address, RAY_USAGE_STATS_ENABLED="0",
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])), **extra)
    return env


STATE_QUERY = """
import json, sys
from ray.util.state import list_tasks
tasks = list_tasks(address=sys.argv[1], filters=[("name", "=", "analyze-files")], detail=True, limit=1000,
                   raise_on_missing_output=False)
print(json.dumps([[task.job_id, task.node_id] for task in tasks if task.state == "FINISHED"]))
"""


def analyze_nodes(cluster: Cluster, tmp_path: Path) -> dict[str, set[str]]:
    """Job id -> the ids of the nodes its finished analyze-files tasks ran on, from Ray's state API.

    Asked from another process: the state client needs the token, and this process must not keep one.
    """
    env = driver_env(tmp_path, cluster.gcs, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=cluster.token)
    query = subprocess.run([sys.executable, "-c", STATE_QUERY, cluster.gcs], env=env, capture_output=True,
                           text=True, timeout=120)
    assert query.returncode == 0, query.stderr[-2000:]
    nodes: dict[str, set[str]] = {}
    for job, node in json.loads(query.stdout.splitlines()[-1]):
        nodes.setdefault(job, set()).add(node)
    return nodes


def test_ingest_batches_run_on_both_nodes_of_a_token_cluster(cluster: Cluster, corpus, tmp_path: Path,
                                                             prefect_server) -> None:
    folder, manifest = corpus
    workspace = tmp_path / "ws"
    args = ["ingest", folder, "--manifest", manifest, "--workspace", workspace, "--json"]

    # Without the token: one line naming the variable, no traceback, and nothing recorded.
    refused = soundtrail(args, driver_env(tmp_path, cluster.gcs))
    assert refused.returncode == 1, refused.stderr
    assert refused.stderr.count("\n") == 1 and "RAY_AUTH_TOKEN" in refused.stderr, refused.stderr
    assert not (workspace / "ledger.db").exists()
    # A wrong token is named as such.
    wrong = soundtrail(args, driver_env(tmp_path, cluster.gcs, RAY_AUTH_TOKEN="0" * 32))
    assert wrong.returncode == 1 and "rejected the auth token" in wrong.stderr, wrong.stderr

    # With the token in Ray's documented variable (and nothing else), the ingest joins the cluster.
    before = analyze_nodes(cluster, tmp_path)
    done = soundtrail(args, driver_env(tmp_path, cluster.gcs, RAY_AUTH_TOKEN=cluster.token))
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout)["accepted"] == 6
    jobs = {job: nodes for job, nodes in analyze_nodes(cluster, tmp_path).items() if job not in before}
    assert len(jobs) == 1, jobs
    (nodes,) = jobs.values()
    assert len(nodes) == 2, f"analyze-files ran on {len(nodes)} node(s) of 2"


def test_ray_client_address_joins_the_cluster(cluster: Cluster, corpus, tmp_path: Path, prefect_server) -> None:
    """The README's ``ray://head:10001`` form: a Ray client server on the head, token from RAY_AUTH_TOKEN."""
    folder, manifest = corpus
    args = ["ingest", folder, "--manifest", manifest, "--workspace", tmp_path / "ws", "--json"]
    refused = soundtrail(args, driver_env(tmp_path, cluster.client))
    assert refused.returncode == 1 and "RAY_AUTH_TOKEN" in refused.stderr, refused.stderr
    done = soundtrail(args, driver_env(tmp_path, cluster.client, RAY_AUTH_TOKEN=cluster.token))
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout)["accepted"] == 6
