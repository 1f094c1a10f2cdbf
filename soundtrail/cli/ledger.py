"""``soundtrail ledger verify`` and ``soundtrail assets list``."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from soundtrail.cli.common import CommandError, JsonOption, WorkspaceOption, console, emit_json, open_workspace
from soundtrail.provenance.ledger import Ledger

ledger_app = typer.Typer(help="Check the ledger's hash chain and projections.", no_args_is_help=True)
assets_app = typer.Typer(help="The corpus as the ledger sees it.", no_args_is_help=True)

ASSET_STATUSES = ("accepted", "quarantined", "duplicate", "blocked", "disputed", "rejected", "revoked")


@ledger_app.command("verify")
def verify(workspace: WorkspaceOption = None, as_json: JsonOption = False) -> None:
    """Recompute the hash chain and check every audited row against it; exit 1 naming the first bad record."""
    ws = open_workspace(workspace)
    with Ledger(ws.ledger_url) as ledger:
        report = ledger.verify()
    if as_json:
        emit_json(report.as_dict())
    elif report.ok:
        console.print(f"[green]ledger ok[/green]: {report.events} events, {report.rows} rows agree with the chain")
    if not report.ok:
        raise CommandError(f"ledger verification failed: {report.problem}")


@assets_app.command("list")
def list_assets(
    workspace: WorkspaceOption = None,
    status: Annotated[str | None, typer.Option(help=f"one of {', '.join(ASSET_STATUSES)}")] = None,
    as_json: JsonOption = False,
) -> None:
    """List ingested assets with status, licence and reason."""
    if status is not None and status not in ASSET_STATUSES:
        raise typer.BadParameter(f"status must be one of {', '.join(ASSET_STATUSES)}", param_hint="--status")
    ws = open_workspace(workspace)
    filters = {"status": status} if status else {}
    with Ledger(ws.ledger_url) as ledger:
        rows = ledger.rows("assets", **filters)
    keys = ("id", "path", "status", "reason", "license", "rights_holder", "duration_s", "duplicate_of")
    if as_json:
        emit_json({"assets": [{key: row[key] for key in keys} for row in rows]})
        return
    table = Table("asset", "status", "licence", "seconds", "path", "reason")
    for row in rows:
        seconds = f"{row['duration_s']:.1f}" if row["duration_s"] else ""
        table.add_row(row["id"], row["status"], row["license"] or "", seconds, escape(row["path"] or ""),
                      escape(row["reason"] or ""))
    console.print(table)
