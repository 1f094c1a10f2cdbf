"""``outputs/`` against the ledger: the folder users publish holds exactly what the release gate released.

Only the gate writes into ``outputs/`` (a signed file renamed in after the ledger records its release), so
every file there is an ``outputs`` row with status ``released``, named ``<output id>.wav``, whose bytes hash
to the row's ``sha256``. :func:`check_outputs` reports every way that can stop being true: a file the ledger did
not release (a mark embedded by hand, an old staging folder, a copy dropped in), a released file that is gone,
and one whose bytes changed. ``ledger verify`` and the audit report both run it; :func:`refuse_outputs_path`
keeps the other commands that write audio (``watermark embed``, ``generate --out``) out of the folder.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from soundtrail.atomic import sha256_file
from soundtrail.provenance.ledger import Ledger
from soundtrail.workspace import Workspace

OUTPUTS_DIR = "outputs"


class OutputsPathError(ValueError):
    """A command other than the release gate was asked to write into ``outputs/``."""


@dataclass(frozen=True)
class OutputsCheck:
    """``outputs/`` compared with the ledger; paths relative to the folder, output ids for released files."""

    released: int  # outputs the ledger calls released
    unexpected: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.unexpected or self.missing or self.changed)

    def problems(self) -> list[str]:
        """One line per problem, for a person."""
        return ([f"outputs/{path} was not released by the ledger" for path in self.unexpected]
                + [f"output {output_id} was released but its file is missing" for output_id in self.missing]
                + [f"output {output_id}'s file changed since its release" for output_id in self.changed])

    def state_of(self, output_id: str) -> str:
        """``ok``, ``missing`` or ``changed`` for a released output."""
        return "missing" if output_id in self.missing else "changed" if output_id in self.changed else "ok"

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, **asdict(self)}


def released_path(workspace: Workspace, row: dict[str, Any]) -> Path:
    """Where a released output's file lives: ``outputs/<its file name>`` (the ledger's path, wherever the
    workspace has moved since)."""
    return workspace.root / OUTPUTS_DIR / Path(row["path"]).name


def check_outputs(workspace: Workspace, ledger: Ledger) -> OutputsCheck:
    """Compare every entry under ``outputs/`` (hidden ones and sub-folders included) with the released rows."""
    released = {released_path(workspace, row): row for row in ledger.rows("outputs", status="released")
                if row.get("path")}
    folder = workspace.root / OUTPUTS_DIR
    unexpected: list[str] = []
    for directory, dirs, files in os.walk(folder):
        for name in sorted(files) + sorted(d for d in dirs if os.path.islink(os.path.join(directory, d))):
            path = Path(directory) / name
            if path not in released or path.is_symlink():
                unexpected.append(path.relative_to(folder).as_posix())
    missing, changed = [], []
    for path, row in sorted(released.items(), key=lambda item: item[1]["id"]):
        if not path.is_file() or path.is_symlink():
            missing.append(row["id"])
        elif sha256_file(path) != row.get("sha256"):
            changed.append(row["id"])
    return OutputsCheck(len(released), sorted(unexpected), missing, changed)


def refuse_outputs_path(workspace: Workspace, target: str | Path, command: str) -> None:
    """Raise :class:`OutputsPathError` if writing ``target`` would put a file into ``outputs/``.

    The directory entry's own location counts (its folder resolved, the name kept), so neither a relative path
    nor a symbolic link planted in ``outputs/`` gets a file written there.
    """
    target = Path(target).expanduser()
    where = target.absolute().parent.resolve() / target.name
    outputs = (workspace.root / OUTPUTS_DIR).resolve()
    if where == outputs or outputs in where.parents:
        raise OutputsPathError(f"{command} cannot write {target}: {outputs} holds only what the release gate "
                               "released (`soundtrail generate`); write it elsewhere")
