"""The end-to-end pipeline, one Prefect flow whose stages are subflows running their tasks on Ray:

    ingest ─▶ codec ─▶ tokenize ─▶ train ar ─┬─▶ generate + release gate ─▶ audit report
                                   train diffusion ┘

The stages share one Ray session (started once, or the cluster joined once). Every stage is
idempotent over the workspace, so a re-run with unchanged inputs redoes nothing and appends nothing
to the ledger; a run killed anywhere resumes where the ledger and the checkpoints stand. Each stage
flow leaves its OpenLineage START/COMPLETE pair and Prefect artifacts as it does when deployed on
its own (:mod:`soundtrail.flows.stage`); the pipeline adds a markdown summary of the whole run.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.context import get_run_context

from soundtrail.flows.codec import CODEC, codec_train_flow
from soundtrail.flows.generate import GENERATE, generate_flow
from soundtrail.flows.ingest import INGEST, configured_inputs, ingest_flow
from soundtrail.flows.runtime import shared_ray
from soundtrail.flows.stage import lineage_parent
from soundtrail.flows.tokenize import TOKENIZE, tokenize_flow
from soundtrail.flows.train import TRAIN, train_flow
from soundtrail.provenance.audit import write_report
from soundtrail.provenance.lineage_events import RunRef
from soundtrail.screening.stage import screen_thresholds
from soundtrail.train.families import check_family_names
from soundtrail.workspace import Workspace


@flow(name="pipeline")
def pipeline_flow(workspace: str | None = None) -> dict[str, Any]:
    """Run every stage over the workspace's inputs; returns a summary with the report path."""
    ws = Workspace.open(workspace)
    screen_thresholds(ws)  # a [screening] key naming no screening method fails now, not at the gate after training
    logger = get_run_logger()
    root = str(ws.root)
    settings = ws.settings.pipeline
    check_family_names(settings.models, "[pipeline] models")  # before any stage runs
    summary: dict[str, Any] = {"workspace": root}

    # One Ray session for every stage's subflow; each stage names this run as its lineage parent.
    with shared_ray(ws), lineage_parent(RunRef("pipeline", str(get_run_context().flow_run.id))):
        paths, manifest = configured_inputs(ws)
        summary["ingest"] = ingest_flow(root, paths, manifest)
        trained_codec = codec_train_flow(root)
        summary["codec"] = trained_codec.to_dict()
        summary["tokenize"] = tokenize_flow(root, trained_codec.codec.id)
        trained = {kind: train_flow(root, kind) for kind in settings.models}
        summary["models"] = {kind: model.to_dict() for kind, model in trained.items()}
        summary["outputs"] = [generate_flow(root, model.model.id, prompt, settings.generate_seconds,
                                            settings.seed + index)
                              for model in trained.values()
                              for index, prompt in enumerate(settings.prompts)]

    summary["report"] = str(write_report(ws, "html"))
    _publish_summary(summary)
    logger.info("pipeline finished: report at %s", summary["report"])
    return summary


def _publish_summary(summary: dict[str, Any]) -> None:
    """One markdown artifact for the whole run, made of each stage's summary lines (each stage run has its own)."""
    lines = ["# soundtrail pipeline run", "", *INGEST.summary(summary["ingest"]), *CODEC.summary(summary["codec"]),
             *TOKENIZE.summary(summary["tokenize"])]
    lines += [line for model in summary["models"].values() for line in TRAIN.summary(model)]
    lines += [line for output in summary["outputs"] for line in GENERATE.summary(output)]
    lines += [f"- audit report: `{summary['report']}`"]
    create_markdown_artifact("\n".join(lines), key="pipeline-summary", description="soundtrail pipeline run")
