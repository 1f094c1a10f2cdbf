"""``soundtrail run`` (the end-to-end flow over a workspace) and ``soundtrail demo``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from soundtrail.cli import app, prerequisites
from soundtrail.cli.common import JsonOption, WorkspaceOption, console, emit_json, open_workspace
from soundtrail.cli.progress import progress_bars
from soundtrail.config import CONFIG_NAME
from soundtrail.workspace import Workspace

# CPU-sized settings that let the whole demo finish in minutes on two cores.
DEMO_CONFIG = """\
# Written by `soundtrail demo`: CPU-sized settings for the embedded demo corpus.
[pipeline]
inputs = ["inputs/tracks"]
manifest = "inputs/manifest.jsonl"
generate_seconds = 4.0

[codec]
steps = {codec_steps}
segment_s = 0.5

[train]
ar_steps = {ar_steps}
diffusion_steps = {diffusion_steps}
crop_seconds = 1.0
"""


def run_pipeline(ws: Workspace, show_progress: bool) -> dict[str, Any]:
    from soundtrail.flows.ingest import configured_inputs
    from soundtrail.flows.pipeline import pipeline_flow
    from soundtrail.flows.runtime import command_runtime

    prerequisites.pipeline(ws, configured_inputs)
    with command_runtime(ws), progress_bars(show_progress):  # the pipeline starts its own Ray session once
        return pipeline_flow(str(ws.root))


@app.command("run")
def run(
    config: Annotated[Path | None, typer.Option(exists=True, dir_okay=False,
                                                help="a soundtrail.toml to use instead of the workspace's")] = None,
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """The end-to-end Prefect flow over the workspace's inputs: ingest to release, then the audit report."""
    ws = Workspace.open(workspace, config)
    summary = run_pipeline(ws, not as_json)
    if as_json:
        emit_json(summary)
    else:
        print_pipeline_summary(summary)


@app.command("demo")
def demo(
    tracks: Annotated[int, typer.Option(min=2, help="licensed tracks to synthesize")] = 10,
    seconds: Annotated[float, typer.Option(min=7.5, help="length of each track")] = 8.0,
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Synthesize a licensed demo corpus, run the whole pipeline on it with CPU-sized models, print where it all is."""
    from soundtrail.corpus import synthesize_corpus
    from soundtrail.corpus.build import BLOCKLIST_REASON
    from soundtrail.ingest.blocklist import add_to_blocklist

    ws = open_workspace(workspace, create=True)
    config_path = ws.root / CONFIG_NAME
    if not config_path.exists():
        config_path.write_text(DEMO_CONFIG.format(codec_steps=150, ar_steps=150, diffusion_steps=150))
        ws = Workspace(ws.root)
    console.print(f"[bold]soundtrail demo[/bold] in {ws.root}")
    corpus = synthesize_corpus(ws.root / "inputs", tracks=tracks, seconds=seconds, seed=0)
    console.print(f"corpus: {len(corpus.tracks)} files and a manifest in {corpus.root}")
    add_to_blocklist(ws, list(corpus.protected_paths), BLOCKLIST_REASON)
    console.print(f"blocklist: {len(corpus.protected_paths)} protected work(s)")
    summary = run_pipeline(ws, not as_json)
    from soundtrail.provenance.ledger import Ledger

    with Ledger(ws.ledger_url) as ledger:
        verified = ledger.verify()
    summary["ledger_ok"] = verified.ok
    if as_json:
        emit_json(summary)
        return
    print_pipeline_summary(summary)
    console.print(f"ledger: {'verified' if verified.ok else verified.problem} ({verified.events} events)")


def print_pipeline_summary(summary: dict[str, Any]) -> None:
    ingest = summary["ingest"]
    console.print(f"ingest: {ingest['accepted']} accepted, {ingest['quarantined']} quarantined, "
                  f"{ingest['duplicate']} duplicate, {ingest['blocked']} blocked")
    for item in ingest["items"]:
        if item["status"] != "accepted":
            console.print(f"  {item['status']:<11} {escape(Path(item['path']).name)}: {escape(item['reason'] or '')}")
    codec = summary["codec"]
    loss = (f": loss {codec['metrics']['initial_loss']:.3f} -> {codec['metrics']['final_loss']:.3f}"
            if codec["action"] == "trained" else "")
    console.print(f"codec {codec['codec_id']} {codec['action']} ({escape(codec['reason'])}){loss}")
    tokens = summary["tokenize"]
    console.print(f"shards: {tokens['rows']} segments in {tokens['shards']} shards ({tokens['shard_set']}), "
                  f"{tokens['new_shards']} new")
    for kind, model in summary["models"].items():
        metrics = model["metrics"]
        console.print(f"{kind} model {model['model_id']} {model['action']} ({escape(model['reason'])}): loss "
                      f"{metrics['initial_loss']:.3f} -> {metrics['final_loss']:.3f} over {metrics['steps']} steps")
    table = Table("output", "model", "this run", "status", "verdict", "watermark", "file")
    for output in summary["outputs"]:
        table.add_row(output["output_id"], output["model_kind"], output["action"], output["status"], output["verdict"],
                      output["payload_hex"] or "", escape(str(output["path"] or output["evidence"] or "")))
    console.print(table)
    console.print(f"outputs: {Path(summary['workspace']) / 'outputs'}")
    console.print(f"audit report: {summary['report']}")
