"""The ingest flow: analyse batches of files on Ray, then decide and record them in order.

    inputs ──batches──▶ analyze_files (Ray, parallel) ──records──▶ record_assets (ledger, in path order)
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.context import get_run_context
from prefect.futures import as_completed

from soundtrail.config import IngestSettings, LicenseSettings
from soundtrail.flows.progress import reporter
from soundtrail.flows.runtime import cluster_cpus
from soundtrail.flows.stage import Params, Result, Stage, stage_flow
from soundtrail.ingest.analyze import analyze_batch, manifest_problem_analyses
from soundtrail.ingest.catalog import Catalog, IngestItem
from soundtrail.ingest.expiry import apply_licence_terms
from soundtrail.ingest.manifest import InputFile, read_manifest, resolve_inputs
from soundtrail.provenance.ledger import Ledger
from soundtrail.provenance.lineage_events import DatasetRef
from soundtrail.workspace import Workspace


@task(name="analyze-files", retries=2, retry_delay_seconds=2)
def analyze_files(items: list[InputFile], ingest: IngestSettings, licenses: LicenseSettings,
                  manifest: str | None) -> list[dict[str, Any]]:
    """Hash, decode, check, tag-read and fingerprint one batch (runs on a Ray worker)."""
    return analyze_batch(items, ingest, licenses, manifest)


@task(name="record-assets")
def record_assets(workspace_root: str, analyses: list[dict[str, Any]], flow_run_id: str | None) -> list[dict]:
    """Decide each file's status in curator order and append it to the ledger.

    One transaction per ``batch_size`` files: each commit is a disk sync, which per file cost as much as all the
    other ledger work. A kill loses at most the open transaction, and the re-run decides those files again.
    """
    workspace = Workspace(workspace_root)
    ordered = sorted(analyses, key=_curator_order)
    size = workspace.settings.ingest.batch_size
    items: list[IngestItem] = []
    with Ledger(workspace.ledger_url) as ledger:
        catalog = Catalog(ledger, workspace.settings.ingest, workspace.settings.licenses)
        for start in range(0, len(ordered), size):
            batch = ordered[start:start + size]
            with ledger.writer(run_id=flow_run_id) as writer:
                catalog.prefetch(batch, writer)
                items.extend(catalog.admit(analysis, writer, flow_run_id) for analysis in batch)
    return [item.as_dict() for item in items]


def split_batches(inputs: list[InputFile], batch_size: int, cpus: int) -> list[list[InputFile]]:
    """Batches of at most ``batch_size`` files, at least two per CPU while the files last, sizes within one.

    A task costs a few Prefect API calls, so files travel in batches; but a fixed batch size would leave most
    of a cluster idle on a small ingest (28 files in batches of 16 keep two CPUs busy, whatever the cluster),
    and a short last batch leaves its CPU's neighbours waiting at the end.
    """
    if not inputs:
        return []
    count = min(len(inputs), max(-(-len(inputs) // batch_size), 2 * cpus))
    size, larger = divmod(len(inputs), count)
    bounds = [index * size + min(index, larger) for index in range(count + 1)]
    return [inputs[start:stop] for start, stop in itertools.pairwise(bounds)]


def _curator_order(record: dict[str, Any]) -> tuple[int, str, str]:
    """Manifest order first (the curator's order decides which of two copies is the original), then path."""
    line = record["manifest_line"] if record["manifest_line"] is not None else 1 << 30
    return line, record["path"], record["asset_id"]


def summarize(items: list[dict[str, Any]]) -> dict[str, Any]:
    """The ingest contract's summary object."""
    counts = {status: sum(item["status"] == status for item in items)
              for status in ("accepted", "quarantined", "duplicate", "blocked")}
    return {**counts, "items": items}


def configured_inputs(ws: Workspace) -> tuple[list[str], str | None]:
    """The workspace's drop folders and manifest (``[pipeline] inputs`` and ``manifest``), resolved in it."""
    settings = ws.settings.pipeline
    paths = [str(ws.root / path) for path in settings.inputs]
    manifest = ws.root / settings.manifest if settings.manifest else None
    return paths, str(manifest) if manifest is not None and manifest.is_file() else None


def _inputs(ws: Workspace, params: Params) -> list[DatasetRef]:
    paths = params["paths"] if params["paths"] is not None else configured_inputs(ws)[0]
    return [DatasetRef(f"inputs/{Path(path).name}") for path in paths]


def _accepted(ws: Workspace, result: Result) -> list[DatasetRef]:
    ids = {item["asset_id"] for item in result["items"] if item["status"] == "accepted"}
    return [DatasetRef.of("assets", identifier) for identifier in sorted(ids)]


INGEST = Stage(
    "ingest", _inputs, _accepted,
    summary=lambda r: [f"- ingest: {r['accepted']} accepted, {r['quarantined']} quarantined, "
                       f"{r['duplicate']} duplicate, {r['blocked']} blocked"],
    tables=lambda r: {"ingest-items": [{key: item[key] for key in ("path", "status", "reason")}
                                       for item in r["items"]]},
)


@stage_flow(INGEST)
def ingest_flow(workspace: str | None = None, paths: list[str] | None = None,
                manifest: str | None = None) -> dict[str, Any]:
    """Ingest files and folders (default: the workspace's configured inputs) into its ledger; returns the summary."""
    logger = get_run_logger()
    ws = Workspace(workspace)
    settings = ws.settings
    if paths is None:
        paths, configured_manifest = configured_inputs(ws)
        manifest = manifest or configured_manifest
    manifest_result = read_manifest(Path(manifest)) if manifest else None
    inputs = resolve_inputs([Path(path) for path in paths], manifest_result)
    batches = split_batches(inputs, settings.ingest.batch_size, cluster_cpus(settings.ingest.workers))
    logger.info("ingesting %d files in %d batches", len(inputs), len(batches))
    progress = reporter()
    progress.start("analyse", len(inputs))
    futures = [analyze_files.submit(batch, settings.ingest, settings.licenses, manifest) for batch in batches]
    analyses = manifest_problem_analyses(manifest_result, inputs) if manifest_result else []
    for future in as_completed(futures):
        batch_result = future.result()
        analyses.extend(batch_result)
        progress.advance("analyse", len(batch_result))
    progress.finish("analyse")
    flow_run_id = str(get_run_context().flow_run.id)
    items = record_assets(str(ws.root), analyses, flow_run_id)
    apply_licence_terms(str(ws.root), analyses, flow_run_id)
    summary = summarize(items)
    logger.info("accepted %(accepted)d, quarantined %(quarantined)d, duplicate %(duplicate)d, blocked %(blocked)d",
                summary)
    return summary
