"""The command line's error contract: one line on stderr and the documented exit code (1 error, 2 usage),
prerequisites checked before Ray or Prefect start, nothing recorded for an input that is not there, a
mistyped --workspace never silently created, and a failed flow reported without Prefect's traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest

from soundtrail import __version__
from soundtrail.provenance.ledger import Ledger
from tests.audio_fixtures import melody, write
from tests.conftest import run_cli

REPO = Path(__file__).resolve().parents[2]


def one_line(err: str) -> str:
    """The stderr of a failed command: exactly one line, starting with ``error:``, no traceback."""
    assert err.count("\n") == 1 and err.startswith("error: "), err
    return err


def empty_workspace(path: Path) -> Path:
    """A workspace that holds nothing yet (its ledger exists)."""
    path.mkdir(parents=True)
    Ledger(f"sqlite:///{path / 'ledger.db'}").close()
    return path


def test_version(capsys) -> None:
    code, out, _ = run_cli(["--version"], capsys)
    assert code == 0 and out == f"soundtrail {__version__}\n"


@pytest.mark.parametrize("command", [
    ["assets", "list"], ["ledger", "verify"], ["audit", "report"], ["takedown", "a1", "--reason", "x"],
    ["codec", "train"], ["tokenize"], ["train", "ar"], ["generate", "--prompt", "x", "--out", "x.wav"],
])
def test_commands_that_read_a_workspace_refuse_a_folder_that_is_not_one(command: list[str], tmp_path: Path,
                                                                       capsys) -> None:
    mistyped = tmp_path / "wrokspace"
    code, _, err = run_cli([*command, "--workspace", mistyped], capsys)
    assert code == 2 and "--workspace" in one_line(err) and "does not exist" in err
    assert not mistyped.exists(), "a mistyped workspace is not created"
    (tmp_path / "stray").mkdir()
    code, _, err = run_cli([*command, "--workspace", tmp_path / "stray"], capsys)
    assert code == 2 and "not a soundtrail workspace" in one_line(err)
    assert list((tmp_path / "stray").iterdir()) == [], "nothing is written into a folder that is not a workspace"


def test_commands_that_create_a_workspace_may_start_one(tmp_path: Path, capsys) -> None:
    reference = write(tmp_path / "protected.flac", melody(7))
    fresh = tmp_path / "new"
    code, _, err = run_cli(["blocklist", "add", reference, "--reason", "label catalogue", "--workspace", fresh],
                           capsys)
    assert code == 0, err
    code, out, err = run_cli(["assets", "list", "--json", "--workspace", fresh], capsys)
    assert code == 0 and out == '{"assets": []}\n', err


def test_a_missing_config_file_is_a_usage_error(tmp_path: Path, capsys) -> None:
    code, _, err = run_cli(["run", "--config", tmp_path / "missing.toml", "--workspace", tmp_path / "ws"], capsys)
    assert code == 2 and "missing.toml" in one_line(err) and "does not exist" in err
    assert not (tmp_path / "ws").exists()


def test_ingest_of_a_path_that_is_not_there_records_nothing(tmp_path: Path, capsys) -> None:
    workspace = empty_workspace(tmp_path / "ws")
    ledger = Ledger(f"sqlite:///{workspace / 'ledger.db'}")
    head = ledger.head()
    present = write(tmp_path / "present.flac", melody(3))
    for args in (["ingest", tmp_path / "absent.flac"], ["ingest", present, tmp_path / "absent"]):
        code, _, err = run_cli([*args, "--workspace", workspace], capsys)
        assert code == 2 and "absent" in one_line(err) and "does not exist" in err
    assert ledger.head() == head and ledger.rows("assets") == []
    ledger.close()


def test_usage_errors_are_one_line(tmp_path: Path, capsys) -> None:
    code, _, err = run_cli(["assets", "list", "--status", "nonsense", "--workspace", empty_workspace(tmp_path / "w")],
                           capsys)
    assert code == 2 and "--status" in one_line(err)
    code, _, err = run_cli(["no-such-command"], capsys)
    assert code == 2 and "no-such-command" in one_line(err)


@pytest.mark.parametrize(("command", "message"), [
    (["codec", "train"], "no accepted assets to train a codec on: run `soundtrail ingest` first"),
    (["tokenize"], "no codec yet: run `soundtrail codec train`"),
    (["train", "ar"], "no codec yet: run `soundtrail codec train`"),
    (["generate", "--prompt", "x", "--out", "x.wav", "--model", "nope"], "no model 'nope' in the ledger"),
    (["run"], "pipeline input not found"),
])
def test_missing_prerequisites_are_reported_before_prefect_or_ray_start(command: list[str], message: str,
                                                                        tmp_path: Path, capsys) -> None:
    import ray

    started = AssertionError("Prefect or Ray started before the prerequisites were checked")
    workspace = empty_workspace(tmp_path / "ws")
    with mock.patch("soundtrail.flows.runtime.prefect_api", side_effect=started), \
            mock.patch.object(ray, "init", side_effect=started):
        code, _, err = run_cli([*command, "--workspace", workspace], capsys)
    assert code == 1 and message in one_line(err)


@pytest.mark.parametrize(("storage_uri", "message"), [
    ("nowhere://bucket/x", "storage_uri 'nowhere://bucket/x': Unrecognized filesystem type in URI"),
    ("s3://KEYID:SECRET@bucket/x", "storage_uri must not carry a password"),
    ("azurite", "its bucket or container 'missing"),
])
def test_a_storage_uri_that_cannot_be_used_is_one_line_before_ray_starts(
        storage_uri: str, message: str, tmp_path: Path, capsys, monkeypatch, request) -> None:
    """A wrong scheme, a secret in the URI, a container nobody made: each named before Prefect or Ray start."""
    import ray

    if storage_uri == "azurite":
        store = request.getfixturevalue("object_store")
        storage_uri = store.uri().replace("/c", "/missing", 1)
    monkeypatch.setenv("SOUNDTRAIL_STORAGE_URI", storage_uri)
    started = AssertionError("Prefect or Ray started before the storage was checked")
    workspace = empty_workspace(tmp_path / "ws")
    with mock.patch("soundtrail.flows.runtime.prefect_api", side_effect=started), \
            mock.patch.object(ray, "init", side_effect=started):
        code, _, err = run_cli(["tokenize", "--workspace", workspace], capsys)
    assert code == 1 and message in one_line(err)
    assert "SECRET" not in err


@pytest.mark.slow
def test_a_failing_flow_is_one_line_without_prefects_log_or_traceback(tmp_path: Path, prefect_server) -> None:
    """The ingest flow fails in its ledger task (the ledger file is not a database), after Ray ran its batches."""
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (workspace / "ledger.db").write_bytes(b"this is not a database" * 100)
    track = write(tmp_path / "track.flac", melody(11))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    failed = subprocess.run([sys.executable, "-c", "from soundtrail.cli import run; run()", "ingest", str(track),
                             "--workspace", str(workspace)], env=env, capture_output=True, text=True, timeout=600)
    assert failed.returncode == 1
    assert "not a database" in one_line(failed.stderr) and "Traceback" not in failed.stderr
