"""A workspace: one folder holding a pipeline's settings, ledger, shards, checkpoints, outputs and reports.

Settings (what the workspace's ``soundtrail.toml`` says) are :mod:`soundtrail.config`; this module knows where
the workspace is and where every kind of file in it lives. Stage code takes a :class:`Workspace`; the pure
algorithms beside it never do.

A folder *is* a workspace once it holds ``soundtrail.toml`` or its SQLite ledger (a workspace whose ledger
is PostgreSQL keeps it elsewhere, so any existing folder serves). Commands that only work on what a workspace
already holds open it with ``create=False``, so a mistyped ``--workspace`` is refused instead of becoming an
empty workspace that then reports nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

from soundtrail.config import CONFIG_NAME, DEFAULT_WORKSPACE, ConfigError, Settings, apply_environment, load_settings

SQLITE_PREFIX = "sqlite:///"


class NotAWorkspace(ValueError):
    """The folder named as a workspace does not exist or holds no workspace, and was not to be created."""


class Workspace:
    """A workspace directory and its settings; knows where every kind of file lives."""

    def __init__(self, root: str | Path, settings: Settings | None = None) -> None:
        self.root = Path(root).resolve()
        if settings is None:  # SOUNDTRAIL_CONFIG (set by `soundtrail run --config`) reaches every Ray worker too
            chosen = os.environ.get("SOUNDTRAIL_CONFIG")
            if chosen and not Path(chosen).is_file():
                raise ConfigError(f"config file not found: {chosen}")
            settings = load_settings(Path(chosen) if chosen else self.root / CONFIG_NAME)
        self.settings = apply_environment(settings)
        self.root.mkdir(parents=True, exist_ok=True)

    @classmethod
    def open(cls, root: str | Path | None = None, config: str | Path | None = None, *,
             create: bool = True) -> Workspace:
        """Resolve ``--workspace``, then ``SOUNDTRAIL_WORKSPACE``, then ``./workspace``.

        With ``create=False`` a folder that is not already a workspace raises :class:`NotAWorkspace`
        (and is not created); a ``config`` file that does not exist raises :class:`ConfigError`.
        """
        chosen = Path(root or os.environ.get("SOUNDTRAIL_WORKSPACE") or DEFAULT_WORKSPACE).resolve()
        if config:
            if not Path(config).is_file():
                raise ConfigError(f"config file not found: {config}")
            os.environ["SOUNDTRAIL_CONFIG"] = str(Path(config).resolve())
        if not create and not chosen.is_dir():
            raise NotAWorkspace(f"{chosen} does not exist")
        workspace = cls(chosen)
        if not create and not workspace.initialized:
            raise NotAWorkspace(f"{chosen} is not a soundtrail workspace (no {CONFIG_NAME} or ledger)")
        return workspace

    @property
    def initialized(self) -> bool:
        """Whether the folder already is a workspace: its settings file, or its SQLite ledger, exists."""
        if (self.root / CONFIG_NAME).is_file() or os.environ.get("SOUNDTRAIL_CONFIG"):
            return True
        url = self.ledger_url
        return not url.startswith(SQLITE_PREFIX) or Path(url.removeprefix(SQLITE_PREFIX)).is_file()

    @property
    def ledger_url(self) -> str:
        """The ledger URL with a relative SQLite path anchored in the workspace."""
        url = self.settings.ledger_url
        if url.startswith(SQLITE_PREFIX) and not url.startswith(SQLITE_PREFIX + "/") and url != "sqlite:///:memory:":
            return SQLITE_PREFIX + str(self.root / url[len(SQLITE_PREFIX):])
        return url

    def path(self, name: str) -> Path:
        """A workspace sub-folder (``shards``, ``checkpoints``, ``outputs``, ...), created on first use."""
        folder = self.root / name
        folder.mkdir(parents=True, exist_ok=True)
        return folder
