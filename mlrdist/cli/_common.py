"""What the sub-commands share: exit codes, storage options, logging, Dask arguments."""

from __future__ import annotations

import argparse
import json
import logging

__all__ = ["EXIT_ERROR", "EXIT_OK", "EXIT_SKIPPED", "add_dask_arguments", "parse_options", "quiet_logging"]

EXIT_OK = 0
EXIT_ERROR = 2  # an error stopped the run (1 is Python's own status for a crash)
EXIT_SKIPPED = 3  # the run completed, some inputs were skipped


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
