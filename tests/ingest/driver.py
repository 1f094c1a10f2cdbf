"""The ingest flow's driver without Prefect or Ray, for tests: batches analysed in-process, in order."""

from __future__ import annotations

import datetime as dt
import itertools
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from unittest import mock

from soundtrail.ingest.analyze import analyze_batch
from soundtrail.ingest.catalog import Catalog, IngestItem
from soundtrail.ingest.stage import Analyser, AnalysisBatch, ingest_inputs
from soundtrail.provenance.ledger import LedgerWriter
from soundtrail.workspace import Workspace


class Killed(Exception):
    """Stands in for the process dying in the middle of a ledger transaction."""


def in_process(workspace: Workspace, manifest: str | None, today: dt.date | None = None) -> Analyser:
    settings = workspace.settings

    def analyse(batches: list[AnalysisBatch]) -> Iterator[list[dict]]:
        return (analyze_batch(batch.items, settings.ingest, settings.licenses, manifest, today, batch.known)
                for batch in batches)

    return analyse


def ingest(workspace: Workspace, paths: list[Path], manifest: Path | None = None,
           kill_at: int | None = None, today: dt.date | None = None) -> dict[str, dict]:
    """Ingest through the flow's own driver; items by file name.

    ``kill_at`` makes the process "die" right after deciding the file at that position in curator order;
    ``today`` is the date the licence expiry is judged on (UTC today by default).
    """
    manifest_name = str(manifest) if manifest else None
    with mock.patch.object(Catalog, "admit", _dying_admit(kill_at)):
        items = ingest_inputs(workspace, [str(path) for path in paths], manifest_name,
                              in_process(workspace, manifest_name, today), "test-run", today=today)
    return {Path(item.path).name: item.as_dict() for item in items}


def _dying_admit(kill_at: int | None) -> Callable:
    real_admit, calls = Catalog.admit, itertools.count()

    def admit(catalog: Catalog, analysis: dict, writer: LedgerWriter, flow_run_id: str | None) -> IngestItem:
        item = real_admit(catalog, analysis, writer, flow_run_id)
        if next(calls) == kill_at:
            raise Killed(analysis["path"])
        return item

    return admit


def mp3_of(source: Path, target: Path) -> Path:
    """``source`` re-encoded by ffmpeg as a 128 kb/s MP3 without its tags."""
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(source), "-map_metadata", "-1", "-b:a", "128k",
                    str(target)], check=True)
    return target
