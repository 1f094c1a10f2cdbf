"""``soundtrail codec train|eval`` and ``soundtrail tokenize``."""

from __future__ import annotations

from typing import Annotated

import typer

from soundtrail.cli import app, prerequisites
from soundtrail.cli.common import JsonOption, WorkspaceOption, console, emit_json, open_workspace
from soundtrail.cli.progress import progress_bars

codec_app = typer.Typer(help="Train, evaluate or import the neural codec.", no_args_is_help=True)
app.add_typer(codec_app, name="codec")


@codec_app.command("train")
def codec_train(
    steps: Annotated[int | None, typer.Option(min=1, help="training steps (default: codec.steps)")] = None,
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Train a codec on accepted assets and make it the workspace codec (resumes after a kill; records which
    assets it saw)."""
    from soundtrail.flows.codec import codec_train_flow
    from soundtrail.flows.runtime import command_runtime

    ws = open_workspace(workspace)
    prerequisites.codec_training(ws)
    with command_runtime(ws) as runner, progress_bars(not as_json):
        trained = codec_train_flow.with_options(task_runner=runner)(str(ws.root), steps)
    if as_json:
        emit_json(trained.to_dict())
        return
    codec = trained.codec
    metrics = codec.metrics
    console.print(f"codec {codec.id}: loss {metrics['initial_loss']:.3f} -> {metrics['final_loss']:.3f} "
                  f"over {metrics['steps']} steps on {len(codec.assets)} assets ({metrics['device']})")
    if "held_out" in metrics:
        held = metrics["held_out"]
        console.print(f"held-out: SI-SNR {held['si_snr_db']:.2f} dB, mel distance {held['mel_distance']:.3f}, "
                      f"{held['bitrate_kbps']:.2f} kbps")
    console.print(f"checkpoint: {codec.path}")


@codec_app.command("use")
def codec_use(
    codec_id: Annotated[str, typer.Argument(help="a recorded codec's id")],
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Make a recorded codec the workspace codec: tokenize, training and `run` use it from now on."""
    from soundtrail.codec.stage import use_codec

    codec, changed = use_codec(open_workspace(workspace), codec_id)
    if as_json:
        emit_json({"codec_id": codec.id, "kind": codec.kind, "path": codec.path, "changed": changed})
    else:
        console.print(f"workspace codec: {codec.id} ({codec.kind}, {codec.path})" + ("" if changed else ", as before"))


@codec_app.command("eval")
def codec_eval(
    codec: Annotated[str | None, typer.Option("--codec", help="codec id (default: the workspace codec)")] = None,
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """SI-SNR, multi-scale mel distance and bitrate on held-out accepted assets."""
    from soundtrail.codec.stage import evaluate_workspace_codec

    report = evaluate_workspace_codec(open_workspace(workspace), codec)
    if as_json:
        emit_json(report)
    else:
        console.print(f"codec {report['codec_id']} on {report['held_out']} held-out assets: "
                      f"SI-SNR {report['si_snr_db']:.2f} dB, mel distance {report['mel_distance']:.3f}, "
                      f"{report['bitrate_kbps']:.2f} kbps")


@app.command("tokenize")
def tokenize(
    codec: Annotated[str | None, typer.Option("--codec", help="codec id (default: the workspace codec)")] = None,
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Encode every accepted asset into Parquet token shards (Ray; GPU when present)."""
    from soundtrail.flows.runtime import command_runtime
    from soundtrail.flows.tokenize import tokenize_flow

    ws = open_workspace(workspace)
    prerequisites.tokenizing(ws, codec)
    with command_runtime(ws) as runner, progress_bars(not as_json):
        summary = tokenize_flow.with_options(task_runner=runner)(str(ws.root), codec)
    if as_json:
        emit_json(summary)
        return
    console.print(f"shard set {summary['shard_set']}: {summary['shards']} shards, {summary['rows']} segments "
                  f"({summary['new_shards']} new, {summary['superseded']} superseded)")
    for item in summary["skipped"]:
        console.print(f"  skipped {item['asset_id']} segment {item['segment']}: {item['reason']}")
