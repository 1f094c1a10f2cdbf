"""The ingest command end to end: Prefect flow, tasks on Ray, the JSON contract, re-runs, verify."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from soundtrail.ingest.stage import split_batches
from soundtrail.provenance.ledger import Ledger
from tests.audio_fixtures import melody, write, write_manifest
from tests.conftest import run_cli

pytestmark = pytest.mark.slow


@pytest.fixture
def corpus(tmp_path: Path) -> tuple[Path, Path]:
    folder = tmp_path / "corpus"
    rows = []
    for index in range(5):
        write(folder / f"track{index}.flac", melody(60 + index))
        rows.append({"path": f"track{index}.flac", "license": "CC-BY-4.0", "rights_holder": "Label",
                     "attribution": f"Artist {index}", "tags": ["demo"], "description": f"demo track {index}"})
    write(folder / "track9_copy.ogg", melody(60) * 0.6, format="OGG", subtype="VORBIS")
    rows.append({"path": "track9_copy.ogg", "license": "CC-BY-4.0", "rights_holder": "Label"})  # same claims
    write(folder / "nc.flac", melody(70))
    rows.append({"path": "nc.flac", "license": "CC-BY-NC-4.0"})
    (folder / "broken.wav").write_bytes(b"RIFF....WAVEjunk")
    rows.append({"path": "broken.wav", "license": "CC0-1.0"})
    return folder, write_manifest(folder, rows)


def test_ingest_command_contract_and_rerun(tmp_path: Path, corpus, prefect_server, capsys) -> None:
    folder, manifest = corpus
    workspace = tmp_path / "ws"
    (workspace).mkdir()
    (workspace / "soundtrail.toml").write_text("[ingest]\nbatch_size = 3\nworkers = 2\n")
    code, out, err = run_cli(["ingest", folder, "--manifest", manifest, "--workspace", workspace, "--json"], capsys)
    assert code == 0, err
    summary = json.loads(out)
    assert set(summary) == {"accepted", "quarantined", "duplicate", "blocked", "disputed", "items"}
    assert (summary["accepted"], summary["duplicate"], summary["quarantined"], summary["blocked"],
            summary["disputed"]) == (5, 1, 2, 0, 0)
    for item in summary["items"]:
        assert set(item) == {"path", "status", "reason", "asset_id"}
    ledger = Ledger(f"sqlite:///{workspace / 'ledger.db'}")
    assets = ledger.rows("assets", status="accepted")
    assert {row["attribution"] for row in assets} == {f"Artist {i}" for i in range(5)}
    flow_runs = {row["flow_run_id"] for row in assets}
    assert len(flow_runs) == 1 and None not in flow_runs, "every asset names the Prefect flow run that ingested it"
    head = ledger.head()

    code, out, _ = run_cli(["ingest", folder, "--manifest", manifest, "--workspace", workspace, "--json"], capsys)
    assert code == 0 and json.loads(out)["items"] == summary["items"]
    assert ledger.head() == head, "re-ingesting the same paths changes nothing in the ledger"

    code, out, _ = run_cli(["assets", "list", "--status", "duplicate", "--workspace", workspace, "--json"], capsys)
    assert [row["path"] for row in json.loads(out)["assets"]] == [str(folder / "track9_copy.ogg")]

    code, out, _ = run_cli(["ledger", "verify", "--workspace", workspace, "--json"], capsys)
    assert code == 0 and json.loads(out)["ok"]
    with sqlite3.connect(workspace / "ledger.db") as connection:
        connection.execute("UPDATE assets SET license = 'CC0-1.0' WHERE status = 'quarantined'")
    code, _, err = run_cli(["ledger", "verify", "--workspace", workspace], capsys)
    assert code == 1 and "column 'license'" in err and "Traceback" not in err


def test_bad_config_and_usage_errors(tmp_path: Path, capsys) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (workspace / "soundtrail.toml").write_text('[licenses]\nallow = ["CC0-1.0"]\ncolour = "red"\n')
    code, _, err = run_cli(["assets", "list", "--workspace", workspace], capsys)
    assert code == 1 and "licenses.colour: unknown key" in err
    (workspace / "soundtrail.toml").write_text('[licenses]\nallow = ["CC-ZERO"]\n')
    code, _, err = run_cli(["assets", "list", "--workspace", workspace], capsys)
    assert code == 1 and "CC-ZERO" in err
    code, _, err = run_cli(["assets", "list", "--status", "nonsense", "--workspace", workspace], capsys)
    assert code == 2
    code, _, err = run_cli(["ingest", "--workspace", workspace], capsys)
    assert code == 2


@pytest.mark.parametrize(("files", "batch_size", "cpus", "sizes"), [
    (28, 16, 2, [7, 7, 7, 7]),  # a small ingest still gives every CPU two batches
    (29, 16, 2, [8, 7, 7, 7]),  # sizes within one of each other, not 8, 8, 8, 5
    (100, 16, 2, [15, 15] + [14] * 5),  # a large one keeps within the configured batch size
    (3, 16, 8, [1, 1, 1]),
    (0, 16, 2, []),
])
def test_batches_spread_a_small_ingest_over_every_cpu(files: int, batch_size: int, cpus: int,
                                                      sizes: list[int]) -> None:
    inputs = [f"file{index}" for index in range(files)]
    batches = split_batches(inputs, batch_size, cpus)
    assert [len(batch) for batch in batches] == sizes
    assert [name for batch in batches for name in batch] == inputs
