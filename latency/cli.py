"""The ``latency`` command line. Each command lives in ``latency.commands.<group>``; this module wires them
and turns every error a user can cause into one line on stderr and a non-zero exit."""

from __future__ import annotations

import os
import sys

import typer

app = typer.Typer(
    name="latency",
    help="Hardware-aware latency prediction: profile devices, train and adapt predictors, search under a budget.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """Hardware-aware latency prediction for NAS."""


@app.command()
def version() -> None:
    """Print the toolkit version."""
    from importlib.metadata import version as dist_version

    typer.echo(dist_version("hw-latency"))


def _register() -> None:
    from latency.commands import register_all

    register_all(app)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text


def main(argv: list[str] | None = None) -> None:
    """Console entry point. ``LATENCY_DEBUG=1`` shows tracebacks."""
    _register()
    debug = os.environ.get("LATENCY_DEBUG", "") not in ("", "0")
    try:
        # Typer handles usage errors, --help and Exit itself (standalone mode); everything else lands here.
        app(args=argv, prog_name="latency")
    except SystemExit:
        raise
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - the CLI's promise is one line, never a traceback
        if debug:
            raise
        from latency.errors import is_user_error

        user = is_user_error(exc)
        prefix = "error" if user else f"error ({type(exc).__name__})"
        print(f"{prefix}: {_one_line(exc)}", file=sys.stderr)
        sys.exit(2 if user else 1)

if __name__ == "__main__":
    main()
