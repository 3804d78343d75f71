"""Executor.map / imap: input order, streaming consumption of generators, on Dask's local
schedulers and on a real distributed LocalCluster."""

from __future__ import annotations

import time

import pytest

from mlrdist.execution import Executor


def _double(x: int) -> int:
    time.sleep(0.002 * (x % 3))  # finish out of order on parallel back-ends
    return 2 * x


class Counting:
    """An iterable that records how many items were taken from it."""

    def __init__(self, n: int):
        self.n, self.taken = n, 0

    def __iter__(self):
        for i in range(self.n):
            self.taken += 1
            yield i


@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=":0") as cluster, distributed.Client(cluster) as cl:
        yield cl


@pytest.fixture(params=["synchronous", "threads", "distributed"])
def executor(request):
    if request.param == "distributed":
        return Executor(client=request.getfixturevalue("client"))
    return Executor(scheduler=request.param)


def test_map_keeps_input_order(executor):
    assert executor.map(_double, range(37), key="t-map", max_in_flight=5) == [2 * i for i in range(37)]
    assert executor.map(_double, [], key="t-empty") == []


def test_imap_consumes_a_generator_only_as_slots_free(executor):
    items = Counting(50)
    seen = {}
    for i, result in executor.imap(_double, items, key="t-imap", max_in_flight=4):
        # never more than the window ahead of the results (plus the one submitted as this finished)
        assert items.taken - len(seen) <= 4 + 1
        seen[i] = result
    assert items.taken == 50
    assert seen == {i: 2 * i for i in range(50)}


def test_imap_reports_the_task_error(executor):
    def boom(x):
        if x == 3:
            raise ValueError("bad item 3")
        return x

    with pytest.raises(ValueError, match="bad item 3"):
        list(executor.imap(boom, range(6), key="t-err", retries=0, max_in_flight=2))
