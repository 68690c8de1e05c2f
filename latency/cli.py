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
        # Not standalone: a usage error (missing option, bad value) comes here too and becomes one line.
        code = app(args=argv, prog_name="latency", standalone_mode=False)
    except SystemExit:
        raise
    except Exception as exc:  # noqa: BLE001 - click's exceptions, matched by name (typer may vendor click)
        kinds = {k.__name__ for k in type(exc).__mro__}
        ctx = getattr(exc, "ctx", None)
        if "NoArgsIsHelpError" in kinds:
            print(ctx.get_help() if ctx is not None else str(exc))
            sys.exit(0)
        if "UsageError" in kinds:
            path = getattr(ctx, "command_path", "") or ""
            where = f"latency {path.split(' ', 1)[1]}: " if " " in path else ""
            message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
            print(f"error: {where}{_one_line(message)}", file=sys.stderr)
            sys.exit(2)
        if "ClickException" in kinds:
            print(f"error: {_one_line(exc.format_message())}", file=sys.stderr)
            sys.exit(getattr(exc, "exit_code", 1) or 1)
        if "Abort" in kinds:
            print("error: interrupted", file=sys.stderr)
            sys.exit(130)
        _fail(exc, debug)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
    if isinstance(code, int) and code:
        sys.exit(code)


def _fail(exc: BaseException, debug: bool) -> None:
    if debug:
        raise exc
    from latency.errors import is_user_error

    user = is_user_error(exc)
    prefix = "error" if user else f"error ({type(exc).__name__})"
    print(f"{prefix}: {_one_line(exc)}", file=sys.stderr)
    sys.exit(2 if user else 1)


if __name__ == "__main__":
    main()
