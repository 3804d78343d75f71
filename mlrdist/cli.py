"""The ``mlrdist`` command line: a thin layer over the public API.

Each sub-command lives in its own ``_cmd_<name>`` function registered in ``COMMANDS``;
heavy imports happen inside them so ``mlrdist --help`` stays fast.

Exit status: 0 when everything was done; 3 when the run completed but skipped some inputs
(bad or unlabelled files, listed with their reasons); 2 on an error that stopped it (a bad
parameter or a missing source, in one line naming what to change); 1 is Python's own status
for an unexpected exception (with its traceback).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence

__all__ = ["main"]

# name -> (help, add_arguments(parser), run(args) -> exit code)
EXIT_SKIPPED = 3  # the run completed, some inputs were skipped (1 is Python's for a crash)
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


def parse_options(pairs: list[str] | None) -> dict | None:
    """``["endpoint_url=http://...", "anon=true"]`` -> fsspec storage options."""
    if not pairs:
        return None
    out: dict = {}
    for item in pairs:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--storage-option expects KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def quiet_logging() -> None:
    """mlrdist's INFO messages on stderr; Dask's own only from WARNING up."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        import distributed  # noqa: F401  (configures its loggers on import)
    except ImportError:  # pragma: no cover
        pass
    for name in ("distributed", "bokeh", "tornado"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # the dashboard's "Host wildcard '*' will allow connections ..." on every LocalCluster
    logging.getLogger("bokeh.server").setLevel(logging.ERROR)


def add_dask_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--scheduler",
        help="Dask scheduler address (tcp://host:8786), or synchronous/threads/processes; "
        "default: $MLRDIST_SCHEDULER or an embedded LocalCluster",
    )
    p.add_argument(
        "--storage-option", "-S", action="append", metavar="KEY=VALUE",
        help="fsspec storage option for s3:// and other URLs (repeatable), e.g. "
        "-S endpoint_url=http://127.0.0.1:9000",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mlrdist",
        description="Masked linear regression for facial expression synthesis, at scale.",
        epilog="Exit status: 0 when everything was done; 3 when a run completed but skipped some "
        "inputs (listed with reasons); 2 on an error that stopped it; 1 on an unexpected exception.",
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
