"""``soundtrail audit model|asset|output|report`` and ``soundtrail takedown``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from soundtrail.cli import app
from soundtrail.cli.common import CommandError, JsonOption, WorkspaceOption, console, emit_json, open_workspace
from soundtrail.provenance.ledger import Ledger
from soundtrail.provenance.lineage import LineageError

audit_app = typer.Typer(help="Lineage both ways and licence reports.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")

ReportFormat = Annotated[str, typer.Option("--format", "-f", help="html, md or json")]


@contextmanager
def _ledger(workspace: Path | None) -> Iterator[Ledger]:
    """The workspace ledger; a lineage lookup that fails becomes a one-line error (exit 1)."""
    with Ledger(open_workspace(workspace).ledger_url) as ledger:
        try:
            yield ledger
        except LineageError as exc:
            raise CommandError(str(exc)) from None


def _table(title: str, rows: list[dict[str, Any]], columns: dict[str, Callable[[dict[str, Any]], Any]]) -> None:
    if not rows:
        console.print(f"{title}: none")
        return
    table = Table(*columns, title=title, title_justify="left")
    for row in rows:
        table.add_row(*("" if (value := get(row)) is None else escape(str(value)) for get in columns.values()))
    console.print(table)


def _seconds(row: dict[str, Any]) -> str:
    return f"{row['duration_s']:.1f}" if row.get("duration_s") is not None else ""


def _print_outputs(outputs: list[dict[str, Any]]) -> None:
    _table("outputs", outputs, {"output": lambda r: r["id"], "status": lambda r: r["status"],
                                "path": lambda r: r["path"]})


@audit_app.command("model")
def audit_model(
    model_id: Annotated[str, typer.Argument(metavar="ID", help="model id (see the ledger's models)")],
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Which licensed sources a model came from (shards, codec, assets), and what it has generated."""
    from soundtrail.provenance.audit import model_audit

    with _ledger(workspace) as ledger:
        result = model_audit(ledger, model_id)
    if as_json:
        emit_json(result)
        return
    model, summary = result["model"], result["license_summary"]
    console.print(escape(f"model {model['id']} ({model['kind']}), codec {model['codec_id']}, "
                         f"{len(result['shards'])} shards, {summary['assets']} assets, {summary['duration_s']:.1f} s; "
                         f"training digest {result['training_digest']}"))
    _table("shards", result["shards"], {"shard": lambda r: r["id"][:16], "status": lambda r: r["status"],
                                        "rows": lambda r: r["rows"], "set": lambda r: r["shard_set"]})
    _table("assets", result["assets"], {
        "asset": lambda r: r["id"], "status": lambda r: r["status"], "licence": lambda r: r["license"],
        "rights holder": lambda r: r["rights_holder"], "seconds": _seconds, "via": lambda r: ", ".join(r["via"]),
    })
    _table("licences", [{"id": key, **value} for key, value in summary["licenses"].items()], {
        "licence": lambda r: r["id"], "assets": lambda r: r["assets"], "seconds": lambda r: f"{r['seconds']:.1f}"})
    _print_outputs(result["outputs"])


@audit_app.command("asset")
def audit_asset(
    asset_id: Annotated[str, typer.Argument(metavar="ID", help="asset id (see `soundtrail assets list`)")],
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Where an asset came from and under which licence, and every shard, codec, model and output derived from it."""
    from soundtrail.provenance.audit import asset_audit

    with _ledger(workspace) as ledger:
        result = asset_audit(ledger, asset_id)
    if as_json:
        emit_json(result)
        return
    asset, source, licence = result["asset"], result["source"] or {}, result["licence"] or {}
    reason = f" ({asset['reason']})" if asset["reason"] else ""
    console.print(escape(f"asset {asset['id']}: {asset['status']}{reason}\n  path {asset['path']}\n"
                         f"  licence {licence.get('id')} {licence.get('name') or ''}\n"
                         f"  rights holder {asset['rights_holder']}, attribution {asset['attribution']}, "
                         f"source {source.get('source')}"))
    _print_descendants(result)


def _print_descendants(result: dict[str, Any]) -> None:
    _table("shards", result["shards"], {"shard": lambda r: r["id"][:16], "status": lambda r: r["status"],
                                        "set": lambda r: r["shard_set"], "path": lambda r: r["path"]})
    _table("codecs", result["codecs"], {"codec": lambda r: r["id"], "kind": lambda r: r["kind"]})
    _table("models", result["models"], {"model": lambda r: r["id"], "kind": lambda r: r["kind"],
                                        "via": lambda r: ", ".join(r["via"])})
    _print_outputs(result["outputs"])


@audit_app.command("output")
def audit_output(
    output_id: Annotated[str, typer.Argument(metavar="ID", help="output id")],
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Which model made an output, and through it which licensed sources."""
    from soundtrail.provenance.audit import output_audit

    with _ledger(workspace) as ledger:
        result = output_audit(ledger, output_id)
    if as_json:
        emit_json(result)
        return
    output, summary = result["output"], result["license_summary"]
    console.print(escape(f"output {output['id']}: {output['status']} (screening {output['verdict']}), prompt "
                         f"{output['prompt']!r}, model {output['model_id']}"))
    _table("assets", result["assets"], {
        "asset": lambda r: r["id"], "licence": lambda r: r["license"], "rights holder": lambda r: r["rights_holder"],
        "seconds": _seconds})
    console.print("licences: " + ", ".join(f"{key} ({value['assets']})" for key, value in summary["licenses"].items()))


@audit_app.command("report")
def audit_report(
    fmt: ReportFormat = "html",
    out: Annotated[Path | None, typer.Option("--out", "-o", help="file to write (default workspace/reports/)")] = None,
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Write the audit report: licences, credits, exclusions, models, releases, training-content summary."""
    from soundtrail.provenance.audit import REPORT_FORMATS, write_report

    if fmt not in REPORT_FORMATS:
        raise typer.BadParameter(f"must be one of {', '.join(REPORT_FORMATS)}", param_hint="--format")
    path = write_report(open_workspace(workspace), fmt, out)
    if as_json:
        emit_json({"path": str(path), "format": fmt})
    else:
        console.print(f"audit report: {escape(str(path))}", soft_wrap=True)


@app.command("takedown")
def takedown(
    asset_id: Annotated[str, typer.Argument(metavar="ASSET_ID", help="the asset to revoke")],
    reason: Annotated[str, typer.Option("--reason", help="the request: who asked, why, a reference")],
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Revoke a source; list every shard, codec, model and output derived from it. Later shards exclude it."""
    from soundtrail.provenance.takedown import TakedownError, revoke

    with Ledger(open_workspace(workspace).ledger_url) as ledger:
        try:
            result = revoke(ledger, asset_id, reason)
        except TakedownError as exc:
            raise CommandError(str(exc)) from None
    if as_json:
        emit_json(result.as_dict())
        return
    state = "was already revoked" if result.already_revoked else "revoked"
    console.print(escape(f"asset {asset_id} {state} (takedown {result.takedown_id}, {result.created_at}): "
                         f"{result.reason}"))
    _print_descendants(result.affected)
    for other in result.affected["same_recording"]:
        console.print(f"[yellow]asset {escape(other)} is the same recording and is not revoked[/yellow]: "
                      f"run `soundtrail takedown {escape(other)}` too if the request covers it")
    if result.affected["shards"]:
        console.print("the next `soundtrail tokenize` rewrites these shards without the asset")
    if result.affected["codecs"]:
        console.print("[yellow]the codecs listed were trained on the asset[/yellow]: shards they encode still carry "
                      "it; train a new codec (`soundtrail codec train`) and tokenize again to remove it entirely")
    if result.affected["models"]:
        console.print("the models listed (and their outputs) were trained on the asset: retrain or withdraw them")
