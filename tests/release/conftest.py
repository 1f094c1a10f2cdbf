"""The release tests' workspace: built once per session, copied for each test that changes it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from soundtrail.config import Settings
from soundtrail.workspace import Workspace
from tests.release.workspaces import build_release_workspace


@pytest.fixture(scope="session")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three accepted assets, their shards, a model row and the screening index (see ``workspaces.py``)."""
    return build_release_workspace(tmp_path_factory.mktemp("release"))


@pytest.fixture
def workspace(base: Path, tmp_path: Path) -> Workspace:
    """A private copy of the base workspace (corpus files are shared, read-only)."""
    return Workspace(shutil.copytree(base, tmp_path / "ws"), Settings())
