"""``soundtrail ledger verify|checkpoint|prove|verify-proof`` and ``soundtrail assets list``."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from soundtrail.atomic import atomic_write_text
from soundtrail.cli.common import CommandError, JsonOption, WorkspaceOption, console, emit_json, open_workspace
from soundtrail.provenance.checkpoints import (
    CheckpointVerdict,
    check_ledger,
    prove_entity,
    prove_extension,
    resolve_checkpoint,
    take_checkpoint,
)
from soundtrail.provenance.ledger import Ledger
from soundtrail.provenance.outputs import check_outputs
from soundtrail.provenance.proofs import ProofCheck, verify_proof
from soundtrail.provenance.timestamp import TimestampError, load_roots
from soundtrail.provenance.tree_head import CheckpointError, read_checkpoint

ledger_app = typer.Typer(help="Check the ledger's hash chain and projections; sign, check and prove against "
                              "checkpoints.", no_args_is_help=True)
assets_app = typer.Typer(help="The corpus as the ledger sees it.", no_args_is_help=True)

ASSET_STATUSES = ("accepted", "quarantined", "duplicate", "blocked", "disputed", "rejected", "revoked")

KeyIdOption = Annotated[str | None, typer.Option(
    "--key-id", help="the signer key id (sha256:...) an auditor kept: a checkpoint signed by another key fails")]


@ledger_app.command("verify")
def verify(
    workspace: WorkspaceOption = None,
    checkpoints: Annotated[list[Path] | None, typer.Option(
        "--checkpoint", help="a checkpoint the ledger must extend (repeatable; default: every one in the workspace)",
        exists=True, dir_okay=False)] = None,
    key_id: KeyIdOption = None,
    as_json: JsonOption = False,
) -> None:
    """Check the hash chain, every row against it, that the ledger extends each checkpoint, and that outputs/ holds
    exactly the released files; exit 1 naming why."""
    ws = open_workspace(workspace)
    try:
        result = check_ledger(ws, checkpoints, key_id)
    except (CheckpointError, TimestampError) as exc:
        raise CommandError(str(exc)) from exc
    with Ledger(ws.ledger_url) as ledger:
        outputs = check_outputs(ws, ledger)
    report = result.report
    if as_json:
        emit_json({**result.as_dict(), "ok": result.ok and outputs.ok, "outputs": outputs.as_dict()})
    else:
        if report.ok:
            console.print(f"[green]ledger ok[/green]: {report.events} events, {report.rows} rows agree with the chain")
        if outputs.ok:
            console.print(f"outputs/ holds exactly the {outputs.released} released files")
        for verdict in result.checkpoints:
            _print_verdict(verdict)
        if not result.checkpoints and report.ok:
            console.print("no checkpoint to check against: `soundtrail ledger checkpoint` signs one (keep a copy "
                          "outside the workspace)")
    if not result.ok:
        raise CommandError(f"ledger verification failed: {result.problem}")
    if not outputs.ok:
        problems = outputs.problems()
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise CommandError(f"outputs/ does not match the ledger: {problems[0]}{more}")


def _print_verdict(verdict: CheckpointVerdict) -> None:
    summary = verdict.check.checkpoint.summary()
    name = escape(summary["file"])
    if verdict.ok and verdict.comparison is not None:
        beyond = verdict.comparison.beyond
        later = f"; the {beyond} events after it are not covered by it" if beyond else ""
        console.print(f"[green]extends[/green] {name} ({summary['tree_size']} events, key {summary['key_id']}){later}")
    else:
        console.print(f"[red]does not extend[/red] {name}: {escape(verdict.problem or '')}")
    stamp = verdict.check.timestamp
    if stamp and not stamp["problem"]:
        trust = "trusted TSA" if stamp["trusted"] else "not checked against a trusted TSA root ([ledger] tsa_roots)"
        console.print(f"  timestamped {stamp['time']} by {escape(stamp['authority'])} ({trust})")


@ledger_app.command("checkpoint")
def checkpoint(workspace: WorkspaceOption = None, as_json: JsonOption = False) -> None:
    """Sign the ledger's Merkle tree head (events, root, time); keep a copy and the key id outside the workspace."""
    ws = open_workspace(workspace)
    try:
        taken = take_checkpoint(ws)
    except (CheckpointError, TimestampError) as exc:
        raise CommandError(str(exc)) from exc
    stamp = taken.checkpoint.timestamp
    summary: dict[str, Any] = {
        **taken.checkpoint.summary(), "path": str(taken.path),
        "public_key": base64.b64encode(taken.checkpoint.public_key).decode("ascii"),
        "timestamp": None if stamp is None else {"authority": stamp.authority, "time": stamp.time},
        "extends": None if taken.previous is None else taken.previous.checkpoint.source}
    if as_json:
        emit_json(summary)
        return
    console.print(f"checkpoint written: {escape(summary['path'])}")
    console.print(f"  {summary['tree_size']} events, root {summary['root_hash']}")
    console.print(f"  signed by key {summary['key_id']} (Ed25519 public key {summary['public_key']})")
    if summary["timestamp"]:
        console.print(f"  timestamped {summary['timestamp']['time']} by {escape(summary['timestamp']['authority'])}")
    if summary["extends"]:
        console.print(f"  extends {escape(summary['extends'])}")


@ledger_app.command("prove")
def prove(
    entity_id: Annotated[str | None, typer.Argument(
        metavar="ID", help="an asset, model, output, codec, shard or takedown id")] = None,
    workspace: WorkspaceOption = None,
    checkpoint_file: Annotated[Path | None, typer.Option(
        "--checkpoint", help="the checkpoint to prove against (default: the newest in the workspace)",
        exists=True, dir_okay=False)] = None,
    since: Annotated[Path | None, typer.Option(
        "--since", help="instead of ID: prove that the checkpoint extends this earlier one", exists=True,
        dir_okay=False)] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="write the proof here instead of stdout")] = None,
) -> None:
    """Print a proof (JSON) that ID's events are in a checkpoint, or (--since) that it extends an earlier one."""
    if (entity_id is None) == (since is None):
        raise typer.BadParameter("give an ID or --since EARLIER_CHECKPOINT (one of them)")
    ws = open_workspace(workspace)
    try:
        target = resolve_checkpoint(ws, checkpoint_file)
        if since is not None:
            document = prove_extension(ws, read_checkpoint(since), target)
        else:
            document = prove_entity(ws, entity_id or "", target)
    except (CheckpointError, TimestampError) as exc:
        raise CommandError(str(exc)) from exc
    text = json.dumps(document, indent=1) + "\n"
    if out is None:
        typer.echo(text, nl=False)
        return
    atomic_write_text(out, text)
    covered = f"{len(document['events'])} events of {entity_id}" if since is None else "the extension"
    console.print(f"proof of {covered} against {escape(target.source)} written to {escape(str(out))}")


@ledger_app.command("verify-proof")
def verify_proof_command(
    proof: Annotated[Path, typer.Argument(metavar="PROOF", help="a proof written by `soundtrail ledger prove`",
                                          exists=True, dir_okay=False)],
    checkpoint_file: Annotated[Path, typer.Option(
        "--checkpoint", help="the checkpoint the proof is for (for --since proofs: the earlier one)", exists=True,
        dir_okay=False)],
    key_id: KeyIdOption = None,
    tsa_roots: Annotated[Path | None, typer.Option(
        "--tsa-roots", help="PEM file of TSA roots to trust for the checkpoint's timestamp", exists=True,
        dir_okay=False)] = None,
    as_json: JsonOption = False,
) -> None:
    """Check a proof against a checkpoint file alone: no workspace, no ledger. Exit 1 naming what fails."""
    try:
        document = json.loads(proof.read_text(encoding="utf-8"))
        verdict = verify_proof(document, read_checkpoint(checkpoint_file), expected_key_id=key_id,
                               tsa_roots=load_roots(tsa_roots) if tsa_roots else None)
    except ValueError as exc:  # unreadable JSON, a malformed checkpoint, unreadable TSA roots
        raise CommandError(f"{proof}: {exc}" if isinstance(exc, json.JSONDecodeError) else str(exc)) from exc
    except TimestampError as exc:
        raise CommandError(str(exc)) from exc
    if as_json:
        emit_json(verdict.as_dict())
    elif verdict.ok:
        _print_proof(verdict)
    if not verdict.ok:
        raise CommandError(f"proof does not verify: {verdict.problems[0]}")


def _print_proof(verdict: ProofCheck) -> None:
    facts = verdict.facts
    checkpoint = facts["checkpoint"]
    signer = f"{escape(checkpoint['file'])} ({checkpoint['tree_size']} events, key {checkpoint['key_id']})"
    if verdict.kind == "consistency":
        later = facts["later_checkpoint"]
        console.print(f"[green]proof ok[/green]: the checkpoint of {later['tree_size']} events made "
                      f"{later['created_at']} extends {signer} by {facts['events_added']} events")
        return
    seqs = ", ".join(str(seq) for seq in facts["events_proven"])
    console.print(f"[green]proof ok[/green]: events {seqs} of {escape(facts['entity_id'])} are in {signer}")
    for entity, state in facts["state"].items():
        console.print(f"  {entity} as those events leave it: {escape(json.dumps(state, sort_keys=True))}")
    if facts["after_checkpoint"]:
        console.print(f"  {len(facts['after_checkpoint'])} later events of it are beyond the checkpoint: not proven")


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
