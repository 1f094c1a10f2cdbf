"""``soundtrail review list`` and ``soundtrail review resolve``: disputed claims and a person's decision on them."""

from __future__ import annotations

import getpass
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from soundtrail.cli import app
from soundtrail.cli.common import CommandError, JsonOption, WorkspaceOption, console, emit_json, open_workspace
from soundtrail.provenance.ledger import Ledger

review_app = typer.Typer(help="Copies of one recording whose licence or rights-holder claims differ.",
                         no_args_is_help=True)
app.add_typer(review_app, name="review")


@review_app.command("list")
def review_list(workspace: WorkspaceOption = None, as_json: JsonOption = False) -> None:
    """Open disputes: each recording's original and the copies whose claims differ from it."""
    from soundtrail.provenance.review import describe_claims, open_disputes

    with Ledger(open_workspace(workspace).ledger_url) as ledger:
        disputes = open_disputes(ledger)
    if as_json:
        emit_json({"disputes": [dispute.as_dict() for dispute in disputes]})
        return
    if not disputes:
        console.print("no open dispute")
        return
    for dispute in disputes:
        table = Table("asset", "status", "claims", "path", title=f"recording {dispute.original}",
                      title_justify="left")
        for asset in dispute.assets:
            role = " (original)" if asset["id"] == dispute.original else ""
            table.add_row(asset["id"] + role, asset["status"], escape(describe_claims(asset)),
                          escape(asset["path"] or ""))
        console.print(table)
    console.print("decide with `soundtrail review resolve ASSET --accept|--reject --reason TEXT`")


@review_app.command("resolve")
def review_resolve(
    asset_id: Annotated[str, typer.Argument(metavar="ASSET", help="a disputed asset")],
    reason: Annotated[str, typer.Option("--reason", help="why: the evidence the decision rests on")],
    accept: Annotated[bool, typer.Option("--accept", help="uphold this asset's claims for the recording")] = False,
    reject: Annotated[bool, typer.Option("--reject", help="refuse this asset's claim")] = False,
    by: Annotated[str | None, typer.Option("--by", help="who decides (default: the login name)")] = None,
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Record a person's decision on a disputed asset (an event naming who and why) and apply it."""
    from soundtrail.provenance.review import ReviewError, resolve

    if accept == reject:
        raise typer.BadParameter("give exactly one of --accept and --reject", param_hint="--accept/--reject")
    ws = open_workspace(workspace)
    with Ledger(ws.ledger_url) as ledger:
        try:
            result = resolve(ledger, asset_id, "accept" if accept else "reject", reason, by or _login_name(),
                             ws.settings.licenses.allow)
        except ReviewError as exc:
            raise CommandError(str(exc)) from None
    if as_json:
        emit_json(result.as_dict())
        return
    console.print(escape(f"review {result.review_id} by {result.by}: {result.decision} {asset_id}"))
    for changed, status in result.affected.items():
        console.print(escape(f"  asset {changed}: {status}"))


def _login_name() -> str:
    """Who runs the command, as the environment says (LOGNAME, USER, ...), for the record of a decision."""
    try:
        return getpass.getuser()
    except OSError:
        raise CommandError("cannot tell who is deciding from the environment: pass --by NAME") from None
