"""The ``soundtrail`` command line: thin Typer commands that call flows and tasks and print.

Exit codes: 0 success; 1 error (one line on stderr, traceback only with ``--debug``);
2 usage error; 3 release blocked by the screening gate.
"""

from __future__ import annotations

import os
import sys

import typer
from typer.main import get_command

from soundtrail.cli.common import EXIT_ERROR, CommandError
from soundtrail.cli.ledger import assets_app, ledger_app

app = typer.Typer(
    name="soundtrail",
    help="Provenance-first data-to-model pipeline for music generation.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(ledger_app, name="ledger")
app.add_typer(assets_app, name="assets")


def _register() -> None:
    """Attach the stage command modules (imported here so each stays one small file)."""
    from soundtrail.cli import audit, codec, evaluate, ingest, pipeline, release, review, train  # noqa: F401


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point; maps exceptions to the contract's exit codes."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    if debug:
        args.remove("--debug")
    # Progress bars and summaries are the CLI's output; Prefect's per-task INFO lines are noise there.
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "DEBUG" if debug else "WARNING")
    _register()
    command = get_command(app)
    try:
        # Standalone mode: Typer itself prints usage errors and exits 2, and turns Exit(n) into SystemExit(n).
        command.main(args=args, prog_name="soundtrail", standalone_mode=True)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else EXIT_ERROR)
    except CommandError as exc:
        if debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return exc.code
    except Exception as exc:  # noqa: BLE001 - the contract: one clear line, traceback only with --debug
        if debug:
            raise
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"error: {type(exc).__name__}: {message}", file=sys.stderr)
        return EXIT_ERROR
    return 0


def run() -> None:
    """``soundtrail`` console script."""
    sys.exit(main())


if __name__ == "__main__":
    run()
