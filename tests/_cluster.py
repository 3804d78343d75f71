"""A real Dask cluster for tests: a ``dask scheduler`` and ``dask worker`` processes (each
with its nanny), started and stopped by PID."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def cluster_env(**extra: str) -> dict:
    """The environment of the cluster's processes: this checkout importable, BLAS on one thread."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    from mlrdist.execution import WORKER_ENV

    env.update({"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", **WORKER_ENV}, **extra)
    return env


def stop_processes(procs: list[subprocess.Popen], timeout: float = 20) -> None:
    """SIGTERM each process, wait up to ``timeout`` s, then SIGKILL its whole process group."""
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    deadline = time.monotonic() + timeout
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        try:  # the group: a nanny's worker process too
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


@dataclass
class DaskCluster:
    """Scheduler and worker (nanny) processes; ``address`` for ``Client(address)``."""

    workdir: Path
    n_workers: int = 2
    address: str = ""
    procs: list[subprocess.Popen] = field(default_factory=list)

    def _spawn(self, args: list[str], log: str) -> subprocess.Popen:
        out = open(self.workdir / log, "wb")  # noqa: SIM115 - closed with the process
        try:
            proc = subprocess.Popen([sys.executable, "-m", "dask", *args], cwd=REPO, env=cluster_env(),
                                    stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            out.close()
        self.procs.append(proc)
        return proc

    def start(self, timeout: float = 60) -> DaskCluster:
        scheduler_file = self.workdir / "scheduler.json"
        scheduler = self._spawn(["scheduler", "--host", "127.0.0.1", "--port", "0", "--dashboard-address", ":0",
                                 "--scheduler-file", str(scheduler_file)], "scheduler.log")
        deadline = time.monotonic() + timeout
        while not self.address:
            if scheduler.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"dask scheduler did not start: {self.log('scheduler.log')}")
            try:
                self.address = json.loads(scheduler_file.read_text())["address"]
            except (OSError, ValueError, KeyError):
                time.sleep(0.1)
        for i in range(self.n_workers):
            self._spawn(["worker", self.address, "--nworkers", "1", "--nthreads", "1", "--nanny",
                         "--no-dashboard", "--host", "127.0.0.1", "--death-timeout", "60",
                         "--local-directory", str(self.workdir / f"w{i}")], f"worker{i}.log")
        self.wait_for_workers(timeout=max(1.0, deadline - time.monotonic()))
        return self

    def log(self, name: str) -> str:
        return (self.workdir / name).read_text(errors="replace")[-2000:]

    def wait_for_workers(self, client=None, timeout: float = 60) -> None:
        """Until the scheduler has ``n_workers`` workers (a killed one is restarted by its nanny)."""
        from distributed import Client

        if client is None:
            with Client(self.address, timeout=timeout) as own:
                own.wait_for_workers(self.n_workers, timeout=timeout)
        else:
            client.wait_for_workers(self.n_workers, timeout=timeout)
        for proc in self.procs:
            if proc.poll() is not None:
                raise RuntimeError(f"a cluster process exited with {proc.returncode}")

    @staticmethod
    def worker_pids(client) -> dict[str, int]:
        """``{worker address: PID}`` of the worker processes themselves (not their nannies)."""
        return client.run(os.getpid)

    def stop(self) -> None:
        workers, scheduler = self.procs[1:], self.procs[:1]
        stop_processes(workers)
        stop_processes(scheduler)
