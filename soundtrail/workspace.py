"""A workspace: one folder holding a pipeline's settings, ledger, shards, checkpoints, outputs and reports.

Settings (what the workspace's ``soundtrail.toml`` says) are :mod:`soundtrail.config`; this module knows where
the workspace is and where every kind of file in it lives. Stage code takes a :class:`Workspace`; the pure
algorithms beside it never do.
"""

from __future__ import annotations

import os
from pathlib import Path

from soundtrail.config import CONFIG_NAME, DEFAULT_WORKSPACE, Settings, apply_environment, load_settings


class Workspace:
    """A workspace directory and its settings; knows where every kind of file lives."""

    def __init__(self, root: str | Path, settings: Settings | None = None) -> None:
        self.root = Path(root).resolve()
        if settings is None:  # SOUNDTRAIL_CONFIG (set by `soundtrail run --config`) reaches every Ray worker too
            settings = load_settings(Path(os.environ.get("SOUNDTRAIL_CONFIG") or self.root / CONFIG_NAME))
        self.settings = apply_environment(settings)
        self.root.mkdir(parents=True, exist_ok=True)

    @classmethod
    def open(cls, root: str | Path | None = None, config: str | Path | None = None) -> Workspace:
        """Resolve ``--workspace``, then ``SOUNDTRAIL_WORKSPACE``, then ``./workspace``."""
        chosen = Path(root or os.environ.get("SOUNDTRAIL_WORKSPACE") or DEFAULT_WORKSPACE)
        if config:
            os.environ["SOUNDTRAIL_CONFIG"] = str(Path(config).resolve())
        return cls(chosen)

    @property
    def ledger_url(self) -> str:
        """The ledger URL with a relative SQLite path anchored in the workspace."""
        url = self.settings.ledger_url
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/") and url != "sqlite:///:memory:":
            return prefix + str(self.root / url[len(prefix):])
        return url

    def path(self, name: str) -> Path:
        """A workspace sub-folder (``shards``, ``checkpoints``, ``outputs``, ...), created on first use."""
        folder = self.root / name
        folder.mkdir(parents=True, exist_ok=True)
        return folder
