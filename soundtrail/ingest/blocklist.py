"""Reference fingerprints of protected works (``soundtrail blocklist add``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from soundtrail.ingest.analyze import analyze_batch
from soundtrail.ingest.catalog import Catalog
from soundtrail.ingest.manifest import resolve_inputs
from soundtrail.provenance.ledger import Ledger
from soundtrail.workspace import Workspace


def add_to_blocklist(workspace: Workspace, paths: list[Path], reason: str) -> list[dict[str, Any]]:
    """Fingerprint each reference file and record it as a blocked work; errors name the file."""
    settings = workspace.settings
    inputs = resolve_inputs([Path(path) for path in paths], None)
    added = []
    with Ledger(workspace.ledger_url) as ledger:
        catalog = Catalog(ledger, settings.ingest, settings.licenses)
        for analysis in analyze_batch(inputs, settings.ingest, settings.licenses):
            with catalog.transaction() as writer:
                work_id = catalog.block(analysis, reason, writer)
            added.append({"id": work_id, "path": analysis["path"]})
    return added
