"""Where a sweep's jobs run: ``execute_job`` runs one job in a worker process, and a backend places jobs on
workers.

- ``LocalBackend`` on a CPU keeps one single-thread process per core (``workers`` of them). Given a per-job GPU
  fraction f it packs floor(1 / f) worker processes onto each visible GPU instead, each process pinned to its GPU
  by ``CUDA_VISIBLE_DEVICES`` (so ``cuda`` in the job is that GPU), since one small job uses a few percent of a
  card.
- ``RayBackend`` asks Ray for one CPU and f of a GPU per job (Ray's fractional ``num_gpus``; Ray pins the GPU),
  on a local instance of ``workers`` CPUs or on the cluster at an address, whose resources then decide how many
  jobs run at once.

Placement never changes a result: jobs are deterministic functions of their kwargs.
"""

import importlib
import json
import math
import multiprocessing
import os
import socket
import sys
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import forkserver, get_context
from multiprocessing.context import BaseContext
from pathlib import Path
from typing import Any

from interp.arguments import ray_host_port
from interp.atomic_files import atomic_write_text
from interp.errors import ConfigError

DONE = "DONE"
RUNNING = "RUNNING"
ERROR_LOG = "error.log"
RAY_MISSING = "--executor ray needs the ray extra: pip install 'ftmech[ray]'"
PRELOAD = ("interp.models",)  # torch, TransformerLens and the model module: most of any job's imports


def check_gpu_fraction(gpus_per_job: float | None) -> None:
    """ConfigError unless ``gpus_per_job`` is None or a number in (0, 1]."""
    if gpus_per_job is None:
        return
    if isinstance(gpus_per_job, bool) or not isinstance(gpus_per_job, (int, float)):
        raise ConfigError(
            f"gpus_per_job must be a number in (0, 1], got {gpus_per_job!r}; e.g. --gpus-per-job 0.25"
        )
    if not 0 < gpus_per_job <= 1:
        raise ConfigError(f"gpus_per_job must be in (0, 1], got {gpus_per_job}; e.g. --gpus-per-job 0.25")


def jobs_per_gpu(gpus_per_job: float) -> int:
    """How many jobs asking for ``gpus_per_job`` of a GPU share one GPU: floor(1 / gpus_per_job)."""
    check_gpu_fraction(gpus_per_job)
    return math.floor(1 / gpus_per_job + 1e-9)  # 1 / 0.1 is 10, not 9.999...


def visible_gpus() -> list[str]:
    """The GPUs this process may use, as ``CUDA_VISIBLE_DEVICES`` names them (indices or UUIDs)."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        names = [name.strip() for name in listed.split(",") if name.strip()]
        return [] if names[:1] == ["-1"] else names
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


def worker_groups(workers: int, gpus_per_job: float | None, gpus: list[str]) -> list[tuple[str | None, int]]:
    """The local worker pools as (GPU or None, processes): floor(1 / gpus_per_job) per GPU in ``gpus``, or
    ``workers`` CPU processes when no fraction is given or no GPU is visible."""
    if gpus_per_job is None or not gpus:
        return [(None, workers)]
    return [(gpu, jobs_per_gpu(gpus_per_job)) for gpu in gpus]


def describe_groups(groups: list[tuple[str | None, int]], threads: int, gpus_per_job: float | None) -> str:
    """One line saying where ``worker_groups``'s pools run jobs."""
    total = sum(n for _, n in groups)
    if groups[0][0] is None:
        unused = "; no GPU visible, so the GPU fraction is unused" if gpus_per_job is not None else ""
        return f"{total} worker process(es), {threads} torch thread(s) each{unused}"
    gpus = ", ".join(str(gpu) for gpu, _ in groups)
    return f"{total} worker processes: {groups[0][1]} per GPU ({gpus_per_job} GPU each) on GPU(s) {gpus}"


def execute_job(job: dict[str, Any], threads: int, sys_path: list[str]) -> dict[str, Any]:
    """Run one job in a worker: set threads, import and call the function, write DONE last.

    Returns the fields of a JobResult (status, wall_s, value or error); never raises for job errors,
    so that one failure cannot take the pool down.
    """
    for entry in reversed(sys_path):  # Ray workers do not inherit the driver's sys.path
        if entry not in sys.path:
            sys.path.insert(0, entry)
    from interp.runtime import set_threads

    set_threads(threads)
    start = time.perf_counter()
    out_dir = Path(job["out_dir"])
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / ERROR_LOG).unlink(missing_ok=True)
        atomic_write_text(out_dir / RUNNING, json.dumps({"pid": os.getpid(), "started": time.time()}) + "\n")
        module_name, _, fn_name = job["fn"].partition(":")
        fn = getattr(importlib.import_module(module_name), fn_name)
        value = fn(out_dir=out_dir, **job["kwargs"], **job.get("runtime", {}))
        wall_s = time.perf_counter() - start
        try:
            text = json.dumps({**job, "wall_s": wall_s, "value": value}, indent=2, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"{job['fn']} returned a value that is not JSON-native ({exc}); "
                "return numbers, strings, lists or dicts, or None and write results to out_dir"
            ) from None
        atomic_write_text(out_dir / DONE, text + "\n")
        (out_dir / RUNNING).unlink(missing_ok=True)
        return {"status": "ok", "wall_s": wall_s, "value": json.loads(text)["value"]}
    except Exception as exc:
        trace = traceback.format_exc()
        log = None
        try:
            atomic_write_text(out_dir / ERROR_LOG, trace)
            (out_dir / RUNNING).unlink(missing_ok=True)
            log = str(out_dir / ERROR_LOG)
        except OSError:
            pass  # the out_dir itself is unwritable: the traceback still travels in the result
        return {
            "status": "failed",
            "wall_s": time.perf_counter() - start,
            "error": f"{type(exc).__name__}: {exc}".splitlines()[0],
            "traceback": trace,
            "log": log,
        }


def worker_context() -> BaseContext:
    """How local worker processes start: forked from a server process that has imported ``PRELOAD`` once, so
    a new worker is ready at once where a spawned one would import torch and TransformerLens itself (seconds
    per worker); spawn where the OS has no forkserver. Either way a worker holds no torch state of the
    parent's."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return get_context("spawn")
    context = get_context("forkserver")
    context.set_forkserver_preload(list(PRELOAD))
    return context


def start_worker_server() -> None:
    """Start ``worker_context``'s server now, so that its imports overlap the caller's own (the command line
    calls this before it imports a study); a no-op without a forkserver or when it is running."""
    if worker_context().get_start_method() == "forkserver":
        forkserver.ensure_running()


def _init_worker(environ: dict[str, str], gpu: str | None) -> None:
    """A local worker's initializer: the environment of the process that made the pool (a forked worker
    would otherwise have its server's, taken when the server started), and, given ``gpu``, only that GPU
    visible (set before anything starts CUDA)."""
    os.environ.clear()
    os.environ.update(environ)
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu


class Backend:
    """Submits jobs (``Job.to_json()``) to workers and hands back finished ones as (handle, JobResult fields).

    ``slots``: how many jobs may run at once (None: as many as the backend's own resources allow);
    ``placement``: one line saying where jobs run.
    """

    slots: int | None
    placement: str

    def submit(self, job: dict[str, Any]) -> Any:
        raise NotImplementedError

    def wait(self, handles: list[Any]) -> list[tuple[Any, dict[str, Any]]]:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class LocalBackend(Backend):
    """``ProcessPoolExecutor``s of ``worker_context``'s processes: one pool of
    ``workers`` processes, or, with ``gpus_per_job`` and GPUs visible, one pool of floor(1 / f) processes per GPU.
    """

    def __init__(self, workers: int, threads: int, gpus_per_job: float | None = None) -> None:
        self.threads = threads
        gpus = visible_gpus() if gpus_per_job is not None else []
        self.groups = worker_groups(workers, gpus_per_job, gpus)
        self.placement = describe_groups(self.groups, threads, gpus_per_job)
        self.slots = sum(n for _, n in self.groups)
        self.pools = [self._new_pool(i) for i in range(len(self.groups))]
        self.running = [0] * len(self.groups)
        self.pool_of: dict[Future, int] = {}

    def _new_pool(self, index: int) -> ProcessPoolExecutor:
        gpu, n = self.groups[index]
        return ProcessPoolExecutor(
            max_workers=n,
            mp_context=worker_context(),
            initializer=_init_worker,
            initargs=(dict(os.environ), gpu),
        )

    def submit(self, job: dict[str, Any]) -> Future:
        index = min(range(len(self.pools)), key=lambda i: self.running[i])  # the least-loaded GPU
        future = self.pools[index].submit(execute_job, job, self.threads, list(sys.path))
        self.pool_of[future] = index
        self.running[index] += 1
        return future

    def wait(self, handles: list[Future]) -> list[tuple[Future, dict[str, Any]]]:
        done, _ = wait(handles, return_when=FIRST_COMPLETED)
        finished = []
        broken: set[int] = set()
        for future in done:
            index = self.pool_of.pop(future)
            self.running[index] -= 1
            try:
                finished.append((future, future.result()))
            except BrokenProcessPool:
                broken.add(index)
                error = (
                    "worker process died (killed, out of memory or a crash in native code); every job "
                    "running at that moment is marked failed; re-run the sweep to retry them"
                )
                finished.append((future, {"status": "failed", "error": error}))
            except Exception as exc:  # e.g. the job could not be sent to the worker
                finished.append((future, {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}))
        for index in broken:
            self.pools[index].shutdown(wait=False, cancel_futures=True)
            self.pools[index] = self._new_pool(index)
        return finished

    def close(self) -> None:
        for pool in self.pools:
            pool.shutdown(wait=True, cancel_futures=True)


def check_ray_address(address: str | None) -> None:
    """A ConfigError at once when nothing listens at a ``HOST:PORT`` (or ``ray://HOST:PORT``) Ray address:
    ``ray.init`` would retry it for minutes. ``auto`` and no address are Ray's to resolve."""
    address = address or os.environ.get("RAY_ADDRESS")
    if not address or address == "auto":
        return
    host_port = ray_host_port(address)
    if host_port is None:
        raise ConfigError(f"the Ray address {address!r} is not auto, HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection(host_port, timeout=5).close()
    except OSError as exc:
        raise ConfigError(
            f"nothing answers at the Ray address {address} ({getattr(exc, 'strerror', None) or exc}); start the cluster "
            "(`ray start --head`) or check --ray-address and $RAY_ADDRESS"
        ) from None


class RayBackend(Backend):
    """Ray tasks with one CPU and ``gpus_per_job`` GPU each; a local instance of ``workers`` CPUs unless
    ``address`` (or ``$RAY_ADDRESS``) names a running cluster to join."""

    def __init__(
        self, workers: int, threads: int, gpus_per_job: float | None = None, address: str | None = None
    ) -> None:
        try:
            import ray
        except ImportError:
            raise ConfigError(RAY_MISSING) from None
        self.ray, self.threads = ray, threads
        address = address or os.environ.get("RAY_ADDRESS")
        self.started = not ray.is_initialized()
        if self.started:
            env = {"env_vars": {"OMP_NUM_THREADS": str(threads), "FTMECH_THREADS": str(threads)}}
            try:
                if address:
                    ray.init(address=address, runtime_env=env)
                else:
                    ray.init(num_cpus=workers, include_dashboard=False, runtime_env=env)
            except (ConnectionError, ValueError, RuntimeError, TimeoutError) as exc:
                where = f"join the Ray cluster at {address}" if address else "start a local Ray instance"
                reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise ConfigError(f"cannot {where}: {reason}") from None
        gpus = gpus_per_job or 0
        self.remote = ray.remote(num_cpus=1, num_gpus=gpus, max_retries=0)(execute_job)
        self.slots = None
        where = f"the Ray cluster at {address}" if address else f"a local Ray instance of {workers} CPU(s)"
        self.placement = f"Ray tasks of 1 CPU and {gpus} GPU each on {where}"

    def submit(self, job: dict[str, Any]) -> Any:
        return self.remote.remote(job, self.threads, list(sys.path))

    def wait(self, handles: list[Any]) -> list[tuple[Any, dict[str, Any]]]:
        ready, _ = self.ray.wait(handles, num_returns=1)
        finished = []
        for ref in ready:
            try:
                finished.append((ref, self.ray.get(ref)))
            except self.ray.exceptions.RayError as exc:  # the worker died or the task could not run
                error = f"{type(exc).__name__}: {exc}".splitlines()[0]
                finished.append((ref, {"status": "failed", "error": error}))
        return finished

    def close(self) -> None:
        if self.started:
            self.ray.shutdown()
