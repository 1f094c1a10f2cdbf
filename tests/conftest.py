"""Shared fixtures: ledger URLs for both backends (a real PostgreSQL), fast defaults for torch on 2 cores."""

from __future__ import annotations

import functools
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from soundtrail.data.location import AZURE_ACCOUNT_KEY
from tests.object_store import KEY, ObjectStore, running_azurite

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

REPO = Path(__file__).resolve().parents[1]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """`make test` installs every dependency the suite uses: a skipped test is a failure, not a pass."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped, but nothing may be missing under `make test`: {report.longrepr}"


def pytest_configure(config: pytest.Config) -> None:
    """Tiny test models run fastest on one thread, and do not stall when the two cores are shared."""
    import torch

    torch.set_num_threads(1)


@functools.cache
def postgres_url() -> str:
    """The test server: SOUNDTRAIL_TEST_POSTGRES_URL (what `make test` passes), else Debian's PostgreSQL started
    by scripts/postgres.sh, as `make test` starts it."""
    if url := os.environ.get("SOUNDTRAIL_TEST_POSTGRES_URL"):
        return url
    started = subprocess.run(["bash", str(REPO / "scripts" / "postgres.sh")], capture_output=True, text=True)
    if started.returncode != 0:
        raise RuntimeError(f"scripts/postgres.sh could not start PostgreSQL: {started.stderr.strip()[-500:]}")
    return started.stdout.strip().splitlines()[-1]


def _postgres_database() -> Iterator[str]:
    """A fresh database on the test server, dropped afterwards."""
    from sqlalchemy import create_engine, text

    name = f"st_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres_url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    base, _, _ = postgres_url().rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def ledger_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    """The ledger tests run against both backends; PostgreSQL is a real server (:func:`postgres_url`)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ledger.db'}"
        return
    yield from _postgres_database()


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[str]:
    """One Prefect test server for the session; Ray workers reach it through PREFECT_API_URL."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        url = PREFECT_API_URL.value()
        os.environ["PREFECT_API_URL"] = url
        try:
            yield url
        finally:
            os.environ.pop("PREFECT_API_URL", None)


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run the CLI in-process; returns (exit code, stdout, stderr)."""
    from soundtrail.cli import main

    code = main([str(arg) for arg in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ObjectStore]:
    """One Azurite server for the session (tests/object_store.py)."""
    with running_azurite(tmp_path_factory.mktemp("azurite")) as store:
        yield store


@pytest.fixture
def object_store(azurite: ObjectStore, monkeypatch: pytest.MonkeyPatch) -> ObjectStore:
    """The session's Azurite, its account key where soundtrail reads one (``AZURE_STORAGE_ACCOUNT_KEY``)."""
    monkeypatch.setenv(AZURE_ACCOUNT_KEY, KEY)
    return azurite
