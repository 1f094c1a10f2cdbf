"""The end-to-end pipeline, one Prefect flow whose stages are subflows running their tasks on Ray:

    ingest ─▶ codec ─▶ tokenize ─▶ train ar ─┬─▶ generate + release gate ─▶ audit report
                                   train diffusion ┘

The stages share one Ray session (started once, or the cluster joined once). A scheduled run does only what
its inputs call for: after ingest, each later stage is planned in the driver against the ledger and runs only
when the plan has work, so an unchanged drop folder ends after ingest with nothing trained, encoded, generated
or appended to the ledger, and the outputs released before reported as they were:

- codec: the workspace codec is kept (:func:`soundtrail.codec.stage.plan_codec`: ``[codec] checkpoint``, else
  the recorded choice; a new one only when there is none or ``[codec] retrain`` asks);
- tokenize: only accepted assets in no current shard of the codec's shard set are encoded, into new shards;
- train: a family keeps the model that saw exactly the current shards; otherwise it trains a new one (from
  scratch) unless ``[pipeline] retrain_models = "never"`` (:func:`soundtrail.train.stage.plan_generator`);
- generate: a request the gate already decided is reported from the ledger;
- the audit report is rendered again only when the ledger moved since it was.

A run killed anywhere resumes where the ledger and the checkpoints stand. Each stage that runs leaves an
OpenLineage START/COMPLETE pair (inputs and outputs named as datasets; a stage that had nothing to do wrote
nothing, so it leaves none) and the run leaves Prefect artifacts: a markdown summary and tables.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.context import get_run_context
from prefect_ray import RayTaskRunner

from soundtrail.codec.stage import plan_codec, resolve_codec, tokenize_plan
from soundtrail.codec.tokenize import unchanged_summary
from soundtrail.flows.codec import codec_train_flow
from soundtrail.flows.generate import generate_flow
from soundtrail.flows.ingest import ingest_flow
from soundtrail.flows.runtime import ray_task_runner, shared_ray
from soundtrail.flows.tokenize import tokenize_flow
from soundtrail.flows.train import train_flow
from soundtrail.provenance.audit import report_covers, write_report
from soundtrail.provenance.ledger import Ledger
from soundtrail.provenance.lineage_events import DatasetRef, LineageEmitter, RunRef
from soundtrail.release.generate import recorded_output
from soundtrail.screening.stage import screen_thresholds
from soundtrail.train.families import check_family_names
from soundtrail.train.stage import TrainedModel, plan_generator
from soundtrail.workspace import Workspace

REPORT_FORMAT = "html"


def _refs(kind: str, ids: list[str]) -> list[DatasetRef]:
    return [DatasetRef.of(kind, identifier) for identifier in sorted(set(ids))]


def pipeline_inputs(ws: Workspace) -> tuple[list[str], str | None]:
    """The configured input paths and manifest, resolved in the workspace."""
    settings = ws.settings.pipeline
    paths = [str(ws.root / path) for path in settings.inputs]
    manifest = ws.root / settings.manifest if settings.manifest else None
    return paths, str(manifest) if manifest is not None and manifest.is_file() else None


@flow(name="pipeline")
def pipeline_flow(workspace: str) -> dict[str, Any]:
    """Run every stage that has work over the workspace's inputs; returns a summary with the report path.

    The summary's ``codec``, each of its ``models`` and each of its ``outputs`` carry an ``action`` (``trained``,
    ``generated`` or ``kept``); the codec and the models also the ``reason`` their plan gave; ``seconds`` holds
    each part's wall time (``ray``: starting or joining it).
    """
    ws = Workspace(workspace)
    screen_thresholds(ws)  # a [screening] key naming no screening method fails now, not at the gate after training
    logger = get_run_logger()
    settings = ws.settings.pipeline
    check_family_names(settings.models, "[pipeline] models")  # before any stage runs
    lineage = LineageEmitter.for_workspace(ws.root, namespace=ws.settings.lineage.namespace,
                                           transport=ws.settings.lineage.transport, url=ws.settings.lineage.url)
    report = ws.path("reports") / f"audit.{REPORT_FORMAT}"
    parent = RunRef("pipeline", str(get_run_context().flow_run.id))

    laps = _Laps()
    with shared_ray(ws), Ledger(ws.ledger_url) as ledger:  # one Ray session for every stage's subflow
        laps.lap("ray")
        stages = _Stages(ws, ledger, ray_task_runner(ws), lineage, parent)
        summary: dict[str, Any] = {"workspace": str(ws.root), "ingest": stages.ingest()}
        laps.lap("ingest")
        summary["codec"] = stages.codec()
        laps.lap("codec")
        summary["tokenize"] = stages.tokenize(summary["codec"]["codec_id"])
        laps.lap("tokenize")
        summary["models"] = {kind: stages.train(kind, summary["codec"]["codec_id"]) for kind in settings.models}
        laps.lap("train")
        summary["outputs"] = [output for model in summary["models"].values() for output in stages.generate(model)]
        laps.lap("generate")
        _, head = ledger.head()
    laps.lap("ray stop")

    summary["report"] = str(report if report_covers(report, head) else write_report(ws, REPORT_FORMAT))
    laps.lap("report")
    summary["seconds"] = dict(laps)
    lineage.close()
    _publish_artifacts(summary)
    logger.info("pipeline finished: report at %s", summary["report"])
    return summary


class _Laps(dict[str, float]):
    """Wall seconds of each part of a run (the summary's ``seconds``): where a scheduled run's time went."""

    def __init__(self) -> None:
        super().__init__()
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self[name], self._last = round(now - self._last, 3), now


@dataclass
class _Stages:
    """Each stage of one pipeline run: planned here against the ledger, run as a subflow only when it has work."""

    ws: Workspace
    ledger: Ledger
    runner: RayTaskRunner
    lineage: LineageEmitter
    parent: RunRef

    def _accepted(self) -> list[DatasetRef]:
        return _refs("assets", [row["id"] for row in self.ledger.rows("assets", status="accepted")])

    def ingest(self) -> dict[str, Any]:
        """Always runs: only ingest reads the drop folder."""
        paths, manifest = pipeline_inputs(self.ws)
        inputs = [DatasetRef(f"inputs/{Path(path).name}") for path in paths]
        with self.lineage.stage_run("ingest", inputs, parent=self.parent) as run:
            result = ingest_flow.with_options(task_runner=self.runner)(str(self.ws.root), paths, manifest)
            run.outputs.extend(_refs("assets", [item["asset_id"] for item in result["items"]
                                                if item["status"] == "accepted"]))
        return result

    def codec(self) -> dict[str, Any]:
        plan = plan_codec(self.ws)
        codec = plan.codec
        if codec is None:
            with self.lineage.stage_run("codec", self._accepted(), parent=self.parent) as run:
                codec = codec_train_flow.with_options(task_runner=self.runner)(str(self.ws.root),
                                                                               reason=plan.reason).codec
                run.outputs.append(DatasetRef.of("models", codec.id))
        return {"codec_id": codec.id, "kind": codec.kind, "path": codec.path, "config": dict(codec.config),
                "assets": list(codec.assets), "metrics": dict(codec.metrics),
                "action": "trained" if plan.train else "kept", "reason": plan.reason}

    def tokenize(self, codec_id: str) -> dict[str, Any]:
        unchanged = unchanged_summary(tokenize_plan(self.ws, resolve_codec(self.ws, codec_id)))
        if unchanged is not None:
            return unchanged
        with self.lineage.stage_run("tokenize", self._accepted(), parent=self.parent) as run:
            result = tokenize_flow.with_options(task_runner=self.runner)(str(self.ws.root), codec_id)
            run.outputs.extend(self._shards(codec_id))
        return result

    def _shards(self, codec_id: str) -> list[DatasetRef]:
        return _refs("shards", [row["id"] for row in self.ledger.rows("shards", status="current", codec_id=codec_id)])

    def train(self, kind: str, codec_id: str) -> dict[str, Any]:
        plan = plan_generator(self.ws, kind)
        trained = TrainedModel(plan.model) if plan.model is not None else None
        if trained is None:  # a new model, from scratch: continuing from the family's previous one plugs in here
            with self.lineage.stage_run(f"train-{kind}", self._shards(codec_id), parent=self.parent) as run:
                trained = train_flow.with_options(task_runner=self.runner)(str(self.ws.root), kind)
                run.outputs.append(DatasetRef.of("models", trained.model.id))
        return {**trained.to_dict(), "action": "trained" if plan.train else "kept", "reason": plan.reason}

    def generate(self, model: dict[str, Any]) -> list[dict[str, Any]]:
        """The configured prompts through ``model`` and the gate; a request decided before is reported as it was."""
        settings = self.ws.settings.pipeline
        requests = [(prompt, settings.seed + index) for index, prompt in enumerate(settings.prompts)]
        done = {}
        for prompt, seed in requests:
            recorded = recorded_output(self.ws, model["model_id"], prompt, settings.generate_seconds, seed)
            if recorded is not None:
                done[(prompt, seed)] = {**recorded, "action": "kept"}
        new = [request for request in requests if request not in done]
        if new:
            with self.lineage.stage_run(f"generate-{model['kind']}", [DatasetRef.of("models", model["model_id"])],
                                        parent=self.parent) as run:
                for prompt, seed in new:
                    result = generate_flow.with_options(task_runner=self.runner)(
                        str(self.ws.root), model["model_id"], prompt, settings.generate_seconds, seed)
                    done[(prompt, seed)] = {**result, "action": "generated"}
                    run.outputs.append(DatasetRef.of("outputs", result["output_id"]))
        return [done[request] for request in requests]


def _publish_artifacts(summary: dict[str, Any]) -> None:
    """A markdown summary and two tables on the flow run, for whoever watches the Prefect UI."""
    ingest = summary["ingest"]
    lines = [
        "# soundtrail pipeline run", "",
        f"- ingest: {ingest['accepted']} accepted, {ingest['quarantined']} quarantined, "
        f"{ingest['duplicate']} duplicate, {ingest['blocked']} blocked",
        f"- codec `{summary['codec']['codec_id']}` {summary['codec']['action']} ({summary['codec']['reason']}); "
        f"shard set `{summary['tokenize']['shard_set']}` ({summary['tokenize']['rows']} segments in "
        f"{summary['tokenize']['shards']} shards, {summary['tokenize']['new_shards']} new)",
    ]
    lines += [f"- {kind} model `{model['model_id']}` {model['action']} ({model['reason']}): loss "
              f"{model['metrics']['initial_loss']:.3f} -> {model['metrics']['final_loss']:.3f}"
              for kind, model in summary["models"].items()]
    lines += [f"- audit report: `{summary['report']}`"]
    create_markdown_artifact("\n".join(lines), key="pipeline-summary", description="soundtrail pipeline run")
    create_table_artifact([{key: item[key] for key in ("path", "status", "reason")} for item in ingest["items"]],
                          key="ingest-items", description="every input and its ingest status")
    create_table_artifact([{key: output.get(key) for key in ("output_id", "model_kind", "prompt", "action", "status",
                                                               "verdict", "payload_hex")}
                           for output in summary["outputs"]],
                          key="release-log", description="generated outputs through the release gate")
