"""``soundtrail eval compare``: the AR and diffusion generators side by side (speed and Fréchet distance)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from soundtrail.cli import app
from soundtrail.cli.common import JsonOption, WorkspaceOption, console, emit_json, open_workspace

eval_app = typer.Typer(help="Evaluate trained generators.", no_args_is_help=True)
app.add_typer(eval_app, name="eval")


def parse_steps(value: str) -> tuple[int, ...]:
    """``"8,16,32"`` -> (8, 16, 32); a usage error (exit 2) for anything but positive integers."""
    try:
        steps = tuple(int(part) for part in value.split(",") if part.strip())
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a comma-separated list of integers") from None
    if not steps or min(steps) < 1:
        raise typer.BadParameter("give at least one positive step count, e.g. 8,16,32")
    return steps


@eval_app.command("compare")
def compare(
    seconds: Annotated[float, typer.Option(min=0.5, max=30.0, help="length of every generated clip")] = 4.0,
    prompts: Annotated[int, typer.Option(min=1, help="clips per model (held-out captions, seeds seed..)")] = 4,
    diffusion_steps: Annotated[str, typer.Option(help="diffusion sampling step counts to time")] = "8,16,32",
    seed: Annotated[int, typer.Option(help="clip i uses seed + i for both families")] = 0,
    threads: Annotated[int, typer.Option(min=0, help="torch CPU threads (0: torch's default); on a shared "
                                                     "machine 1 gives steadier timings")] = 0,
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Generate with the newest AR and diffusion models on the same held-out captions; report RTF and FD.

    Trains nothing. Writes reports/compare.json and reports/compare.png in the workspace.
    """
    import torch

    from soundtrail.evaluate.compare import CompareConfig, compare_generators, write_report

    steps = parse_steps(diffusion_steps)
    if threads:
        torch.set_num_threads(threads)
    ws = open_workspace(workspace)
    config = CompareConfig(seconds=seconds, prompts=prompts, diffusion_steps=steps, seed=seed)

    def progress(result: dict[str, Any]) -> None:
        if not as_json:
            console.print(f"  {result['label']}: {result['rtf']:.2f}x real time")

    report = write_report(ws, compare_generators(ws, config, on_result=progress))
    if as_json:
        emit_json(report)
        return
    console.print(results_table(report))
    console.print(f"plot: {report['plot']}\nreport: {report['json']}")


def results_table(report: dict[str, Any]) -> Table:
    """One row per family / step count, and the codec floor as the last row."""
    names = list(report["embeddings"])
    table = Table(title=f"{report['config']['prompts']} held-out captions x {report['config']['seconds']:g} s "
                        f"on {report['device']}, codec {report['codec_id']}")
    table.add_column("model")
    table.add_column("steps", justify="right")
    table.add_column("id")
    table.add_column("x real time", justify="right")
    for name in names:
        table.add_column(f"FD {name}", justify="right")
    for row in report["results"]:
        table.add_row(row["family"], str(row["diffusion_steps"] or ""), row["model_id"], f"{row['rtf']:.2f}",
                      *(f"{row['fd'][n]:.2f}" for n in names))
    table.add_row("codec floor", "", report["codec_id"], "", *(f"{report['codec_floor'][n]:.2f}" for n in names),
                  style="dim")
    return table
