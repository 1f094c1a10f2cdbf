"""``soundtrail corpus synth``, ``soundtrail ingest``, ``soundtrail blocklist add``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from soundtrail.cli import app
from soundtrail.cli.common import CommandError, JsonOption, WorkspaceOption, console, emit_json, open_workspace
from soundtrail.cli.progress import progress_bars

corpus_app = typer.Typer(help="Demo corpus tools.", no_args_is_help=True)
blocklist_app = typer.Typer(help="Protected works that must never be ingested.", no_args_is_help=True)
app.add_typer(corpus_app, name="corpus")
app.add_typer(blocklist_app, name="blocklist")


@corpus_app.command("synth")
def corpus_synth(
    directory: Annotated[Path, typer.Argument(help="folder to write the corpus into")],
    tracks: Annotated[int, typer.Option(min=1, help="licensed tracks (failing examples are added on top)")] = 12,
    seconds: Annotated[float, typer.Option(min=1.0, help="length of each track")] = 8.0,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    as_json: JsonOption = False,
) -> None:
    """Write a procedurally composed, licensed demo corpus with a manifest.jsonl."""
    from soundtrail.corpus import synthesize_corpus

    summary = synthesize_corpus(directory, tracks=tracks, seconds=seconds, seed=seed)
    document = {"manifest": str(summary.manifest_path), "tracks": len(summary.expected_status),
                "protected": [str(path) for path in summary.protected_paths]}
    if as_json:
        emit_json(document)
    else:
        console.print(f"wrote {document['tracks']} files and {summary.manifest_path}")


@app.command("ingest")
def ingest(
    paths: Annotated[list[Path], typer.Argument(exists=True, help="files or folders")],
    manifest: Annotated[Path | None, typer.Option(exists=True, dir_okay=False,
                                                  help="JSONL or CSV manifest with licences and rights")] = None,
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Ingest licensed audio with provenance, licence and fingerprint checks (a Prefect flow on Ray)."""
    from soundtrail.flows.ingest import ingest_flow
    from soundtrail.flows.runtime import command_runtime

    ws = open_workspace(workspace, create=True)
    if manifest is not None:
        _refuse_unusable_manifest(manifest)
    with command_runtime(ws) as runner, progress_bars(not as_json):
        flow = ingest_flow.with_options(task_runner=runner)
        summary = flow(str(ws.root), [str(path) for path in paths], str(manifest) if manifest else None)
    if as_json:
        emit_json(summary)
        return
    print_ingest_summary(summary)


def _refuse_unusable_manifest(manifest: Path) -> None:
    """A manifest the flow would refuse is refused here, as one line, before Prefect and Ray start."""
    from soundtrail.ingest.manifest import ManifestError, read_manifest

    try:
        read_manifest(manifest)
    except ManifestError as exc:
        raise CommandError(str(exc)) from None


def print_ingest_summary(summary: dict) -> None:
    table = Table("status", "path", "reason")
    for item in summary["items"]:
        if item["status"] != "accepted":
            table.add_row(item["status"], escape(item["path"]), escape(item["reason"] or ""))
    if table.rows:
        console.print(table)
    console.print(f"accepted {summary['accepted']}, quarantined {summary['quarantined']}, "
                  f"duplicate {summary['duplicate']}, blocked {summary['blocked']}, disputed {summary['disputed']}")
    if summary["disputed"]:
        console.print("copies with conflicting claims are held: see `soundtrail review list`")


@blocklist_app.command("add")
def blocklist_add(
    paths: Annotated[list[Path], typer.Argument(exists=True, help="reference recordings of protected works")],
    reason: Annotated[str, typer.Option(help="why these works are protected")],
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Fingerprint protected works; later ingests mark copies and excerpts of them as blocked."""
    from soundtrail.ingest.blocklist import add_to_blocklist

    ws = open_workspace(workspace, create=True)
    added = add_to_blocklist(ws, paths, reason)
    if as_json:
        emit_json({"added": added})
    else:
        for entry in added:
            console.print(f"blocked work {entry['id']}: {entry['path']}")
