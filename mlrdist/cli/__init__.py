"""The ``mlrdist`` command line: a thin layer over the public API.

Each sub-command is a module of this package with ``HELP``, ``add_arguments(parser)`` and
``run(args) -> exit status``, listed in :data:`COMMANDS`; heavy imports happen inside
``run`` so ``mlrdist --help`` stays fast.

Exit status: 0 when everything was done; 3 when the run completed but skipped some inputs
(bad or unlabelled files, listed with their reasons); 2 on an error that stopped it (a bad
parameter, a missing source, an unreachable object store, refused credentials or a missing
bucket, in one line naming what to change); 1 is Python's own status for an unexpected
exception (with its traceback).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from ._common import EXIT_ERROR

__all__ = ["COMMANDS", "build_parser", "main"]

# sub-command -> module defining HELP, add_arguments(parser) and run(args)
COMMANDS = {
    "demo": "mlrdist.cli.demo",
    "evaluate": "mlrdist.cli.evaluate",
    "ingest": "mlrdist.cli.ingest",
    "synthesize": "mlrdist.cli.synthesize",
    "train": "mlrdist.cli.train",
}


def build_parser() -> argparse.ArgumentParser:
    from mlrdist import __version__

    parser = argparse.ArgumentParser(
        prog="mlrdist",
        description="Masked linear regression for facial expression synthesis, at scale.",
        epilog="Exit status: 0 when everything was done; 3 when a run completed but skipped some "
        "inputs (listed with reasons); 2 on an error that stopped it; 1 on an unexpected exception.",
    )
    parser.add_argument("--version", action="version", version=f"mlrdist {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in COMMANDS.items():
        mod = importlib.import_module(module)
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return EXIT_ERROR
    try:
        return int(args._run(args) or 0)
    except Exception as exc:
        message = _stopping_error(exc)
        if message is None:
            raise
        print(f"mlrdist {args.command}: error: {message}", file=sys.stderr)
        return EXIT_ERROR


def _stopping_error(exc: Exception) -> str | None:
    """The one line for an error that stops a run (exit status 2), or None for a crash."""
    from mlrdist.io.stores import describe_storage_error

    message = describe_storage_error(exc)
    if message is None and isinstance(exc, ValueError | FileNotFoundError | PermissionError):
        message = str(exc)
    return message


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
