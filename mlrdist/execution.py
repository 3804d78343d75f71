"""Where Dask work runs: an embedded LocalCluster, any cluster by address, or a local scheduler.

``scheduler`` (or the ``MLRDIST_SCHEDULER`` environment variable) selects:

* ``None``: an embedded ``distributed.LocalCluster`` (one single-threaded worker process
  per core), closed at the end; the dashboard link is logged.
* ``"tcp://host:8786"`` (any address): an existing Dask cluster.
* ``"synchronous"``, ``"threads"``, ``"processes"``: Dask's local schedulers, without
  ``distributed`` (useful for debugging and small jobs).

A ready ``distributed.Client`` can be passed instead and is left open.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

__all__ = ["Executor", "LOCAL_SCHEDULERS", "WORKER_ENV", "local_cluster", "open_executor"]

log = logging.getLogger(__name__)
LOCAL_SCHEDULERS = ("synchronous", "threads", "processes")
# Dask starts worker processes with MALLOC_TRIM_THRESHOLD_=65536, which turns every large
# buffer (decoded images, window stacks) into a fresh mmap and cost a third of the speed of
# image decoding and synthesis (measured). A 32 MiB top pad restores it; set the same variable
# in the workers' environment on your own clusters (infra/ does).
WORKER_ENV = {"MALLOC_TOP_PAD_": str(32 << 20)}


@dataclass
class Executor:
    """Runs independent tasks on the chosen Dask back-end."""

    client: Any = None
    scheduler: str | None = None
    dashboard: str | None = None

    @property
    def n_workers(self) -> int:
        if self.client is not None:
            return max(1, len(self.client.scheduler_info(n_workers=-1)["workers"]))
        return 1 if self.scheduler == "synchronous" else os.cpu_count() or 1

    @property
    def worker_memory(self) -> int | None:
        """Memory per task slot (bytes): a worker's limit over its threads."""
        if self.client is not None:
            workers = self.client.scheduler_info(n_workers=-1)["workers"].values()
            per_slot = [w["memory_limit"] / max(1, w["nthreads"]) for w in workers if w.get("memory_limit")]
            return int(min(per_slot)) if per_slot else None
        import psutil

        slots = 1 if self.scheduler == "synchronous" else os.cpu_count() or 1
        return int(psutil.virtual_memory().available / slots)

    def map(
        self,
        func: Callable[[Any], Any],
        items: Sequence[Any],
        *,
        key: str,
        retries: int = 2,
        progress: bool = False,
        desc: str = "",
        max_in_flight: int | None = None,
    ) -> list[Any]:
        """``[func(item) for item in items]`` as Dask tasks; results in input order.

        At most ``max_in_flight`` tasks (default: 4 per worker, at least 8) are submitted at
        a time, so the scheduler's and the driver's memory stay flat however many items
        there are; a new task is submitted as each one finishes.
        """
        if not items:
            return []
        window = max_in_flight or max(8, 4 * self.n_workers)
        if self.client is not None:
            return self._map_distributed(func, items, key, retries, progress, desc, window)
        import dask

        results: list[Any] = []
        for start in range(0, len(items), window):
            wave = items[start : start + window]
            tasks = [
                dask.delayed(func, pure=False)(item, dask_key_name=f"{key}-{start + i}") for i, item in enumerate(wave)
            ]
            if progress:
                from dask.diagnostics import ProgressBar

                with ProgressBar(out=sys.stderr):
                    results += dask.compute(*tasks, scheduler=self.scheduler)
            else:
                results += dask.compute(*tasks, scheduler=self.scheduler)
        return results

    def _map_distributed(self, func, items, key, retries, progress, desc, window):
        from distributed import as_completed
        from tqdm.auto import tqdm

        def submit(i):
            return self.client.submit(func, items[i], key=f"{key}-{i}", retries=retries, pure=False)

        first = [submit(i) for i in range(min(window, len(items)))]
        index = {f.key: i for i, f in enumerate(first)}
        pending = iter(range(len(first), len(items)))
        results: list[Any] = [None] * len(items)
        queue = as_completed(first)
        with tqdm(total=len(items), desc=desc, unit="task", disable=not progress, file=sys.stderr) as bar:
            for fut in queue:
                results[index.pop(fut.key)] = fut.result()
                fut.release()
                bar.update()
                nxt = next(pending, None)
                if nxt is not None:
                    new = submit(nxt)
                    index[new.key] = nxt
                    queue.add(new)
        return results


def local_cluster(n_workers: int | None = None, **kwargs: Any):
    """A ``distributed.LocalCluster`` of single-threaded worker processes, tuned for mlrdist
    (``WORKER_ENV``); ``kwargs`` go to ``LocalCluster``."""
    import dask
    from distributed import LocalCluster

    options = dict(n_workers=n_workers or os.cpu_count() or 1, threads_per_worker=1, processes=True,
                   dashboard_address=":0")
    with dask.config.set(worker_environ()):
        return LocalCluster(**{**options, **kwargs})


def worker_environ() -> dict:
    """Dask config putting ``WORKER_ENV`` into the environment of spawned worker processes."""
    return {f"distributed.nanny.pre-spawn-environ.{k}": v for k, v in WORKER_ENV.items()}


@contextmanager
def open_executor(client: Any = None, scheduler: str | None = None) -> Iterator[Executor]:
    """Context manager yielding an :class:`Executor` (see the module docstring)."""
    if client is not None:
        yield Executor(client=client, dashboard=getattr(client, "dashboard_link", None))
        return
    scheduler = scheduler or os.environ.get("MLRDIST_SCHEDULER") or None
    if scheduler in LOCAL_SCHEDULERS:
        yield Executor(scheduler=scheduler)
        return
    try:
        from distributed import Client
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ValueError(
            "the distributed scheduler needs the 'distributed' package: pip install "
            "'mlrdist[distributed]', or pass scheduler='threads'"
        ) from exc
    if scheduler is None:
        import dask

        # kept set while the cluster lives: a restarted worker is spawned with it too
        with dask.config.set(worker_environ()), local_cluster() as cluster, Client(cluster) as cl:
            log.info("Dask dashboard: %s", cl.dashboard_link)
            yield Executor(client=cl, dashboard=cl.dashboard_link)
        return
    if "://" not in scheduler:
        raise ValueError(
            f"scheduler must be a Dask scheduler address (e.g. tcp://host:8786) or one of "
            f"{LOCAL_SCHEDULERS}, got {scheduler!r}"
        )
    with Client(scheduler) as cl:
        log.info("Dask dashboard: %s", cl.dashboard_link)
        yield Executor(client=cl, dashboard=cl.dashboard_link)
