"""What every command shares: the workspace option, JSON output, errors with exit codes.

The workspace rule: commands that record a workspace's first events (``ingest``, ``blocklist add``, ``run``,
``demo``) create the folder when it is new; every other command works on what a workspace already holds and
refuses a folder that is not one (usage error, exit 2), so a mistyped ``--workspace`` is never silently created.
"""

from __future__ import annotations

import getpass
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from soundtrail.workspace import NotAWorkspace, Workspace

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_BLOCKED = 3

WorkspaceOption = Annotated[
    Path | None,
    typer.Option("--workspace", "-w", envvar="SOUNDTRAIL_WORKSPACE", help="workspace folder (default ./workspace)"),
]
JsonOption = Annotated[bool, typer.Option("--json", help="print exactly one JSON object on stdout")]

# Progress and tables go to stderr so that stdout stays clean for --json and for pipes.
console = Console(stderr=True)


class CommandError(Exception):
    """A failure the user can act on: printed as one line on stderr, exit code 1 (or ``code``)."""

    def __init__(self, message: str, code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.code = code


ByOption = Annotated[str | None, typer.Option("--by", help="who decides, on record (default: the login name)")]


def operator_name(by: str | None) -> str:
    """``--by`` when given, else the login name: the person an override or a decision is recorded under."""
    if by:
        return by
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        raise CommandError("cannot tell who is deciding from the environment: pass --by NAME") from None


def open_workspace(path: Path | None, *, create: bool = False) -> Workspace:
    """The workspace of ``--workspace``; ``create`` only for the commands that may start a new one."""
    try:
        return Workspace.open(path, create=create)
    except NotAWorkspace as exc:
        raise typer.BadParameter(f"{exc}; `soundtrail ingest` or `soundtrail run` start a new one",
                                 param_hint="--workspace") from None


def emit_json(document: Any) -> None:
    """Print one JSON object on stdout (the --json contract)."""
    sys.stdout.write(json.dumps(document, indent=None, sort_keys=False, default=str) + "\n")
    sys.stdout.flush()
