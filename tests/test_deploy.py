"""deploy/: Prefect deployments, Dockerfile, Ray cluster launcher and KubeRay manifests are valid and agree.

Each file is checked by the tool that will read it where that tool ships a validator (Prefect's
prefect.yaml model and cron parser, the Ray launcher's own schema), and otherwise against the
required fields of its schema (KubeRay's CRDs, written compactly below).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib.metadata
import inspect
import re
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
WORK_POOL = "soundtrail-process"
ENTRYPOINTS = {
    "soundtrail.flows.pipeline:pipeline_flow",
    "soundtrail.flows.ingest:ingest_flow",
    "soundtrail.flows.tokenize:tokenize_flow",
    "soundtrail.flows.train:train_flow",
    "soundtrail.flows.generate:generate_flow",
}


def _load(relative: str) -> Any:
    return yaml.safe_load((DEPLOY / relative).read_text())


PREFECT = _load("prefect.yaml")
DEPLOYMENTS = {deployment["name"]: deployment for deployment in PREFECT["deployments"]}


# --- Prefect -------------------------------------------------------------------------------------

def test_prefect_project_is_what_prefect_deploy_reads() -> None:
    from prefect.cli.deploy._models import PrefectYamlModel

    model = PrefectYamlModel.model_validate(PREFECT)
    assert len(DEPLOYMENTS) == len(model.deployments), "deployment names must be unique"
    assert {deployment.entrypoint for deployment in model.deployments} == ENTRYPOINTS
    for deployment in model.deployments:
        assert deployment.work_pool is not None and deployment.work_pool.name == WORK_POOL
        # A plain checkout has no /workspace: runs take SOUNDTRAIL_WORKSPACE (or ./workspace) from the worker.
        assert "workspace" not in deployment.parameters
    # No pull step: `prefect deploy` records the folder it runs in (tests/flows/test_scheduled_deployment.py).
    assert model.pull is None


QUEUES = {"nightly-ingest": "cpu", "pipeline": "gpu", "nightly-tokenize": "gpu", "weekly-train": "gpu",
          "generate": "gpu"}


def _worker_queues(command: str) -> set[str]:
    """The queues a `prefect worker start` command line serves."""
    assert f"--pool {WORK_POOL}" in command, command
    return set(re.findall(r"--work-queue (\S+)", command))


def test_every_queue_has_a_worker_in_the_readme_and_on_kubernetes() -> None:
    assert {name: d["work_pool"]["work_queue_name"] for name, d in DEPLOYMENTS.items()} == QUEUES
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"^(?:\$ )?(prefect worker start [^\n#]*)", readme, flags=re.MULTILINE)
    assert commands and all(_worker_queues(command) == set(QUEUES.values()) for command in commands), commands
    assert _worker_queues(" ".join(WORKER["spec"]["template"]["spec"]["containers"][0]["args"])) == set(
        QUEUES.values())


def _fire_times(schedule: dict[str, Any], count: int = 3) -> list[dt.datetime]:
    """The next ``count`` fire times, computed by Prefect's server-side cron schedule."""
    from prefect.client.schemas.schedules import CronSchedule
    from prefect.server.schemas.schedules import CronSchedule as ServerCronSchedule

    CronSchedule(cron=schedule["cron"], timezone=schedule["timezone"])  # what the client validates
    server = ServerCronSchedule(cron=schedule["cron"], timezone=schedule["timezone"])
    start = dt.datetime(2026, 1, 5, tzinfo=dt.UTC)  # a Monday
    return [dt.datetime.fromtimestamp(when.timestamp(), dt.UTC)
            for when in asyncio.run(server.get_dates(n=count, start=start))]


def _gaps(times: list[dt.datetime]) -> set[dt.timedelta]:
    return {later - earlier for earlier, later in zip(times, times[1:], strict=False)}


def test_every_schedule_is_a_valid_cron_in_prefects_schedule_shape() -> None:
    from prefect.cli.deploy._models import RawScheduleConfig

    schedules = [schedule for deployment in PREFECT["deployments"] for schedule in deployment["schedules"]]
    assert len(schedules) == 4
    for schedule in schedules:
        RawScheduleConfig.model_validate(schedule)  # extra="forbid": a misspelt key fails here
        assert _fire_times(schedule, 2)
    with pytest.raises(ValueError, match="cron"):
        _fire_times({"cron": "0 2 * * 8", "timezone": "UTC"})


def test_nightly_ingest_then_tokenize_and_weekly_training_of_both_generators() -> None:
    (ingest,) = DEPLOYMENTS["nightly-ingest"]["schedules"]
    (tokenize,) = DEPLOYMENTS["nightly-tokenize"]["schedules"]
    ingest_times, tokenize_times = _fire_times(ingest), _fire_times(tokenize)
    assert _gaps(ingest_times) == _gaps(tokenize_times) == {dt.timedelta(days=1)}
    assert ingest_times[0] < tokenize_times[0] < ingest_times[1], "tokenize follows the night's ingest"
    assert DEPLOYMENTS["nightly-ingest"]["parameters"] == {}, "the workspace's configured drop folders"
    for nightly in ("nightly-ingest", "nightly-tokenize"):  # a late night is skipped, not queued behind itself
        assert DEPLOYMENTS[nightly]["concurrency_limit"] == {"limit": 1, "collision_strategy": "CANCEL_NEW"}

    train = DEPLOYMENTS["weekly-train"]
    kinds = {}
    for schedule in train["schedules"]:
        times = _fire_times(schedule)
        assert _gaps(times) == {dt.timedelta(days=7)}
        kinds[schedule["parameters"]["kind"]] = times[0].weekday()
    assert set(kinds) == {"ar", "diffusion"}
    assert len(set(kinds.values())) == 2, "the two trainings share a GPU: different days"
    assert train["concurrency_limit"] == 1


@pytest.mark.parametrize("name", sorted(DEPLOYMENTS))
def test_entrypoint_is_a_flow_that_accepts_the_parameters(name: str) -> None:
    deployment = DEPLOYMENTS[name]
    function = deployment["entrypoint"].split(":")[1]
    from prefect import Flow
    from prefect.flows import load_flow_from_entrypoint

    # Module entrypoints (not file paths): Prefect puts a script's folder first on sys.path, where
    # soundtrail/flows/tokenize.py would shadow the standard library's tokenize in every later import.
    flow = load_flow_from_entrypoint(deployment["entrypoint"])
    assert isinstance(flow, Flow)
    accepted = inspect.signature(flow.fn).parameters
    runs = [{**deployment["parameters"], **schedule.get("parameters", {})} for schedule in deployment["schedules"]]
    for parameters in runs or [deployment["parameters"]]:
        unknown = set(parameters) - set(accepted)
        assert not unknown, f"{name}: {function} takes no parameter {sorted(unknown)}"
    for parameters in runs:  # a scheduled run has nobody to supply what is missing
        flow.validate_parameters(parameters)


# --- Dockerfile ----------------------------------------------------------------------------------

UBUNTU_PYTHON = {"22.04": "3.10", "24.04": "3.12"}


def _instructions() -> list[tuple[str, str]]:
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def test_dockerfile_builds_the_package_on_a_cuda_base_with_chromaprint_and_ffmpeg() -> None:
    instructions = _instructions()
    base = next(argument for op, argument in instructions if op == "FROM")
    match = re.fullmatch(r"nvidia/cuda:12\.[\d.]+-(?:cudnn-)?(?:runtime|devel)-ubuntu(\d\d\.\d\d)", base)
    assert match, f"not a CUDA runtime image: {base}"
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert UBUNTU_PYTHON[match.group(1)] in SpecifierSet(pyproject["project"]["requires-python"])

    runs = " ".join(argument for op, argument in instructions if op == "RUN")
    apt = re.search(r"apt-get install ([^&]*)", runs)
    assert apt and {"libchromaprint1", "ffmpeg", "python3", "python3-venv"} <= set(apt.group(1).split())
    assert re.search(r"pip install \.(\s|$)", runs)
    for op, argument in instructions:
        if op == "COPY":
            *sources, _ = argument.split()
            assert all((ROOT / source).exists() for source in sources), argument
    entrypoint = next(argument for op, argument in instructions if op == "ENTRYPOINT")
    assert entrypoint == '["soundtrail"]' and "soundtrail" in pyproject["project"]["scripts"]

    ignored = (DEPLOY / "Dockerfile.dockerignore").read_text().split()
    assert {".venv", "workspace", ".git"} <= set(ignored)


# --- Ray cluster launcher ------------------------------------------------------------------------

def test_ray_cluster_config_passes_the_launchers_own_validation() -> None:
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = _load("ray/cluster.yaml")
    validate_config(prepare_config(config))  # ray's JSON schema plus its cross-field checks
    with pytest.raises(jsonschema.ValidationError):
        validate_config(prepare_config({**config, "setup_comands": []}))

    nodes = config["available_node_types"]
    assert config["head_node_type"] in nodes
    assert all("resources" in node for node in nodes.values())
    assert any(node["resources"].get("GPU", 0) >= 1 for node in nodes.values()), "no GPU worker type"
    assert config["provider"]["type"] in {"aws", "gcp"}
    assert '--entrypoint=""' in config["docker"]["run_options"], "the launcher runs `bash`, not the CLI"
    assert config["docker"]["image"] == _image()


# --- KubeRay -------------------------------------------------------------------------------------

_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_POD_TEMPLATE = {
    "type": "object", "required": ["spec"],
    "properties": {"spec": {"type": "object", "required": ["containers"], "properties": {"containers": {
        "type": "array", "minItems": 1,
        "items": {"type": "object", "required": ["name", "image"],
                  "properties": {"name": {"type": "string"}, "image": {"type": "string", "minLength": 1}}}}}}},
}
_DNS_LABEL = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
# The fields of KubeRay's ray.io/v1 CRDs this deployment relies on (rayStartParams values are strings).
RAY_CLUSTER_SPEC = {
    "type": "object", "required": ["headGroupSpec", "workerGroupSpecs"],
    "properties": {
        "rayVersion": {"type": "string"},
        "headGroupSpec": {"type": "object", "required": ["rayStartParams", "template"],
                          "properties": {"rayStartParams": _STRING_MAP, "template": _POD_TEMPLATE}},
        "workerGroupSpecs": {"type": "array", "minItems": 1, "items": {
            "type": "object",
            "required": ["groupName", "replicas", "minReplicas", "maxReplicas", "rayStartParams", "template"],
            "properties": {"groupName": {"type": "string", "pattern": _DNS_LABEL},
                           "replicas": {"type": "integer", "minimum": 0},
                           "minReplicas": {"type": "integer", "minimum": 0},
                           "maxReplicas": {"type": "integer", "minimum": 1},
                           "rayStartParams": _STRING_MAP, "template": _POD_TEMPLATE}}},
    },
}
_METADATA = {"type": "object", "required": ["name"], "properties": {"name": {"type": "string", "pattern": _DNS_LABEL}}}
RAY_CLUSTER = {"type": "object", "required": ["apiVersion", "kind", "metadata", "spec"],
               "properties": {"apiVersion": {"const": "ray.io/v1"}, "kind": {"const": "RayCluster"},
                              "metadata": _METADATA, "spec": RAY_CLUSTER_SPEC}}
RAY_JOB = {"type": "object", "required": ["apiVersion", "kind", "metadata", "spec"],
           "properties": {"apiVersion": {"const": "ray.io/v1"}, "kind": {"const": "RayJob"}, "metadata": _METADATA,
                          "spec": {"type": "object", "required": ["entrypoint", "rayClusterSpec"], "properties": {
                              "entrypoint": {"type": "string", "pattern": "^soundtrail run"},
                              "submissionMode": {"enum": ["K8sJobMode", "HTTPMode", "SidecarMode"]},
                              "shutdownAfterJobFinishes": {"type": "boolean"},
                              "rayClusterSpec": RAY_CLUSTER_SPEC}}}}

CLUSTER = _load("k8s/raycluster.yaml")
JOB = _load("k8s/rayjob.yaml")
WORKER = _load("k8s/prefect-worker.yaml")


def _containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    templates = [spec["headGroupSpec"]["template"]] + [group["template"] for group in spec["workerGroupSpecs"]]
    return [container for template in templates for container in template["spec"]["containers"]]


def _image() -> str:
    (image,) = {container["image"] for container in _containers(CLUSTER["spec"])}
    return image


def test_kuberay_manifests_have_the_crd_required_fields() -> None:
    jsonschema.validate(CLUSTER, RAY_CLUSTER)
    jsonschema.validate(JOB, RAY_JOB)
    broken = yaml.safe_load(yaml.safe_dump(CLUSTER))
    broken["spec"]["headGroupSpec"]["rayStartParams"]["num-cpus"] = 0  # an int where KubeRay wants a string
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, RAY_CLUSTER)


def test_kuberay_cluster_scales_gpu_workers_and_shares_ledger_and_storage() -> None:
    spec = CLUSTER["spec"]
    assert spec["rayVersion"] == importlib.metadata.version("ray")
    assert JOB["spec"]["rayClusterSpec"] == spec, "rayjob.yaml's cluster drifted from raycluster.yaml"
    for group in spec["workerGroupSpecs"]:
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
    gpu_groups = [group for group in spec["workerGroupSpecs"]
                  if group["template"]["spec"]["containers"][0]["resources"]["limits"].get("nvidia.com/gpu", 0) >= 1]
    assert gpu_groups, "no worker group requests nvidia.com/gpu"
    for group in gpu_groups:
        resources = group["template"]["spec"]["containers"][0]["resources"]
        assert resources["requests"]["nvidia.com/gpu"] == resources["limits"]["nvidia.com/gpu"]

    pvc = _load("k8s/workspace-pvc.yaml")
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    for container in _containers(spec):
        env = {item["name"]: item for item in container["env"]}
        assert env["SOUNDTRAIL_LEDGER_URL"]["valueFrom"]["secretKeyRef"] == {"name": "soundtrail-ledger", "key": "url"}
        assert env["SOUNDTRAIL_STORAGE_URI"]["valueFrom"]["secretKeyRef"] == {
            "name": "soundtrail-storage", "key": "uri", "optional": True}, "without the Secret: /workspace"
        assert env["SOUNDTRAIL_RAY_ADDRESS"]["value"] == "auto"
        _assert_ray_token_from_secret(env)
        assert {mount["mountPath"] for mount in container["volumeMounts"]} >= {"/workspace", "/dev/shm"}
    claims = {volume["persistentVolumeClaim"]["claimName"]
              for template in [spec["headGroupSpec"]["template"]] + [g["template"] for g in spec["workerGroupSpecs"]]
              for volume in template["spec"]["volumes"] if "persistentVolumeClaim" in volume}
    assert claims == {pvc["metadata"]["name"]}


def _assert_ray_token_from_secret(env: dict[str, dict[str, Any]]) -> None:
    """Ray's token mode, with the token from the soundtrail-ray-token Secret (Ray reads RAY_AUTH_TOKEN)."""
    assert env["RAY_AUTH_MODE"]["value"] == "token"
    assert env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "soundtrail-ray-token", "key": "auth_token"}


def test_the_rayjob_submitter_carries_the_ray_token_too() -> None:
    """`ray job submit` talks to the head's dashboard, which refuses a submitter without the token."""
    (submitter, *_) = JOB["spec"]["submitterPodTemplate"]["spec"]["containers"]
    _assert_ray_token_from_secret({item["name"]: item for item in submitter["env"]})
    assert submitter["image"] == _image()


K8S_DEPLOYMENT = {
    "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {"apiVersion": {"const": "apps/v1"}, "kind": {"const": "Deployment"}, "metadata": _METADATA,
                   "spec": {"type": "object", "required": ["selector", "template"], "properties": {
                       "replicas": {"type": "integer", "minimum": 0},
                       "selector": {"type": "object", "required": ["matchLabels"],
                                    "properties": {"matchLabels": _STRING_MAP}},
                       "template": _POD_TEMPLATE}}},
}


def test_kubernetes_prefect_worker_joins_the_cluster_with_its_settings() -> None:
    jsonschema.validate(WORKER, K8S_DEPLOYMENT)
    template = WORKER["spec"]["template"]
    labels = template["metadata"]["labels"]
    assert WORKER["spec"]["selector"]["matchLabels"].items() <= labels.items(), "the selector finds its pods"
    (container,) = template["spec"]["containers"]
    assert container["image"] == _image()
    script = " ".join(container["args"])
    # KubeRay names the head service <cluster>-head-svc; a node of the cluster lets flows join with "auto".
    assert f"ray start --address={CLUSTER['metadata']['name']}-head-svc:6379" in script
    assert "--num-cpus=0" in script and "--num-gpus=0" in script, "the worker pod takes no Ray work itself"
    cluster_env = {item["name"]: item for item in _containers(CLUSTER["spec"])[0]["env"]}
    env = {item["name"]: item for item in container["env"]}
    assert {name: env.get(name) for name in cluster_env} == cluster_env, "the same settings as the Ray pods"
    assert env["PREFECT_API_URL"]["valueFrom"]["secretKeyRef"]["key"] == "api-url"
    claims = {volume["persistentVolumeClaim"]["claimName"] for volume in template["spec"]["volumes"]
              if "persistentVolumeClaim" in volume}
    assert claims == {_load("k8s/workspace-pvc.yaml")["metadata"]["name"]}
    assert {mount["mountPath"] for mount in container["volumeMounts"]} >= {"/workspace", "/dev/shm"}


def test_deployments_register_against_a_prefect_server(prefect_server: str) -> None:
    """Every deployment in prefect.yaml, with its schedules, is accepted by a real Prefect API."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import DeploymentScheduleCreate, WorkPoolCreate
    from prefect.flows import load_flow_from_entrypoint

    async def register_and_read() -> dict[str, Any]:
        registered = {}
        async with get_client() as client:
            pool = PREFECT["deployments"][0]["work_pool"]["name"]
            await client.create_work_pool(WorkPoolCreate(name=pool, type="process"), overwrite=True)
            for name, deployment in DEPLOYMENTS.items():
                flow = load_flow_from_entrypoint(deployment["entrypoint"])
                flow_id = await client.create_flow(flow)
                schedules = [{"schedule": {"cron": s["cron"], "timezone": s.get("timezone", "UTC")},
                              "active": True, "parameters": s.get("parameters", {})}
                             for s in deployment["schedules"]]
                deployment_id = await client.create_deployment(
                    flow_id=flow_id, name=name, entrypoint=deployment["entrypoint"],
                    parameters=deployment.get("parameters", {}), work_pool_name=deployment["work_pool"]["name"],
                    work_queue_name=deployment["work_pool"]["work_queue_name"],
                    schedules=[DeploymentScheduleCreate(**schedule) for schedule in schedules])
                registered[name] = await client.read_deployment(deployment_id)
        return registered

    registered = asyncio.run(register_and_read())
    assert set(registered) == set(DEPLOYMENTS)
    for name, deployment in DEPLOYMENTS.items():
        crons = sorted(schedule.schedule.cron for schedule in registered[name].schedules)
        assert crons == sorted(s["cron"] for s in deployment["schedules"]), name
        assert registered[name].work_queue_name == QUEUES[name]
