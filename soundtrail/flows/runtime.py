"""Where flows run: one Prefect API for the driver and every Ray worker, and the Ray task runner.

Prefect's ephemeral mode starts a temporary API server in every process that needs one, so
without care each Ray worker would start its own (seconds each, and its task runs would be
invisible to the flow). :func:`prefect_api` makes sure exactly one API is in use: the one named
by ``PREFECT_API_URL`` when the user has a server, otherwise a local server started once per
command. :func:`ray_task_runner` passes that URL to the workers through Ray's runtime env.

A command enters :func:`command_runtime`, which does things in the order that fails fastest: the
cluster named by ``ray_address`` is asked whether it will take us (:func:`check_cluster`), then the
watchdog that ends with the command whatever it starts (:mod:`soundtrail.flows.watchdog`), then the
Prefect API, then Ray (started or joined once for the command's flows).

Joining a cluster that uses Ray's token authentication (Ray 2.52 and later; Ray 2.60 turns it on
whenever a token exists) needs the cluster's token, read the way Ray reads it: ``RAY_AUTH_TOKEN``,
else the file ``RAY_AUTH_TOKEN_PATH``, else ``~/.ray/auth_token``. Without it Ray retries for about
20 seconds and ends in a bare ``ConnectionError``; :func:`check_cluster` asks the cluster's GCS (or
Ray client server) directly, which answers ``UNAUTHENTICATED`` in milliseconds, and turns that into
one line naming the fix. With a token it sets ``RAY_AUTH_MODE=token``, which Ray needs in order to
send it when the address is explicit.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import Any

from prefect_ray import RayTaskRunner

from soundtrail.flows.watchdog import processes_end_with_command
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
    # Prefect waits 20 s by default; on a busy two-core machine its server was seen to need longer, and a
    # command that fails for that reason has done nothing wrong. PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS
    # still decides when set.
    server.start(timeout=None if "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS" in os.environ else 120)
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


@contextlib.contextmanager
def command_runtime(workspace: Workspace) -> Iterator[RayTaskRunner]:
    """Everything a command needs to run a flow on ``workspace``; yields the flow's task runner.

    The cluster is checked before anything starts, and whatever starts (Prefect's server, local Ray)
    ends with the command, even a command killed with SIGKILL. Ray is started (or joined) once here,
    after the Prefect API, whose URL the runner passes on to the workers.
    """
    if workspace.settings.ray_address:
        check_cluster(workspace.settings.ray_address)
    with processes_end_with_command(), prefect_api(), shared_ray(workspace) as runner:
        yield runner


def ray_task_runner(workspace: Workspace, num_cpus: int | None = None) -> RayTaskRunner:
    """A RayTaskRunner joining ``ray_address`` (a cluster, checked first) or starting Ray locally.

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
        if "RAY_AUTH_MODE" not in os.environ:
            # Ray 2.60 gives every new local cluster token auth and says so on stderr; choosing the same mode
            # explicitly keeps stderr for the command's own one line.
            _enable_token_auth()
    else:
        check_cluster(address)
    return RayTaskRunner(address=address, init_kwargs=init_kwargs)


class ClusterError(RuntimeError):
    """The Ray cluster named by ``ray_address`` cannot be joined; the message says why and what to do."""


# One side-effect-free call per kind of address (method, serialized request), whose only use here is the
# status code: UNAUTHENTICATED when the token is missing or wrong, UNAVAILABLE when nothing listens,
# anything else means we got in. The client server's is the PING a Ray client sends first when connecting
# (ClusterInfoRequest type PING = 6), which the server answers itself without starting a session.
_PROBES = {"gcs": ("/ray.rpc.NodeInfoGcsService/GetClusterId", b""),
           "client": ("/ray.rpc.RayletDriver/ClusterInfo", b"\x08\x06")}
_TOKEN_HELP = ("set RAY_AUTH_TOKEN to the cluster's token (or RAY_AUTH_TOKEN_PATH to a file holding it; "
               "`ray get-auth-token` on the head node prints it)")


def check_cluster(address: str, timeout_s: float = 10.0) -> None:
    """Make sure the cluster at ``address`` (``auto``, ``host:port`` or ``ray://host:port``) will take us.

    Raises :class:`ClusterError` naming the fix when nothing answers there or the cluster wants a token
    we lack or it refuses ours; when it wants a token we have, turns on Ray's token mode for this process.
    """
    import grpc
    from ray._raylet import AuthenticationTokenLoader

    target, kind = _probe_target(address)
    token_header = AuthenticationTokenLoader.instance().get_token_for_http_header(ignore_auth_mode=True)
    status = _probe(grpc, target, *_PROBES[kind], [], timeout_s)
    if status in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        raise ClusterError(f"no Ray cluster answers at {address} (ray_address): start it, or set ray_address = \"\" "
                           "to run Ray on this machine")
    if status != grpc.StatusCode.UNAUTHENTICATED:
        return
    if not token_header:
        raise ClusterError(f"the Ray cluster at {address} requires its auth token and none is set: {_TOKEN_HELP}")
    if _probe(grpc, target, *_PROBES[kind], list(token_header.items()), timeout_s) == grpc.StatusCode.UNAUTHENTICATED:
        raise ClusterError(f"the Ray cluster at {address} rejected the auth token set here: {_TOKEN_HELP}")
    mode = os.environ.get("RAY_AUTH_MODE", "")
    if mode and mode.lower() != "token":
        raise ClusterError(f"the Ray cluster at {address} requires its auth token, but RAY_AUTH_MODE={mode}: "
                           "unset it or set RAY_AUTH_MODE=token")
    _enable_token_auth()


def _probe_target(address: str) -> tuple[str, str]:
    """(host:port, which service) for a ``ray_address``; ``auto`` is resolved the way ``ray.init`` does."""
    if address.startswith("ray://"):
        return address.removeprefix("ray://"), "client"
    if address == "auto":
        from ray._private.services import canonicalize_bootstrap_address

        try:
            resolved = canonicalize_bootstrap_address("auto")
        except ConnectionError as exc:
            raise ClusterError(f"ray_address is \"auto\" but no Ray cluster runs on this machine ({exc})") from None
        return str(resolved), "gcs"
    return address, "gcs"


def _probe(grpc: Any, target: str, method: str, request: bytes, metadata: list[tuple[str, str]],
           timeout_s: float) -> Any:
    """The gRPC status of one call of ``method`` with an already serialized ``request``."""
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary(method, request_serializer=bytes, response_deserializer=bytes)
        try:
            call(request, timeout=timeout_s, metadata=metadata)
        except grpc.RpcError as exc:
            return exc.code()
    return grpc.StatusCode.OK


def _enable_token_auth() -> None:
    """Ray's token mode for this process and what it starts; Ray reads the mode into its config once."""
    from ray._raylet import Config

    os.environ["RAY_AUTH_MODE"] = "token"
    Config.initialize("")


@contextlib.contextmanager
def shared_ray(workspace: Workspace) -> Iterator[RayTaskRunner]:
    """Start (or join) Ray once for flows that each run on a :func:`ray_task_runner`; yields such a runner.

    A RayTaskRunner that finds Ray running uses it and leaves it running; otherwise it starts Ray on entering
    and stops it on leaving, so a pipeline of eight subflows would start local Ray eight times (seconds each)
    and lose its warm workers every time.
    """
    import ray

    runner = ray_task_runner(workspace)
    if ray.is_initialized():
        yield runner
        return
    if runner.address:  # a deployment's flow joins here without a command in front: the same fast check
        check_cluster(runner.address)
    _init_ray(runner.address, runner.init_kwargs)
    try:
        yield runner
    finally:
        ray.shutdown()


_CLIENT_RETRY_PAUSES_S = (1.0, 2.0, 4.0, 8.0)  # about 15 s in all: a head's agents starting up


def _init_ray(address: str | None, init_kwargs: dict[str, Any]) -> None:
    """``ray.init``, retried for a while through a Ray client server (``ray://``).

    The client server starts a server process per client, and first asks the head's runtime-env agent to set up
    the client's environment, giving up after a few seconds when the agent is not up yet. On a freshly started
    head (a cluster coming up with its first job, a loaded machine) that fails as "Initialization failure from
    server" while a connection a little later succeeds, so ``ray://`` joins are retried with growing pauses.
    """
    import time

    import ray

    pauses = _CLIENT_RETRY_PAUSES_S if address and address.startswith("ray://") else ()
    for pause in (*pauses, None):
        try:
            ray.init(address=address, **init_kwargs)
            return
        except ConnectionAbortedError:
            ray.shutdown()
            if pause is None:
                raise
            time.sleep(pause)


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
