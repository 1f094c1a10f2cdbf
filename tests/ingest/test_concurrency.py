"""Two ingests whose recording phases overlap admit each recording once (against both ledger backends)."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path
from unittest import mock

from soundtrail.config import IngestSettings, Settings
from soundtrail.ingest.catalog import Catalog
from soundtrail.ingest.stage import ingest_inputs
from soundtrail.provenance.ledger import Ledger
from soundtrail.workspace import Workspace
from tests.audio_fixtures import melody, write, write_manifest
from tests.ingest.driver import in_process

FILES = 6


def test_overlapping_ingests_of_the_same_recordings_admit_each_once(tmp_path: Path, ledger_url: str) -> None:
    """Two drop folders hold the same six recordings; both ingests load their duplicate index before either
    records anything (a barrier holds each one right after loading), so every decision has to be made against
    the ledger as it stands under the lock, not against the index as it was loaded."""
    first, second = tmp_path / "drop-a", tmp_path / "drop-b"
    rows = [{"path": f"t{index}.flac", "license": "CC0-1.0", "rights_holder": "Label"} for index in range(FILES)]
    for index in range(FILES):
        write(first / f"t{index}.flac", melody(90 + index, seconds=4))
    shutil.copytree(first, second)
    manifests = [write_manifest(folder, rows) for folder in (first, second)]
    Ledger(ledger_url).close()  # create the tables once, before the two ingests race
    settings = Settings(ledger_url=ledger_url, ingest=IngestSettings(batch_size=2))  # several transactions each
    both_loaded = threading.Barrier(2, timeout=120)
    real_init = Catalog.__init__

    def load_then_wait(catalog: Catalog, *args, **kwargs) -> None:
        real_init(catalog, *args, **kwargs)
        both_loaded.wait()

    results: dict[str, list] = {}
    errors: list[BaseException] = []

    def run(name: str, folder: Path, manifest: Path) -> None:
        workspace = Workspace(tmp_path / f"ws-{name}", settings)
        try:
            results[name] = ingest_inputs(workspace, [str(folder)], str(manifest),
                                          in_process(workspace, str(manifest)), name)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)
            both_loaded.abort()

    with mock.patch.object(Catalog, "__init__", load_then_wait):
        threads = [threading.Thread(target=run, args=(name, folder, manifest))
                   for name, folder, manifest in zip(("a", "b"), (first, second), manifests, strict=True)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(300)
    assert not errors, errors
    statuses = sorted(item.status for items in results.values() for item in items)
    assert statuses == ["accepted"] * FILES + ["duplicate"] * FILES
    ledger = Ledger(ledger_url)
    accepted = ledger.rows("assets", status="accepted")
    assert len(accepted) == FILES and len({row["sha256"] for row in accepted}) == FILES
    assert ledger.verify().ok
    ledger.close()
