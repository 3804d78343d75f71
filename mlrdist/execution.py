"""Where Dask work runs: an embedded LocalCluster, any cluster by address, or a local scheduler.

``scheduler`` (or the ``MLRDIST_SCHEDULER`` environment variable) selects:

* ``None``: an embedded ``distributed.LocalCluster`` (one single-threaded worker process
  per core), closed at the end; the dashboard link is logged.
* ``"tcp://host:8786"`` (any address): an existing Dask cluster.
* ``"synchronous"``, ``"threads"``, ``"processes"``: Dask's local schedulers, without
  ``distributed`` (useful for debugging and small jobs).

A ready ``distributed.Client`` can be passed instead and is left open.

Inside one task, :func:`thread_map` fans work out over threads with BLAS kept to one
thread each (for thousands of small linear-algebra problems, a multi-threaded BLAS was
measured 2.5x slower); the kernels themselves are single-threaded.
"""

from __future__ import annotations

import collections
import itertools
import logging
import os
import sys
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

__all__ = [
    "LOCAL_SCHEDULERS",
    "WORKER_ENV",
    "Executor",
    "blas_limits",
    "close_cluster",
    "local_cluster",
    "open_executor",
    "thread_map",
]

log = logging.getLogger(__name__)
LOCAL_SCHEDULERS = ("synchronous", "threads", "processes")
# Dask starts worker processes with MALLOC_TRIM_THRESHOLD_=65536. Setting it switches off
# glibc's adaptive mmap threshold, so every buffer over 128 KiB (decoded photos, window
# stacks, detector pyramids) becomes a fresh mmap, page-faulted on first touch and unmapped on
# free: image decoding lost a third of its speed, photo synthesis with the face detector 40%
# (358 vs 210 ms per photo, measured). A 32 MiB top pad and a 64 MiB mmap threshold restore
# it; memory is still handed back (the trim threshold stays) and stays flat with the number
# of photos. Set the same variables on your own clusters' workers (infra/ does).
WORKER_ENV = {"MALLOC_TOP_PAD_": str(32 << 20), "MALLOC_MMAP_THRESHOLD_": str(64 << 20)}
CLOSE_TIMEOUT = 30.0  # seconds a worker process may take to shut down before it is killed


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
        items: Iterable[Any],
        *,
        key: str,
        retries: int = 2,
        progress: bool = False,
        desc: str = "",
        max_in_flight: int | None = None,
    ) -> list[Any]:
        """``[func(item) for item in items]`` as Dask tasks; results in input order.

        At most ``max_in_flight`` tasks (default: 4 per worker, at least 8) are submitted at
        a time, so the scheduler's memory stays flat however many items there are; a new
        task is submitted as each one finishes. See :meth:`imap` to stream the results too.
        """
        items = list(items) if not isinstance(items, Sequence) else items
        results: list[Any] = [None] * len(items)
        for i, result in self.imap(func, items, key=key, retries=retries, progress=progress, desc=desc,
                                   max_in_flight=max_in_flight, total=len(items)):
            results[i] = result
        return results

    def imap(
        self,
        func: Callable[[Any], Any],
        items: Iterable[Any],
        *,
        key: str,
        retries: int = 2,
        progress: bool = False,
        desc: str = "",
        max_in_flight: int | None = None,
        total: int | None = None,
        ordered: bool = False,
        unit: str = "task",
    ) -> Iterator[tuple[int, Any]]:
        """Stream ``(index, func(item))`` pairs as tasks finish.

        ``items`` may be any iterable, a generator included: it is consumed only as task
        slots free up (at most ``max_in_flight`` items ahead of the results), so neither
        the items nor the results need to fit in the driver's memory at once. ``total``
        (if known) sizes the progress bar. Results come in completion order, or in input
        order with ``ordered=True`` (a slow task then holds back the ones after it).
        """
        from tqdm import tqdm

        window = max_in_flight or max(8, 4 * self.n_workers)
        # one token per call: a cluster may still run tasks of an interrupted run, and a task
        # under the same key would be taken for theirs (their result, not this task's work)
        key = f"{key}-{uuid.uuid4().hex[:8]}"
        if self.client is None:
            run = self._imap_local  # waves computed at once, yielded in input order
        else:
            run = self._imap_ordered if ordered else self._imap_distributed
        with tqdm(total=total, desc=desc, unit=unit, disable=not progress, file=sys.stderr) as bar:
            for pair in run(func, iter(items), key, retries, window):
                bar.update()
                yield pair

    def _imap_local(self, func, items, key, retries, window):
        import dask

        start = 0
        while wave := list(itertools.islice(items, window)):
            tasks = [dask.delayed(_call_boxed, pure=False)(func, _Box(item), dask_key_name=f"{key}-{start + i}")
                     for i, item in enumerate(wave)]
            del wave
            yield from enumerate(dask.compute(*tasks, scheduler=self.scheduler), start)
            start += len(tasks)

    def _imap_distributed(self, func, items, key, retries, window):
        from distributed import as_completed

        counter = itertools.count()
        index: dict[str, int] = {}

        def submit(item):
            i = next(counter)
            fut = self.client.submit(_call_boxed, func, _Box(item), key=f"{key}-{i}", retries=retries,
                                    pure=False)
            index[fut.key] = i
            return fut

        queue = as_completed([submit(item) for item in itertools.islice(items, window)])
        for fut in queue:
            result = fut.result()
            i = index.pop(fut.key)
            fut.release()
            nxt = next(items, _END)
            if nxt is not _END:
                queue.add(submit(nxt))
            yield i, result

    def _imap_ordered(self, func, items, key, retries, window):
        futures: collections.deque = collections.deque()
        for i, item in enumerate(items):
            futures.append((i, self.client.submit(_call_boxed, func, _Box(item), key=f"{key}-{i}", retries=retries,
                                    pure=False)))
            if len(futures) >= window:
                j, fut = futures.popleft()
                yield j, fut.result()
        while futures:
            j, fut = futures.popleft()
            yield j, fut.result()


_END = object()


class _Box:
    """An item that dask passes to its task as it is: without it, dask walks every list,
    tuple, dict and dataclass inside an item to look for collections (a tenth of the time
    of converting a thousand small photos)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


def _call_boxed(func: Callable[[Any], Any], box: _Box) -> Any:
    return func(box.value)


@contextmanager
def blas_limits(threads: int = 1) -> Iterator[None]:
    """Limit the BLAS library to ``threads`` threads inside the block."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=threads, user_api="blas"):
        yield


def thread_map(func: Callable[[Any], Any], items: Sequence[Any], n_jobs: int = 1) -> list[Any]:
    """``[func(item) for item in items]`` on up to ``n_jobs`` threads (results in order), with
    BLAS limited to one thread: the kernels release the GIL inside NumPy and BLAS calls."""
    with blas_limits(1):
        if n_jobs <= 1 or len(items) <= 1:
            return [func(item) for item in items]
        with ThreadPoolExecutor(max_workers=n_jobs) as pool:
            return list(pool.map(func, items))


def local_cluster(n_workers: int | None = None, **kwargs: Any):
    """A ``distributed.LocalCluster`` of single-threaded worker processes, tuned for mlrdist
    (``WORKER_ENV``); ``kwargs`` go to ``LocalCluster``."""
    import dask
    from distributed import LocalCluster

    options = dict(n_workers=n_workers or os.cpu_count() or 1, threads_per_worker=1, processes=True,
                   dashboard_address=":0")
    with dask.config.set(worker_environ()):
        return LocalCluster(**{**options, **kwargs})


def close_cluster(cluster: Any, timeout: float = CLOSE_TIMEOUT) -> None:
    """Close a ``LocalCluster`` quietly: each worker process is given ``timeout`` seconds to
    finish its own shutdown (Dask's default, 4 s, is short on a loaded machine and ends in
    "Worker process still alive ..., killing"), then the scheduler is closed."""
    import asyncio

    async def close_workers() -> None:
        await asyncio.gather(*(w.close(timeout=timeout) for w in list(cluster.workers.values())),
                             return_exceptions=True)

    try:
        cluster.sync(close_workers)
    finally:
        cluster.close(timeout=2 * timeout)


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
        with dask.config.set(worker_environ()):
            cluster = local_cluster()
            try:
                with Client(cluster) as cl:
                    log.info("Dask dashboard: %s", cl.dashboard_link)
                    yield Executor(client=cl, dashboard=cl.dashboard_link)
            finally:
                close_cluster(cluster)
        return
    if "://" not in scheduler:
        raise ValueError(
            f"scheduler must be a Dask scheduler address (e.g. tcp://host:8786) or one of "
            f"{LOCAL_SCHEDULERS}, got {scheduler!r}"
        )
    with Client(scheduler) as cl:
        log.info("Dask dashboard: %s", cl.dashboard_link)
        yield Executor(client=cl, dashboard=cl.dashboard_link)
