"""What every stage flow does around its own work, written once: the ``stage_flow`` decorator.

    @stage_flow(TRAIN)                            a Prefect flow named after the stage; each run
    def train_flow(workspace=None, kind="ar"):      1. resolves the workspace (the parameter, else
        ...                                            SOUNDTRAIL_WORKSPACE, else ./workspace)
                                                    2. emits OpenLineage START naming the stage's inputs
                                                    3. starts Ray, or joins ``ray_address``, unless its
                                                       caller already did; the stage's tasks run there
                                                    4. runs the stage's own work (the decorated function)
                                                    5. emits COMPLETE naming the outputs (FAIL on error)
                                                    6. publishes Prefect artifacts: a markdown summary and
                                                       the stage's tables

A :class:`Stage` says only what is particular to one stage: what it reads and writes as lineage
datasets and what its summary shows. A deployment of a stage (deploy/prefect.yaml), the CLI command and
the pipeline calling the stage as a subflow therefore leave the same record. Inside the pipeline a stage
finds Ray running and names the pipeline's run as its lineage parent (:func:`lineage_parent`).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Self

import ray
from prefect import Flow, flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.context import get_run_context
from prefect.task_runners import TaskRunner
from prefect_ray import RayTaskRunner

from soundtrail.flows.runtime import shared_ray
from soundtrail.provenance.ledger import Ledger
from soundtrail.provenance.lineage_events import DatasetRef, LineageEmitter, RunRef
from soundtrail.workspace import Workspace

Params = Mapping[str, Any]
Result = Mapping[str, Any]
Rows = list[dict[str, Any]]


def _no_tables(result: Result) -> dict[str, Rows]:
    return {}


@dataclass(frozen=True)
class Stage:
    """One stage as lineage and the Prefect UI see it.

    ``inputs`` is called before the work (so it may also check a prerequisite and fail early),
    ``outputs``, ``summary`` (markdown lines) and ``tables`` (artifact key to rows) on its result.
    ``variant`` names the job within the stage (``train-ar``, ``generate-diffusion``).
    """

    name: str
    inputs: Callable[[Workspace, Params], list[DatasetRef]]
    outputs: Callable[[Workspace, Result], list[DatasetRef]]
    summary: Callable[[Result], list[str]]
    tables: Callable[[Result], dict[str, Rows]] = _no_tables
    variant: Callable[[Workspace, Params], str] | None = None

    def job(self, workspace: Workspace, params: Params) -> str:
        return f"{self.name}-{self.variant(workspace, params)}" if self.variant else self.name


def ledger_refs(workspace: Workspace, kind: str, **filters: Any) -> list[DatasetRef]:
    """The ledger's ``kind`` rows matching ``filters`` as datasets (``assets/<id>``, ``shards/<id>``, ...)."""
    with Ledger(workspace.ledger_url) as ledger:
        ids = {row["id"] for row in ledger.rows(kind, **filters)}
    return [DatasetRef.of(kind, identifier) for identifier in sorted(ids)]


def trained_model(id_key: str) -> Callable[[Workspace, Result], list[DatasetRef]]:
    """The outputs of a stage that trains one model: ``models/<result[id_key]>``."""
    return lambda workspace, result: [DatasetRef.of("models", result[id_key])]


def loss_change(metrics: Mapping[str, Any]) -> str:
    """A trained model's summary line: what training did to its loss."""
    return f"loss {metrics['initial_loss']:.3f} -> {metrics['final_loss']:.3f} over {metrics['steps']} steps"


_parent: ContextVar[RunRef | None] = ContextVar("soundtrail_lineage_parent", default=None)


@contextlib.contextmanager
def lineage_parent(run: RunRef) -> Iterator[None]:
    """Stage flows called inside this block name ``run`` as their OpenLineage parent."""
    token = _parent.set(run)
    try:
        yield
    finally:
        _parent.reset(token)


class StageRayTaskRunner(RayTaskRunner):
    """prefect-ray's runner, except that it leaves starting Ray to the stage flow.

    The runner is entered before the flow's parameters are known, but where Ray runs (``ray_address``)
    is a setting of the workspace, a parameter. So the flow starts or joins Ray itself
    (:func:`soundtrail.flows.runtime.shared_ray`) and this runner submits to that session; when a caller
    already runs Ray (the pipeline, the CLI's runner) it is used as prefect-ray always does.
    """

    def __enter__(self) -> Self:
        if ray.is_initialized():
            return super().__enter__()
        TaskRunner.__enter__(self)  # started, owning no Ray: RayTaskRunner.__exit__ leaves Ray alone
        return self


def stage_flow(stage: Stage) -> Callable[[Callable[..., Any]], Flow[..., Any]]:
    """Make ``fn(workspace, ...)`` the Prefect flow of ``stage`` (see the module docstring)."""

    def decorate(fn: Callable[..., Any]) -> Flow[..., Any]:
        # Prefect reads the parameters, defaults, docstring and annotations from the wrapper, and would resolve
        # annotations in this module: they are handed over evaluated, in ``fn``'s own namespace.
        signature = inspect.signature(fn, eval_str=True)

        @functools.wraps(fn)
        def run_stage(*args: Any, **kwargs: Any) -> Any:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            workspace = Workspace.open(bound.arguments["workspace"])
            bound.arguments["workspace"] = str(workspace.root)
            return _run(stage, workspace, bound.arguments, lambda: fn(*bound.args, **bound.kwargs))

        run_stage.__signature__ = signature  # type: ignore[attr-defined]
        return flow(name=stage.name, task_runner=StageRayTaskRunner())(run_stage)

    return decorate


def _run(stage: Stage, workspace: Workspace, params: Params, work: Callable[[], Any]) -> Any:
    settings = workspace.settings.lineage
    job = stage.job(workspace, params)
    inputs = stage.inputs(workspace, params)
    lineage = LineageEmitter.for_workspace(workspace.root, namespace=settings.namespace,
                                           transport=settings.transport, url=settings.url)
    run_id = str(get_run_context().flow_run.id)  # the lineage run is the Prefect flow run
    try:
        with lineage.stage_run(job, inputs, run_id=run_id, parent=_parent.get()) as run, shared_ray(workspace):
            result = work()
            reported = result.to_dict() if hasattr(result, "to_dict") else result  # records report as their JSON
            run.outputs.extend(stage.outputs(workspace, reported))
    finally:
        lineage.close()
    _publish_artifacts(job, stage, reported)
    return result


def _publish_artifacts(job: str, stage: Stage, result: Result) -> None:
    """The stage's markdown summary (key ``<job>-summary``) and its tables, on the running flow run."""
    create_markdown_artifact("\n".join([f"# soundtrail {job}", "", *stage.summary(result)]),
                             key=f"{job}-summary", description=f"soundtrail {job} run")
    for key, rows in stage.tables(result).items():
        create_table_artifact(rows, key=key, description=f"soundtrail {job}: {key}")
