"""``soundtrail generate``: generate, then the release gate.

The same name all the way down: this command -> ``generate_flow`` / ``generate_task`` (flows/generate.py) ->
``generate`` (release/generate.py: the gate after the model) -> ``families.generate`` (train/families.py: the model).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from soundtrail.cli import app, prerequisites
from soundtrail.cli.common import (
    EXIT_BLOCKED,
    ByOption,
    JsonOption,
    WorkspaceOption,
    console,
    emit_json,
    open_workspace,
    operator_name,
)
from soundtrail.cli.release import protected_by


@app.command("generate")
def generate(
    prompt: Annotated[str, typer.Option(help="text description of the music")],
    out: Annotated[Path, typer.Option(help="where to copy the released WAV")],
    model: Annotated[str, typer.Option(help="a generator family (its newest model), e.g. ar, or a model id")] = "ar",
    seconds: Annotated[float, typer.Option(min=0.5, max=30.0)] = 4.0,
    seed: Annotated[int, typer.Option()] = 0,
    override_takedown: Annotated[bool, typer.Option(
        "--override-takedown", help="generate with a model a takedown affects, recorded with --reason")] = False,
    reason: Annotated[str | None, typer.Option(help="why the override (with --override-takedown)")] = None,
    by: ByOption = None,
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Generate, then the release gate (screen, watermark, credentials); exit 3 and no file if blocked.

    A model trained on audio since taken down is refused (exit 1) unless --override-takedown --reason TEXT.
    """
    from soundtrail.flows.generate import generate_flow
    from soundtrail.flows.runtime import command_runtime
    from soundtrail.provenance.overrides import Override

    if override_takedown != (reason is not None):
        raise typer.BadParameter("--override-takedown and --reason TEXT go together", param_hint="--reason")
    override = Override(operator_name(by), reason) if override_takedown and reason is not None else None
    ws = open_workspace(workspace)
    prerequisites.generating(ws, model, prompt, seconds, seed, out, override)
    with command_runtime(ws) as runner:
        result = generate_flow.with_options(task_runner=runner)(
            str(ws.root), model, prompt, seconds, seed, str(out),
            {"by": override.by, "reason": override.reason} if override else None)
    if as_json:
        emit_json(result)
    elif result["status"] == "released":
        console.print(f"released output {result['output_id']} ({result['verdict']}): {out}")
        credential = result["credential"]["manifest_label"]
        console.print(f"watermark payload {result['payload_hex']}, C2PA manifest {credential}")
    else:
        console.print(f"[red]blocked[/red] output {result['output_id']}: evidence in {result['evidence']}")
        for match in result["matches"]:
            console.print(f"  {match['method']}: asset {match['asset_id']} at {match['asset_offset_s']:.1f} s "
                          f"for {match['duration_s']:.1f} s (score {match['score']:.2f})")
        for work in result["protected"]:
            console.print(escape(f"  {work['work']} is a protected work ({protected_by(work)})"))
    if result["status"] == "blocked":
        raise typer.Exit(EXIT_BLOCKED)
