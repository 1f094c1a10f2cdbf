"""``soundtrail screen``, ``soundtrail watermark embed|detect`` and ``soundtrail verify``: the release gate's parts,
one at a time, and the check of any file against them.

``screen`` and ``verify`` only report (exit 0 whatever they find); ``generate`` runs the whole gate and exits 3 when
blocked.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from soundtrail.cli import app
from soundtrail.cli.common import (
    ByOption,
    CommandError,
    JsonOption,
    WorkspaceOption,
    console,
    emit_json,
    open_workspace,
    operator_name,
)

watermark_app = typer.Typer(help="Embed or detect the release watermark (32-bit payload).", no_args_is_help=True)
app.add_typer(watermark_app, name="watermark")

AudioFile = Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="audio file")]


@app.command("screen")
def screen(file: AudioFile, workspace: WorkspaceOption = None, as_json: JsonOption = False) -> None:
    """Screen audio against the training corpus: pass, flag or block, with the matching stretches."""
    from soundtrail.screening.stage import screening_index

    found = screening_index(open_workspace(workspace)).screen(file)
    if found.note:
        console.print(f"note: {found.note}")
    if as_json:
        emit_json(found.result.to_dict())
        return
    console.print(f"{file}: [bold]{found.result.verdict}[/bold] (screened against {found.assets} assets with "
                  f"{', '.join(found.methods)})")
    if found.result.matches:
        table = Table("asset", "query at", "asset at", "length", "score", "method")
        for match in found.result.matches:
            table.add_row(match.asset_id, f"{match.query_offset_s:.1f} s", f"{match.asset_offset_s:.1f} s",
                          f"{match.duration_s:.1f} s", f"{match.score:.2f}", match.method)
        console.print(table)
    for work in found.protected:
        console.print(escape(f"{work['work']} is a protected work ({protected_by(work)}): a match blocks"))


def protected_by(work: dict[str, str]) -> str:
    """The ledger entry that protects a work, for a person: ``takedown t... (reason)`` and the like."""
    entry = work.get("takedown_id") or work.get("blocklist_id") or work.get("asset_id")
    return f"{work['protected_by']} {entry}: {work['reason']}"


@watermark_app.command("embed")
def watermark_embed(
    source: AudioFile,
    out: Annotated[Path, typer.Argument(dir_okay=False, help="marked WAV to write (never inside outputs/)")],
    payload: Annotated[str | None, typer.Option(help="8 hex digits (default: random, printed)")] = None,
    force: Annotated[bool, typer.Option(
        "--force", help="mark audio that already carries a mark; both payloads are recorded in the ledger")] = False,
    reason: Annotated[str | None, typer.Option(help="why, with --force (recorded)")] = None,
    by: ByOption = None,
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Write OUT: SOURCE with the workspace-keyed watermark carrying PAYLOAD, checked to be detectable.

    Audio that already carries a mark is refused, naming its payload, unless --force (recorded in the ledger).
    """
    from soundtrail.provenance.outputs import OutputsPathError
    from soundtrail.provenance.overrides import Override
    from soundtrail.release.embed import embed_file
    from soundtrail.release.gate import AlreadyMarkedError, ReleaseError
    from soundtrail.release.watermark import hex_to_payload

    try:
        value = hex_to_payload(payload) if payload is not None else secrets.randbits(32)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--payload") from exc
    if reason is not None and not force:
        raise typer.BadParameter("--reason goes with --force", param_hint="--reason")
    override = Override(operator_name(by), reason or "re-marked with --force") if force else None
    try:
        result = embed_file(open_workspace(workspace), source, out, value, override)
    except AlreadyMarkedError as exc:
        raise CommandError(f"{exc}: --force marks it again and records both payloads in the ledger") from None
    except (OutputsPathError, ReleaseError) as exc:
        raise CommandError(str(exc)) from None
    if as_json:
        emit_json({"payload": result.payload, "path": str(result.path), "p_value": result.p_value,
                   "replaced_payload": result.replaced_payload})
        return
    typer.echo(result.payload)
    console.print(f"wrote {out} (mark detected back at p={result.p_value:.2g})")
    if result.replaced_payload:
        console.print(f"[yellow]{source} already carried watermark {result.replaced_payload}[/yellow]: both "
                      "payloads are recorded in the ledger")


@watermark_app.command("detect")
def watermark_detect(file: AudioFile, workspace: WorkspaceOption = None, as_json: JsonOption = False) -> None:
    """Look for the workspace-keyed watermark; prints the payload (an output id) when found."""
    from soundtrail.audio import decode
    from soundtrail.release.gate import watermark_config
    from soundtrail.release.watermark import detect

    audio, rate = decode(file)
    found = detect(audio, rate, watermark_config(open_workspace(workspace)))
    if as_json:
        emit_json(found.to_json())
    elif found.detected:
        payload = found.to_json()["payload"]
        console.print(f"{file}: watermark found, payload {payload or '(unreadable)'} (p={found.p_value:.2g})")
    else:
        console.print(f"{file}: no watermark (p={found.p_value:.2g})")


@app.command("verify")
def verify(file: AudioFile, workspace: WorkspaceOption = None, as_json: JsonOption = False) -> None:
    """What a file's credentials, watermark and ledger record say about it, and whether they agree."""
    from soundtrail.audio import AudioError
    from soundtrail.release.verify import verify_file

    try:
        result = verify_file(open_workspace(workspace), file)
    except AudioError as exc:
        raise CommandError(f"{file}: {exc}") from None
    if as_json:
        emit_json(result)
        return
    credentials, watermark, ledger = result["credentials"], result["watermark"], result["ledger"]
    lines = [escape(str(file))]
    if not credentials["present"]:
        lines.append("  credentials: none")
    else:
        state = "valid" if credentials["valid"] else f"INVALID ({', '.join(credentials['errors'])})"
        signer = escape(f"{credentials['signer']} ({credentials['issuer']})")
        lines.append(f"  credentials: {state}, signed by {signer}: {credentials['trust']}"
                     + (", untrusted outside it" if credentials["trust"].endswith("demo CA") else ""))
        binding = credentials["soft_binding"]
        lines.append(f"  declared watermark: {escape(binding['alg'])} {escape(binding['payload'])}" if binding
                     else "  declared watermark: none")
    if watermark["detected"]:
        agrees = {True: ", as the manifest declares", False: ", NOT the one the manifest declares", None: ""}
        lines.append(f"  watermark: {watermark['payload']} (p={watermark['p_value']:.2g})"
                     f"{agrees[watermark['matches_manifest']]}")
    else:
        lines.append(f"  watermark: none found (p={watermark['p_value']:.2g})")
    output = ledger["output"]
    if output is None:
        lines.append("  ledger: no output record")
    else:
        copy = "this file is the released copy" if ledger["file_is_released_copy"] else \
            "this file is NOT byte for byte the released copy"
        lines.append(escape(f"  ledger: output {output['id']} {output['status']} {output['created_at']}, prompt "
                            f"{output['prompt']!r}; {copy}"))
        if ledger["model"]:
            model, training = ledger["model"], ledger["training"]
            licences = ", ".join(f"{key} ({value['assets']})" for key, value in training["licenses"].items())
            digest = {True: "matches the manifest", False: "DIFFERS from the manifest", None: "not in a manifest"}
            lines.append(escape(f"  model {model['id']} ({model['kind']}, {model['status']}); trained on "
                                f"{training['assets']} assets, {training['duration_s']:.1f} s: {licences}; "
                                f"training digest {digest[training['digest_matches_manifest']]}"))
    lines.append("  consistent: yes" if result["consistent"] else "  consistent: NO")
    console.print("\n".join(lines), soft_wrap=True)
