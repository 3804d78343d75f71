"""The ``mlrdist`` command line: a thin layer over the public API.

Each sub-command lives in its own ``_cmd_<name>`` function registered in ``COMMANDS``;
heavy imports happen inside them so ``mlrdist --help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

__all__ = ["main"]

# name -> (help, add_arguments(parser), run(args) -> exit code)
COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {}


def command(name: str, help: str, add_arguments: Callable[[argparse.ArgumentParser], None]):
    """Register a sub-command's ``run(args)`` function."""

    def register(run: Callable[[argparse.Namespace], int]):
        COMMANDS[name] = (help, add_arguments, run)
        return run

    return register


def _registry() -> dict:
    # ``python -m mlrdist.cli`` runs this file as ``__main__``: use the package module's table.
    import importlib

    return importlib.import_module("mlrdist.cli").COMMANDS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mlrdist",
        description="Masked linear regression for facial expression synthesis, at scale.",
    )
    from mlrdist import __version__

    parser.add_argument("--version", action="version", version=f"mlrdist {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (help_text, add_arguments, run) in sorted(_registry().items()):
        p = sub.add_parser(name, help=help_text, description=help_text)
        add_arguments(p)
        p.set_defaults(_run=run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    _load_commands()
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except (ValueError, FileNotFoundError, PermissionError) as exc:
        print(f"mlrdist {args.command}: error: {exc}", file=sys.stderr)
        return 2


def _load_commands() -> None:
    """Import the modules that register sub-commands (cli_*.py beside this file)."""
    import importlib
    import pkgutil

    import mlrdist

    for mod in pkgutil.iter_modules(mlrdist.__path__):
        if mod.name.startswith("cli_"):
            importlib.import_module(f"mlrdist.{mod.name}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
