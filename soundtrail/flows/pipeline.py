"""The end-to-end pipeline, one Prefect flow whose stages are subflows running their tasks on Ray:

    ingest ─▶ codec ─▶ tokenize ─▶ train ar ─┬─▶ generate + release gate ─▶ audit report
                                   train diffusion ┘

The stages share one Ray session (started once, or the cluster joined once). Every stage is
idempotent over the workspace, so a re-run with unchanged inputs redoes nothing and appends nothing
to the ledger; a run killed anywhere resumes where the ledger and the checkpoints stand. Each stage
also leaves an OpenLineage START/COMPLETE pair (inputs and outputs named as datasets) and the run
leaves Prefect artifacts: a markdown summary and tables.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.context import get_run_context

from soundtrail.flows.codec import codec_train_flow
from soundtrail.flows.generate import generate_flow
from soundtrail.flows.ingest import ingest_flow
from soundtrail.flows.runtime import ray_task_runner, shared_ray
from soundtrail.flows.tokenize import tokenize_flow
from soundtrail.flows.train import train_flow
from soundtrail.provenance.audit import write_report
from soundtrail.provenance.ledger import Ledger
from soundtrail.provenance.lineage_events import DatasetRef, LineageEmitter, RunRef
from soundtrail.provenance.records import ModelRecord
from soundtrail.screening.stage import screen_thresholds
from soundtrail.train.families import check_family_names
from soundtrail.workspace import Workspace


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
    """Run every stage over the workspace's inputs; returns a summary with the report path."""
    ws = Workspace(workspace)
    screen_thresholds(ws)  # a [screening] key naming no screening method fails now, not at the gate after training
    logger = get_run_logger()
    settings = ws.settings.pipeline
    check_family_names(settings.models, "[pipeline] models")  # before any stage runs
    runner = ray_task_runner(ws)
    lineage = LineageEmitter.for_workspace(ws.root, namespace=ws.settings.lineage.namespace,
                                           transport=ws.settings.lineage.transport, url=ws.settings.lineage.url)
    parent = RunRef("pipeline", str(get_run_context().flow_run.id))
    summary: dict[str, Any] = {"workspace": str(ws.root)}

    with shared_ray(ws), Ledger(ws.ledger_url) as ledger:  # one Ray session for every stage's subflow
        paths, manifest = pipeline_inputs(ws)
        with lineage.stage_run("ingest", [DatasetRef(f"inputs/{Path(p).name}") for p in paths], parent=parent) as run:
            summary["ingest"] = ingest_flow.with_options(task_runner=runner)(str(ws.root), paths, manifest)
            accepted = [item["asset_id"] for item in summary["ingest"]["items"] if item["status"] == "accepted"]
            run.outputs.extend(_refs("assets", accepted))
        accepted_refs = _refs("assets", [row["id"] for row in ledger.rows("assets", status="accepted")])

        with lineage.stage_run("codec", accepted_refs, parent=parent) as run:
            trained_codec = codec_train_flow.with_options(task_runner=runner)(str(ws.root))
            codec = trained_codec.codec
            summary["codec"] = trained_codec.to_dict()
            run.outputs.append(DatasetRef.of("models", codec.id))

        with lineage.stage_run("tokenize", accepted_refs, parent=parent) as run:
            summary["tokenize"] = tokenize_flow.with_options(task_runner=runner)(str(ws.root), codec.id)
            shards = [row["id"] for row in ledger.rows("shards", status="current")]
            run.outputs.extend(_refs("shards", shards))

        models: dict[str, ModelRecord] = {}
        summary["models"] = {}
        for kind in settings.models:
            with lineage.stage_run(f"train-{kind}", _refs("shards", shards), parent=parent) as run:
                trained = train_flow.with_options(task_runner=runner)(str(ws.root), kind)
                models[kind] = trained.model
                summary["models"][kind] = trained.to_dict()
                run.outputs.append(DatasetRef.of("models", trained.model.id))

        summary["outputs"] = []
        for kind, model in models.items():
            with lineage.stage_run(f"generate-{kind}", [DatasetRef.of("models", model.id)], parent=parent) as run:
                for index, prompt in enumerate(settings.prompts):
                    result = generate_flow.with_options(task_runner=runner)(
                        str(ws.root), model.id, prompt, settings.generate_seconds, settings.seed + index)
                    summary["outputs"].append(result)
                    run.outputs.append(DatasetRef.of("outputs", result["output_id"]))

    summary["report"] = str(write_report(ws, "html"))
    lineage.close()
    _publish_artifacts(summary)
    logger.info("pipeline finished: report at %s", summary["report"])
    return summary


def _publish_artifacts(summary: dict[str, Any]) -> None:
    """A markdown summary and two tables on the flow run, for whoever watches the Prefect UI."""
    ingest = summary["ingest"]
    lines = [
        "# soundtrail pipeline run", "",
        f"- ingest: {ingest['accepted']} accepted, {ingest['quarantined']} quarantined, "
        f"{ingest['duplicate']} duplicate, {ingest['blocked']} blocked",
        f"- codec `{summary['codec']['codec_id']}`; shard set `{summary['tokenize']['shard_set']}` "
        f"({summary['tokenize']['rows']} segments in {summary['tokenize']['shards']} shards)",
    ]
    lines += [f"- {kind} model `{model['model_id']}`: loss {model['metrics']['initial_loss']:.3f} -> "
              f"{model['metrics']['final_loss']:.3f}" for kind, model in summary["models"].items()]
    lines += [f"- audit report: `{summary['report']}`"]
    create_markdown_artifact("\n".join(lines), key="pipeline-summary", description="soundtrail pipeline run")
    create_table_artifact([{key: item[key] for key in ("path", "status", "reason")} for item in ingest["items"]],
                          key="ingest-items", description="every input and its ingest status")
    create_table_artifact([{key: output.get(key) for key in ("output_id", "model_kind", "prompt", "status", "verdict",
                                                               "payload_hex")} for output in summary["outputs"]],
                          key="release-log", description="generated outputs through the release gate")
