"""CLI command groups. Each module exposes ``register(app)``; modules that are absent are skipped."""

from __future__ import annotations

import importlib

import typer

_MODULES = ("measure", "predict", "quickstart")


def register_all(app: typer.Typer) -> None:
    for name in _MODULES:
        try:
            module = importlib.import_module(f"latency.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"latency.commands.{name}":
                continue
            raise
        module.register(app)
