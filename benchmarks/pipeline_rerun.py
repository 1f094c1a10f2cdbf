"""A scheduled `soundtrail run` over unchanged inputs, and over one new file, against the first run.

    python benchmarks/pipeline_rerun.py [--quick] [--tracks N] [--seconds S]

Runs the command as users schedule it (`soundtrail run --json`, a fresh process each time: Prefect's local API
server and Ray start every run) on a workspace holding a synthesized licensed corpus, and prints wall seconds of:

- start-up: a process that imports the pipeline and enters the command's runtime (Prefect's API server, Ray,
  the watchdog) and leaves it: the part of every run that does not depend on the workspace, measured warm,
  just before the unchanged re-run;
- the first run (ingest, train the codec, tokenize, train both generators, generate, audit report);
- the same command again with nothing changed;
- the same command after one new licensed file is added to the drop folder and its manifest;

with each run's ratio to the first, what each run did and where its flow spent the time (from its JSON summary),
and the ledger events it appended.
Default sizes are the demo's (`soundtrail demo`: 150 steps for the codec and each generator); --quick is tiny.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")  # Prefect's 20 s: short on a busy box

from soundtrail.cli.pipeline import DEMO_CONFIG  # noqa: E402
from soundtrail.corpus import synthesize_corpus  # noqa: E402
from soundtrail.corpus.build import BLOCKLIST_REASON  # noqa: E402
from soundtrail.ingest.blocklist import add_to_blocklist  # noqa: E402
from soundtrail.provenance.ledger import Ledger  # noqa: E402
from soundtrail.workspace import Workspace  # noqa: E402

SOUNDTRAIL = "from soundtrail.cli import run; run()"  # the console script, with this checkout first on the path
STARTUP = """
import sys
from soundtrail.flows.pipeline import pipeline_flow  # noqa: F401  (the imports a run pays for)
from soundtrail.flows.runtime import command_runtime
from soundtrail.workspace import Workspace

with command_runtime(Workspace(sys.argv[1])):
    pass
"""


def timed(command: list[str]) -> tuple[float, str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command[:4])} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return seconds, done.stdout


def run_pipeline(workspace: Path) -> tuple[float, dict]:
    seconds, stdout = timed([sys.executable, "-c", SOUNDTRAIL, "run", "--workspace", str(workspace), "--json"])
    return seconds, json.loads(stdout)


def ledger_events(url: str) -> int:
    with Ledger(url) as ledger:
        return ledger.head()[0]


def did(summary: dict) -> str:
    """What a run did, from its summary."""
    models = ", ".join(f"{kind} {model['action']}" for kind, model in summary["models"].items())
    outputs = [output["action"] for output in summary["outputs"]]
    return (f"codec {summary['codec']['action']}; {summary['tokenize']['new_shards']} new shards; {models}; "
            f"outputs {outputs.count('generated')} generated, {outputs.count('kept')} kept")


def add_one_file(workspace: Path, source: Path) -> None:
    """One more licensed track in the drop folder: a track of another synthesized corpus, renamed."""
    manifest = workspace / "inputs" / "manifest.jsonl"
    row = json.loads((source / "manifest.jsonl").read_text().splitlines()[0])
    new = Path(row["path"]).with_name("new-" + Path(row["path"]).name)
    (workspace / "inputs" / new).write_bytes((source / row["path"]).read_bytes())
    with manifest.open("a") as handle:
        handle.write(json.dumps({**row, "path": str(new)}) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny corpus and step counts")
    parser.add_argument("--tracks", type=int, default=None)
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()
    tracks = args.tracks or (4 if args.quick else 10)
    steps = 12 if args.quick else 150

    with tempfile.TemporaryDirectory(prefix="soundtrail-rerun-") as tmp:
        workspace = Path(tmp) / "workspace"
        workspace.mkdir()
        (workspace / "soundtrail.toml").write_text(DEMO_CONFIG.format(codec_steps=steps, ar_steps=steps,
                                                                     diffusion_steps=steps))
        corpus = synthesize_corpus(workspace / "inputs", tracks=tracks, seconds=args.seconds, seed=0)
        add_to_blocklist(Workspace(workspace), list(corpus.protected_paths), BLOCKLIST_REASON)
        extra = synthesize_corpus(Path(tmp) / "extra", tracks=1, seconds=args.seconds, seed=99)
        ledger_url = Workspace(workspace).ledger_url
        print(f"workspace: {tracks} licensed tracks of {args.seconds:g} s (+ extras), {steps} training steps each")

        rows: list[tuple[str, float, str]] = []
        parts: dict[str, dict[str, float]] = {}
        events = ledger_events(ledger_url)
        for name, prepare in (("first run", None), ("unchanged re-run", None),
                              ("re-run with one new file", lambda: add_one_file(workspace, extra.root))):
            if prepare is not None:
                prepare()
            if name == "unchanged re-run":
                startup, _ = timed([sys.executable, "-c", STARTUP, str(workspace)])
                rows.append(("start-up (imports, Prefect API server, Ray)", startup, ""))
            seconds, summary = run_pipeline(workspace)
            appended, events = ledger_events(ledger_url) - events, ledger_events(ledger_url)
            rows.append((name, seconds, f"{did(summary)}; {appended} ledger events"))
            parts[name] = summary["seconds"]

    first = rows[0][1]
    print(f"{'run':<46} {'seconds':>8} {'x first':>8}  did")
    for name, seconds, what in rows:
        print(f"{name:<46} {seconds:8.1f} {seconds / first:8.2f}  {what}")
    print(f"unchanged re-run: {rows[2][1] - startup:.1f} s beyond the start-up measured before it; its flow's "
          f"stages took {sum(parts['unchanged re-run'].values()):.1f} s")
    names = list(next(iter(parts.values())))
    print(f"\nwhere each run's flow spent its time (seconds; the rest of a run is the process start-up)\n{'run':<46} "
          + " ".join(f"{name:>8}" for name in names))
    for run, seconds in parts.items():
        print(f"{run:<46} " + " ".join(f"{seconds[name]:8.1f}" for name in names))


if __name__ == "__main__":
    main()
