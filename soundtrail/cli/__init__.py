"""The ``soundtrail`` command line: thin Typer commands that call flows and tasks and print.

Exit codes: 0 success; 1 error (one line on stderr, traceback only with ``--debug``);
2 usage error (one line too); 3 release blocked by the screening gate. Prefect's own console log
(a failed task's ERROR line and traceback) is off unless ``--debug``: the one line says what failed,
and the flow run's logs stay on the Prefect API.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer
from typer.main import get_command

from soundtrail import __version__
from soundtrail.cli.common import EXIT_ERROR, EXIT_USAGE, CommandError
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


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"soundtrail {__version__}")
        raise typer.Exit()


@app.callback()
def _global_options(
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                          help="print the version and exit")] = False,
) -> None:
    """Provenance-first data-to-model pipeline for music generation."""


def _register() -> None:
    """Attach the stage command modules (imported here so each stays one small file)."""
    from soundtrail.cli import (  # noqa: F401
        audit,
        codec,
        evaluate,
        generate,
        ingest,
        pipeline,
        release,
        review,
        train,
    )


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point; maps exceptions to the contract's exit codes."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    if debug:
        args.remove("--debug")
    # Progress bars and summaries are the CLI's output; Prefect's per-task INFO lines are noise there, and
    # a failed flow's ERROR log and traceback would bury the one line that says what went wrong.
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "DEBUG" if debug else "WARNING")
    if not debug:
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")
    _register()
    command = get_command(app)
    try:
        # Not standalone: usage errors come here to be printed as one line; Exit(n) comes back as n.
        code = command.main(args=args, prog_name="soundtrail", standalone_mode=False)
    except typer.TyperException as exc:  # Typer's usage errors (its vendored click's ClickException)
        if type(exc).__name__ == "NoArgsIsHelpError":  # Typer has printed the help already
            return EXIT_USAGE
        if debug:
            raise
        context = getattr(exc, "ctx", None)
        hint = f" (see `{context.command_path} --help`)" if context is not None else ""
        print(f"error: {_one_line(exc.format_message())}{hint}", file=sys.stderr)
        return exc.exit_code
    except typer.Abort:
        return 130
    except CommandError as exc:
        if debug:
            raise
        print(f"error: {_one_line(str(exc))}", file=sys.stderr)
        return exc.code
    except Exception as exc:  # noqa: BLE001 - the contract: one clear line, traceback only with --debug
        if debug:
            raise
        print(f"error: {type(exc).__name__}: {_one_line(str(exc)) or type(exc).__name__}", file=sys.stderr)
        return EXIT_ERROR
    return code if isinstance(code, int) else 0


def _one_line(message: str) -> str:
    return " ".join(message.split())


def run() -> None:
    """``soundtrail`` console script."""
    sys.exit(main())


if __name__ == "__main__":
    run()
