"""The ingest flow: analyse batches of files on Ray, and decide and record them in curator order as they arrive.

    inputs ──plan──▶ batches ──▶ analyze_files (Ray, a window of batches in flight) ──in order──▶ ledger

The driver is stage code (:func:`soundtrail.ingest.stage.ingest_inputs`); this flow gives it an analyser that runs
each batch as a Prefect task on Ray.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.context import get_run_context

from soundtrail.config import IngestSettings, LicenseSettings
from soundtrail.flows.progress import reporter
from soundtrail.flows.runtime import cluster_cpus
from soundtrail.flows.stage import Params, Result, Stage, stage_flow
from soundtrail.ingest.analyze import analyze_batch
from soundtrail.ingest.stage import Analyser, AnalysisBatch, ingest_inputs
from soundtrail.provenance.lineage_events import DatasetRef
from soundtrail.workspace import Workspace

BATCHES_IN_FLIGHT_PER_CPU = 4  # enough to keep every CPU busy while the driver records; bounds what it holds


@task(name="analyze-files", retries=2, retry_delay_seconds=2)
def analyze_files(batch: AnalysisBatch, ingest: IngestSettings, licenses: LicenseSettings,
                  manifest: str | None) -> list[dict[str, Any]]:
    """Hash, decode, check, tag-read and fingerprint one batch (runs on a Ray worker)."""
    return analyze_batch(batch.items, ingest, licenses, manifest, known=batch.known)


def ray_analyser(ingest: IngestSettings, licenses: LicenseSettings, manifest: str | None, window: int) -> Analyser:
    """Submit ``window`` batches at once, then one more as each result is taken, in order."""

    def analyse(batches: list[AnalysisBatch]) -> Iterator[list[dict[str, Any]]]:
        progress = reporter()
        progress.start("analyse", sum(len(batch.items) for batch in batches))
        upcoming = iter(batches)
        in_flight: deque = deque()

        def submit_next() -> None:
            batch = next(upcoming, None)
            if batch is not None:
                in_flight.append(analyze_files.submit(batch, ingest, licenses, manifest))

        for _ in range(window):
            submit_next()

        def results() -> Iterator[list[dict[str, Any]]]:
            while in_flight:
                records = in_flight.popleft().result()
                submit_next()
                progress.advance("analyse", len(records))
                yield records
            progress.finish("analyse")

        return results()

    return analyse


def summarize(items: list[dict[str, Any]]) -> dict[str, Any]:
    """The ingest contract's summary object."""
    counts = {status: sum(item["status"] == status for item in items)
              for status in ("accepted", "quarantined", "duplicate", "blocked", "disputed")}
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
                       f"{r['duplicate']} duplicate, {r['blocked']} blocked, {r['disputed']} disputed"],
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
    cpus = cluster_cpus(settings.ingest.workers)
    analyser = ray_analyser(settings.ingest, settings.licenses, manifest, BATCHES_IN_FLIGHT_PER_CPU * cpus)
    flow_run_id = str(get_run_context().flow_run.id)
    items = ingest_inputs(ws, paths, manifest, analyser, flow_run_id, cpus)
    summary = summarize([item.as_dict() for item in items])
    logger.info("accepted %(accepted)d, quarantined %(quarantined)d, duplicate %(duplicate)d, blocked %(blocked)d, "
                "disputed %(disputed)d", summary)
    return summary
