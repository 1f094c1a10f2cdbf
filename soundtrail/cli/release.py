"""``soundtrail screen`` and ``soundtrail watermark embed|detect``: the release gate's parts, one at a time.

``screen`` only reports (exit 0 whatever the verdict); ``generate`` runs the whole gate and exits 3 when blocked.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from soundtrail.cli import app
from soundtrail.cli.common import CommandError, JsonOption, WorkspaceOption, console, emit_json, open_workspace

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


@watermark_app.command("embed")
def watermark_embed(
    source: AudioFile,
    out: Annotated[Path, typer.Argument(dir_okay=False, help="marked WAV to write")],
    payload: Annotated[str | None, typer.Option(help="8 hex digits (default: random, printed)")] = None,
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Write OUT: SOURCE with the workspace-keyed watermark carrying PAYLOAD, checked to be detectable."""
    from soundtrail.audio import decode, write_wav
    from soundtrail.release.gate import ReleaseError, check_mark, mark, watermark_config
    from soundtrail.release.watermark import hex_to_payload, payload_to_hex

    try:
        value = hex_to_payload(payload) if payload is not None else secrets.randbits(32)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--payload") from exc
    config = watermark_config(open_workspace(workspace))
    audio, rate = decode(source)
    write_wav(out, mark(audio, rate, value, config), rate)
    try:
        p_value = check_mark(out, value, config)
    except ReleaseError as exc:
        out.unlink()
        raise CommandError(f"{source}: {exc}") from exc
    if as_json:
        emit_json({"payload": payload_to_hex(value), "path": str(out), "p_value": p_value})
    else:
        typer.echo(payload_to_hex(value))
        console.print(f"wrote {out} (mark detected back at p={p_value:.2g})")


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
