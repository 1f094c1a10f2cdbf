"""Reference fingerprints of protected works (``soundtrail blocklist add``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from soundtrail.config import Workspace
from soundtrail.provenance.ledger import Ledger
from soundtrail.tasks.catalog import Catalog
from soundtrail.tasks.ingest import analyze_batch
from soundtrail.tasks.manifest import resolve_inputs


def add_to_blocklist(workspace: Workspace, paths: list[Path], reason: str) -> list[dict[str, Any]]:
    """Fingerprint each reference file and record it as a blocked work; errors name the file."""
    settings = workspace.settings
    inputs = resolve_inputs([Path(path) for path in paths], None)
    ledger = Ledger(workspace.ledger_url)
    catalog = Catalog(ledger, settings.ingest, settings.licenses)
    added = []
    for analysis in analyze_batch(inputs, settings.ingest, settings.licenses):
        with ledger.writer() as writer:
            work_id = catalog.block(analysis, reason, writer)
        added.append({"id": work_id, "path": analysis["path"]})
    ledger.close()
    return added
