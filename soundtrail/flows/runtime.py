"""Where flows run: one Prefect API for the driver and every Ray worker, and the Ray task runner.

Prefect's ephemeral mode starts a temporary API server in every process that needs one, so
without care each Ray worker would start its own (seconds each, and its task runs would be
invisible to the flow). :func:`prefect_api` makes sure exactly one API is in use: the one named
by ``PREFECT_API_URL`` when the user has a server, otherwise a local server started once per
command. :func:`ray_task_runner` passes that URL to the workers through Ray's runtime env.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import Any

from prefect_ray import RayTaskRunner

from soundtrail.workspace import Workspace

# Workers inherit these, so a worker's Prefect client talks to the driver's API.
_FORWARDED_ENV = ("PREFECT_API_URL", "PREFECT_SERVER_ANALYTICS_ENABLED", "PREFECT_LOGGING_LEVEL",
                  "SOUNDTRAIL_WORKSPACE", "SOUNDTRAIL_CONFIG", "SOUNDTRAIL_LEDGER_URL", "SOUNDTRAIL_RAY_ADDRESS",
                  "SOUNDTRAIL_STORAGE_URI", "RAY_USAGE_STATS_ENABLED")


@contextlib.contextmanager
def prefect_api() -> Iterator[str]:
    """Yield the Prefect API URL in use, starting a local server if none is configured."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    configured = os.environ.get("PREFECT_API_URL")
    if configured:
        yield configured
        return
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_API_URL, PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    server = SubprocessASGIServer()
    server.start()
    os.environ["PREFECT_API_URL"] = server.api_url
    # Heartbeats feed zombie detection on a lasting server; this one dies with the command, and the heartbeat
    # thread (it sleeps in whole seconds and is joined when a flow ends) would add up to 1 s to every flow.
    try:
        with temporary_settings(updates={PREFECT_API_URL: server.api_url, PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
            yield server.api_url
    finally:
        from prefect.logging.handlers import APILogWorker

        APILogWorker.drain_all(timeout=5)  # deliver the last task logs before the server goes away
        os.environ.pop("PREFECT_API_URL", None)
        server.stop()


def ray_task_runner(workspace: Workspace, num_cpus: int | None = None) -> RayTaskRunner:
    """A RayTaskRunner joining ``ray_address`` (a cluster) or starting Ray locally.

    Local Ray gets ``num_cpus`` (default: the ingest worker setting) and no dashboard; a cluster
    keeps its own resources. Environment needed by the tasks travels in the runtime env.
    """
    env = {name: os.environ[name] for name in _FORWARDED_ENV if name in os.environ}
    env["SOUNDTRAIL_WORKSPACE"] = str(workspace.root)
    init_kwargs: dict[str, Any] = {"runtime_env": {"env_vars": env}, "log_to_driver": False,
                                   "logging_level": logging.WARNING}
    address = workspace.settings.ray_address or None
    if address is None:
        init_kwargs.update(num_cpus=num_cpus or workspace.settings.ingest.workers, include_dashboard=False)
    return RayTaskRunner(address=address, init_kwargs=init_kwargs)


@contextlib.contextmanager
def shared_ray(workspace: Workspace) -> Iterator[None]:
    """Start (or join) Ray once for a flow whose subflows each run on a :func:`ray_task_runner`.

    A RayTaskRunner that finds Ray running uses it and leaves it running; otherwise it starts Ray on entering
    and stops it on leaving, so a pipeline of eight subflows would start local Ray eight times (2.5-6 s each
    on a small machine) and lose its warm workers every time.
    """
    import ray

    if ray.is_initialized():
        yield
        return
    runner = ray_task_runner(workspace)
    ray.init(address=runner.address, **runner.init_kwargs)
    try:
        yield
    finally:
        ray.shutdown()


def cluster_has_gpu() -> bool:
    """True when the Ray cluster this flow runs on offers GPUs (checked from inside a running flow)."""
    import ray

    return ray.is_initialized() and ray.cluster_resources().get("GPU", 0) > 0


def cluster_cpus(default: int) -> int:
    """CPUs of the Ray cluster this flow runs on, or ``default`` when it runs without Ray."""
    import ray

    return int(ray.cluster_resources().get("CPU", default)) if ray.is_initialized() else default


def accelerator_options(cpus: int | None = None) -> dict[str, Any]:
    """Ray options for model work: one GPU when the cluster has one, else ``cpus`` CPUs (threads for torch)."""
    if cluster_has_gpu():
        return {"num_gpus": 1}
    return {"num_cpus": cpus} if cpus else {}
