"""The end-to-end pipeline, one Prefect flow whose stages are subflows running their tasks on Ray:

    ingest ─▶ codec ─▶ tokenize ─▶ train ar ─┬─▶ generate + release gate ─▶ audit report
                                   train diffusion ┘

The stages share one Ray session (started once, or the cluster joined once). A scheduled run does only what
its inputs call for: after ingest, each later stage is planned here against the ledger and its flow runs only
when the plan has work, so an unchanged drop folder ends after ingest with nothing trained, encoded, generated
or appended to the ledger, and the outputs released before reported as they were:

- codec: the workspace codec is kept (:func:`soundtrail.codec.stage.plan_codec`: ``[codec] checkpoint``, else
  the recorded choice; a new one only when there is none or ``[codec] retrain`` asks);
- tokenize: only accepted assets in no current shard of the codec's shard set are encoded, into new shards;
- train: a family keeps the model that saw exactly the current shards; otherwise it trains a new one unless
  ``[pipeline] retrain_models = "never"`` (:func:`soundtrail.train.stage.plan_generator`), starting where
  ``soundtrail train`` would: from the family's previous model, its parent, unless ``[train] init`` or the
  rules of :mod:`soundtrail.train.start` say afresh;
- generate: a request the gate already decided is reported from the ledger;
- the audit report is rendered again only when the ledger moved since it was.

A run killed anywhere resumes where the ledger and the checkpoints stand. Each stage flow that runs leaves its
OpenLineage START/COMPLETE pair and Prefect artifacts as it does when deployed on its own
(:mod:`soundtrail.flows.stage`); a stage with nothing to do wrote nothing, so it leaves none. The pipeline adds a
markdown summary of the whole run.
"""

from __future__ import annotations

import time
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.context import get_run_context

from soundtrail.codec.stage import plan_codec, resolve_codec, tokenize_plan
from soundtrail.codec.tokenize import unchanged_summary
from soundtrail.flows.codec import codec_train_flow
from soundtrail.flows.generate import GENERATE, generate_flow
from soundtrail.flows.ingest import INGEST, configured_inputs, ingest_flow
from soundtrail.flows.runtime import shared_ray
from soundtrail.flows.stage import lineage_parent
from soundtrail.flows.tokenize import TOKENIZE, tokenize_flow
from soundtrail.flows.train import train_flow
from soundtrail.provenance.audit import report_covers, write_report
from soundtrail.provenance.ledger import Ledger
from soundtrail.provenance.lineage_events import RunRef
from soundtrail.release.generate import recorded_output
from soundtrail.screening.stage import screen_thresholds
from soundtrail.train.families import check_family_names
from soundtrail.train.stage import TrainedModel, plan_generator
from soundtrail.workspace import Workspace

REPORT_FORMAT = "html"


@flow(name="pipeline")
def pipeline_flow(workspace: str | None = None) -> dict[str, Any]:
    """Run every stage that has work over the workspace's inputs; returns a summary with the report path.

    The summary's ``codec``, each of its ``models`` and each of its ``outputs`` carry an ``action`` (``trained``,
    ``generated`` or ``kept``); the codec and the models also the ``reason`` their plan gave; ``seconds`` holds
    each part's wall time (``ray``: starting or joining it).
    """
    ws = Workspace.open(workspace)
    screen_thresholds(ws)  # a [screening] key naming no screening method fails now, not at the gate after training
    logger = get_run_logger()
    root = str(ws.root)
    settings = ws.settings.pipeline
    check_family_names(settings.models, "[pipeline] models")  # before any stage runs
    report = ws.path("reports") / f"audit.{REPORT_FORMAT}"
    laps = _Laps()

    # One Ray session for every stage's subflow; each stage names this run as its lineage parent.
    with shared_ray(ws), lineage_parent(RunRef("pipeline", str(get_run_context().flow_run.id))):
        laps.lap("ray")
        paths, manifest = configured_inputs(ws)
        summary: dict[str, Any] = {"workspace": root, "ingest": ingest_flow(root, paths, manifest)}
        laps.lap("ingest")
        summary["codec"] = _codec(ws)
        laps.lap("codec")
        summary["tokenize"] = _tokenize(ws, summary["codec"]["codec_id"])
        laps.lap("tokenize")
        summary["models"] = {kind: _train(ws, kind) for kind in settings.models}
        laps.lap("train")
        summary["outputs"] = [output for model in summary["models"].values() for output in _generate(ws, model)]
        laps.lap("generate")
    laps.lap("ray stop")

    with Ledger(ws.ledger_url) as ledger:
        _, head = ledger.head()
    summary["report"] = str(report if report_covers(report, head) else write_report(ws, REPORT_FORMAT))
    laps.lap("report")
    summary["seconds"] = dict(laps)
    _publish_summary(summary)
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


def _codec(ws: Workspace) -> dict[str, Any]:
    plan = plan_codec(ws)
    codec = plan.codec or codec_train_flow(str(ws.root), reason=plan.reason).codec
    return {"codec_id": codec.id, "kind": codec.kind, "path": codec.path, "config": dict(codec.config),
            "assets": list(codec.assets), "metrics": dict(codec.metrics),
            "action": "trained" if plan.train else "kept", "reason": plan.reason}


def _tokenize(ws: Workspace, codec_id: str) -> dict[str, Any]:
    unchanged = unchanged_summary(tokenize_plan(ws, resolve_codec(ws, codec_id)))
    return unchanged if unchanged is not None else tokenize_flow(str(ws.root), codec_id)


def _train(ws: Workspace, kind: str) -> dict[str, Any]:
    plan = plan_generator(ws, kind)
    trained = TrainedModel(plan.model) if plan.model is not None else train_flow(str(ws.root), kind)
    return {**trained.to_dict(), "action": "trained" if plan.train else "kept", "reason": plan.reason}


def _generate(ws: Workspace, model: dict[str, Any]) -> list[dict[str, Any]]:
    """The configured prompts through ``model`` and the gate; a request decided before is reported as it was."""
    settings = ws.settings.pipeline
    outputs = []
    for index, prompt in enumerate(settings.prompts):
        seed = settings.seed + index
        recorded = recorded_output(ws, model["model_id"], prompt, settings.generate_seconds, seed)
        if recorded is not None:
            outputs.append({**recorded, "action": "kept"})
        else:
            generated = generate_flow(str(ws.root), model["model_id"], prompt, settings.generate_seconds, seed)
            outputs.append({**generated, "action": "generated"})
    return outputs


def _publish_summary(summary: dict[str, Any]) -> None:
    """One markdown artifact for the whole run: what each stage did (each stage run that ran has its own)."""
    codec = summary["codec"]
    lines = ["# soundtrail pipeline run", "", *INGEST.summary(summary["ingest"]),
             f"- codec `{codec['codec_id']}` ({codec['kind']}) {codec['action']}: {codec['reason']}",
             *TOKENIZE.summary(summary["tokenize"])]
    lines += [f"- {kind} model `{model['model_id']}` {model['action']}: {model['reason']}"
              + (f" ({model['init_reason']})" if model["action"] == "trained" else "")
              for kind, model in summary["models"].items()]
    lines += [f"{line} ({output['action']})" for output in summary["outputs"] for line in GENERATE.summary(output)]
    lines += [f"- audit report: `{summary['report']}`"]
    create_markdown_artifact("\n".join(lines), key="pipeline-summary", description="soundtrail pipeline run")
