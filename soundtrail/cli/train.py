"""``soundtrail train KIND``: a model of a registered generator family, on the shards."""

from __future__ import annotations

from typing import Annotated

import typer

from soundtrail.cli import app, prerequisites
from soundtrail.cli.common import JsonOption, WorkspaceOption, console, emit_json, open_workspace
from soundtrail.cli.progress import progress_bars


def registered_family(name: str) -> str:
    """Typer callback: a usage error (exit 2) naming the registered families for any other name."""
    from soundtrail.train.families import FAMILIES

    if name not in FAMILIES:
        raise typer.BadParameter(f"unknown generator family {name!r}; registered: {', '.join(FAMILIES)}")
    return name


@app.command("train")
def train(
    kind: Annotated[str, typer.Argument(help="generator family (ar, diffusion, ...)", callback=registered_family)],
    steps: Annotated[int | None, typer.Option(min=1, help="optimizer steps (default from soundtrail.toml)")] = None,
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Train a generator on the shards; the checkpoint records which shards and codec it saw."""
    from soundtrail.flows.runtime import command_runtime
    from soundtrail.flows.train import train_flow

    ws = open_workspace(workspace)
    prerequisites.training(ws)
    with command_runtime(ws) as runner, progress_bars(not as_json):
        trained = train_flow.with_options(task_runner=runner)(str(ws.root), kind, steps)
    if as_json:
        emit_json(trained.to_dict())
        return
    model = trained.model
    console.print(f"{kind} model {model.id}: loss {model.metrics['initial_loss']:.3f} -> "
                  f"{model.metrics['final_loss']:.3f} over {model.metrics['steps']} steps on {len(model.shards)} "
                  f"shards ({model.metrics['device']})")
    if model.init_reason:
        console.print(f"weights began {model.init_reason}")
    console.print(f"checkpoint: {model.path}")
