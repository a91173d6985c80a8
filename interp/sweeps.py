"""Sweeps: grid expansion, content-addressed run directories, and a job runner (local processes or Ray).

A sweep is a list of ``Job``s. Each names a top-level function as ``"module:function"``, its JSON-native
keyword arguments and its own output directory. ``run_jobs`` calls ``fn(out_dir=Path(out_dir), **kwargs)``
in a worker process once every job in ``deps`` has finished, then writes a ``DONE`` marker atomically
as the job's last act. A re-run skips every job whose marker is there, so a killed sweep redoes only
what is missing; a job whose ``RUNNING`` marker outlived its worker (killed mid-job) is re-run and the
log says so. A failure is recorded with its message and its traceback in ``<out_dir>/error.log``; the
jobs that depend on it are skipped, the others go on, and the caller reads the ``JobResult``s (or calls
``raise_failures``) to decide what to do.

Jobs must be deterministic functions of their kwargs: the local pool and Ray then give the same files,
whatever the placement (``interp.sweep_workers``: one-thread processes per CPU core, several jobs packed on
each GPU, or a Ray cluster). ``interp.sweep_plan`` projects a sweep's wall time from its jobs' step counts.
"""

import dataclasses
import hashlib
import itertools
import json
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from graphlib import CycleError, TopologicalSorter
from pathlib import Path
from typing import Any, Literal

from interp.atomic_files import atomic_write_text
from interp.config import config_hash, to_dict
from interp.errors import ConfigError
from interp.sweep_workers import (
    DONE,
    RUNNING,
    Backend,
    LocalBackend,
    RayBackend,
    check_gpu_fraction,
)

JOB_JSON = "job.json"
ROOT = "<root>"  # how a job's identity writes its sweep's root directory (`rooted`)
EXECUTORS = ("local", "ray")

Status = Literal["ok", "cached", "failed", "skipped"]


def expand_grid(axes: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every combination of the axes' values, the first axis varying slowest (``itertools.product`` order)."""
    for name, values in axes.items():
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
            raise ConfigError(
                f"grid axis '{name}' must be a list of values, got {values!r}; write e.g. {{'{name}': [...]}}"
            )
        if len(values) == 0:
            raise ConfigError(f"grid axis '{name}' is empty; give it at least one value or drop it")
    names = list(axes)
    return [dict(zip(names, point, strict=True)) for point in itertools.product(*axes.values())]


def run_dir(root: str | Path, stage: str, config: Any) -> Path:
    """``root/stage/<hash of config>``, created, with the resolved config in ``job.json``.

    ``config`` is a frozen config dataclass (hashed with ``interp.config.config_hash``) or a JSON-native
    dict (hashed the same way, so a config and its ``to_dict`` share a directory). Equal configs give the
    same directory, which is what lets a re-run find finished work.
    """
    if not stage or "/" in stage or "\\" in stage or stage in (".", ".."):
        raise ConfigError(f"stage {stage!r} must be a plain directory name such as 'pretrain'")
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        data, key = to_dict(config), config_hash(config)
        config_class = f"{type(config).__module__}.{type(config).__qualname__}"
    elif isinstance(config, Mapping):
        data, config_class = _json_native(dict(config), f"the {stage} config"), None
        text = json.dumps(data, sort_keys=True, separators=(",", ":"))
        key = hashlib.sha256(text.encode()).hexdigest()[:12]
    else:
        raise ConfigError(f"run_dir needs a config dataclass or a dict, got {type(config).__name__}")
    path = Path(root) / stage / key
    record = {"stage": stage, "key": key, "config_class": config_class, "config": data}
    job_json = path / JOB_JSON
    if job_json.is_file():
        existing = json.loads(job_json.read_text())
        if existing.get("config") != data:
            raise ConfigError(
                f"{job_json} holds a different config than the one hashed to {key}; "
                f"it was edited by hand or is stale: delete {path} and re-run"
            )
        return path
    path.mkdir(parents=True, exist_ok=True)
    atomic_write_text(job_json, json.dumps(record, indent=2, sort_keys=True) + "\n")
    return path


@dataclass(frozen=True, kw_only=True)
class Job:
    """One unit of a sweep: ``fn(out_dir=Path(out_dir), **kwargs)`` run in a worker process."""

    key: str  # unique within the sweep; other jobs name it in `deps`
    fn: str  # "package.module:function", a top-level function importable in a fresh process
    out_dir: str | Path  # the job's own directory (e.g. from run_dir); the DONE marker goes here
    kwargs: Mapping[str, Any] = field(default_factory=dict)  # JSON-native keyword arguments
    deps: tuple[str, ...] = ()  # keys of the jobs that must finish first
    steps: int | None = None  # optimizer steps the job takes, for the sweep's plan (not passed to fn)
    runtime: Mapping[str, Any] = field(default_factory=dict)  # JSON-native keyword arguments that change how
    # fn runs but never what it writes (e.g. data worker processes): passed to fn, left out of the identity
    # that DONE records, so a finished job is reused whatever they are
    stage: str | None = None  # the plan's stage (``interp.sweep_plan``); None: read off the key
    root: str | None = None  # the sweep's root directory: paths under it in kwargs are compared with DONE's
    # relative to it (``rooted``), so the jobs of a sweep moved elsewhere are still finished

    def __post_init__(self) -> None:
        if not isinstance(self.key, str) or not self.key:
            raise ConfigError(f"job key must be a non-empty string, got {self.key!r}")
        module, _, name = self.fn.partition(":") if isinstance(self.fn, str) else ("", "", "")
        if not module or not name.isidentifier() or not all(p.isidentifier() for p in module.split(".")):
            raise ConfigError(
                f"job '{self.key}': fn {self.fn!r} must be 'module:function', e.g. 'analyses.pcfg_study:pretrain'"
            )
        if not isinstance(self.deps, tuple) or not all(isinstance(d, str) for d in self.deps):
            raise ConfigError(f"job '{self.key}': deps must be a tuple of job keys, got {self.deps!r}")
        if self.key in self.deps:
            raise ConfigError(f"job '{self.key}' depends on itself; remove it from its deps")
        if not isinstance(self.kwargs, Mapping):
            raise ConfigError(f"job '{self.key}': kwargs must be a dict, got {type(self.kwargs).__name__}")
        if "out_dir" in self.kwargs:
            raise ConfigError(f"job '{self.key}': pass the output directory as Job.out_dir, not in kwargs")
        _json_native(dict(self.kwargs), f"job '{self.key}' kwargs")
        if not isinstance(self.runtime, Mapping) or self.runtime.keys() & {*self.kwargs, "out_dir"}:
            raise ConfigError(
                f"job '{self.key}': runtime must be a dict whose keys are not in kwargs, got {self.runtime!r}"
            )
        _json_native(dict(self.runtime), f"job '{self.key}' runtime")
        if self.stage is not None and (not isinstance(self.stage, str) or not self.stage):
            raise ConfigError(
                f"job '{self.key}': stage must be a non-empty string or None, got {self.stage!r}"
            )
        if self.steps is not None and (
            isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 0
        ):
            raise ConfigError(f"job '{self.key}': steps must be an integer >= 0 or None, got {self.steps!r}")

    def to_json(self) -> dict[str, Any]:
        """The job as JSON-native data (what a worker receives and what DONE records)."""
        return {
            "key": self.key,
            "fn": self.fn,
            "out_dir": str(self.out_dir),
            "kwargs": _json_native(dict(self.kwargs), "kwargs"),
            "deps": list(self.deps),
            "steps": self.steps,
            "runtime": _json_native(dict(self.runtime), "runtime"),
            "root": None if self.root is None else str(self.root),
        }

    def identity(self) -> dict[str, Any]:
        """What a finished run of this job must match: its function and its kwargs, paths under ``root``
        written relative to it."""
        return {"fn": self.fn, "kwargs": rooted(_json_native(dict(self.kwargs), "kwargs"), self.root)}


def rooted(value: Any, root: str | Path | None) -> Any:
    """JSON-native ``value`` with every path under ``root`` written as ``<root>/...`` (the same for any
    spelling or location of ``root``)."""
    if root is None:
        return value
    root = str(root)
    if isinstance(value, dict):
        return {k: rooted(v, root) for k, v in value.items()}
    if isinstance(value, list):
        return [rooted(v, root) for v in value]
    if isinstance(value, str) and (value == root or value.startswith(root + os.sep)):
        return ROOT + value[len(root) :]
    return value


@dataclass(frozen=True, kw_only=True)
class JobResult:
    """What happened to one job: ok (ran now), cached (DONE was there), failed, or skipped (a dep failed)."""

    key: str
    status: Status
    out_dir: str
    wall_s: float | None = None  # seconds the function ran (for cached: the original run's)
    value: Any = None  # the function's JSON-native return value (read back from DONE when cached)
    error: str | None = None  # one line for failed and skipped jobs
    traceback: str | None = None  # the worker's traceback for failed jobs
    log: str | None = None  # the file holding that traceback (failed jobs whose worker survived)

    @property
    def ok(self) -> bool:
        return self.status in ("ok", "cached")

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class Planner:
    """Builds a sweep: each job in its ``run_dir`` under ``root``, keyed ``<key_prefix><stage>/<hash>``.

    ``identity`` is hashed into every job's directory without being passed to the job (e.g. the sizes behind
    a preset name, so changed sizes never reuse old results). A job's directory hashes the paths under ``root``
    in its kwargs relative to ``root`` (``rooted``), so it does not depend on where ``root`` is or how it is
    spelt: a sweep moved elsewhere finds its finished jobs.
    """

    def __init__(
        self, root: Path, *, key_prefix: str = "", identity: Mapping[str, Any] | None = None
    ) -> None:
        self.root, self.key_prefix, self.identity = Path(root).resolve(), key_prefix, dict(identity or {})
        self.jobs: list[Job] = []
        self._keys: dict[Path, str] = {}

    def add(
        self,
        stage: str,
        fn: str,
        kwargs: dict[str, Any],
        deps: Sequence[Path] = (),
        *,
        steps: int | None = None,
        runtime: Mapping[str, Any] | None = None,
    ) -> Path:
        """Add the job ``fn`` ("module:function") to run after the jobs in the directories ``deps``, taking
        ``steps`` optimizer steps (for the plan), called with ``kwargs`` and ``runtime`` (``Job.runtime``: not
        hashed into its directory); returns its directory."""
        out = run_dir(
            self.root, stage, {**rooted(_json_native(kwargs, "kwargs"), self.root), **self.identity}
        )
        self._keys[out] = f"{self.key_prefix}{stage}/{out.name}"
        after = tuple(self._keys[d] for d in deps)
        self.jobs.append(
            Job(
                key=self._keys[out],
                fn=fn,
                out_dir=out,
                kwargs=kwargs,
                deps=after,
                steps=steps,
                runtime=dict(runtime or {}),
                root=str(self.root),
            )
        )
        return out


def run_jobs(
    jobs: Sequence[Job],
    *,
    workers: int = 1,
    executor: Literal["local", "ray"] = "local",
    threads_per_worker: int = 1,
    gpus_per_job: float | None = None,
    ray_address: str | None = None,
    progress: bool = True,
) -> list[JobResult]:
    """Run ``jobs`` in dependency order on ``workers`` processes; returns one result per job, in input order.

    Of the jobs ready to start, the one heading the longest chain of remaining work starts first (critical
    path: a job's ``steps`` plus the longest chain of its dependents; a job without ``steps`` counts as the
    sweep's longest), so long chains are not left to run alone at the end. Jobs with a valid ``DONE``
    marker are not run again (status ``cached``). A failing job does not stop the sweep: its dependents
    are ``skipped`` and every other job still runs. Each worker sets torch to ``threads_per_worker``
    threads before running a job. ``gpus_per_job`` (a fraction in (0, 1]) packs
    floor(1 / gpus_per_job) jobs onto each visible GPU instead of ``workers`` CPU processes.
    ``executor="ray"`` starts a local Ray instance with ``num_cpus=workers``, or joins the cluster at
    ``ray_address`` (or ``$RAY_ADDRESS``), and asks for ``gpus_per_job`` of a GPU per job.
    """
    _check_sweep(jobs, workers=workers, executor=executor, threads_per_worker=threads_per_worker)
    check_gpu_fraction(gpus_per_job)
    if ray_address is not None and executor != "ray":
        raise ConfigError(f"a Ray address ({ray_address}) needs executor 'ray'; add --executor ray")
    backend: Backend = (
        RayBackend(workers, threads_per_worker, gpus_per_job, ray_address)
        if executor == "ray"
        else LocalBackend(workers, threads_per_worker, gpus_per_job)
    )
    if progress:
        _log(f"sweep: {len(jobs)} job(s) on {backend.placement}")
    try:
        results = _schedule(list(jobs), backend, progress=progress)
    finally:
        backend.close()
    if progress:
        counts = {
            s: sum(r.status == s for r in results.values()) for s in ("ok", "cached", "failed", "skipped")
        }
        _log("sweep done: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    return [results[job.key] for job in jobs]


def raise_failures(results: Sequence[JobResult]) -> None:
    """A ConfigError naming the failed jobs (the first with its log), once a sweep has written what it could."""
    failed = [r for r in results if r.status == "failed"]
    if failed:
        first = failed[0]
        raise ConfigError(
            f"{len(failed)} job(s) failed, e.g. {first.key}: {first.error}; see {first.log or first.out_dir}"
        )


def _check_sweep(jobs: Sequence[Job], *, workers: int, executor: str, threads_per_worker: int) -> None:
    if executor not in EXECUTORS:
        raise ConfigError(f"unknown executor '{executor}'; use one of {', '.join(EXECUTORS)}")
    if not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers must be an integer >= 1, got {workers!r}; e.g. --workers 2")
    if not isinstance(threads_per_worker, int) or threads_per_worker < 1:
        raise ConfigError(f"threads_per_worker must be an integer >= 1, got {threads_per_worker!r}")
    keys: set[str] = set()
    out_dirs: dict[str, str] = {}
    for job in jobs:
        if not isinstance(job, Job):
            raise ConfigError(f"run_jobs takes Job objects, got {type(job).__name__}")
        if job.key in keys:
            raise ConfigError(f"job key '{job.key}' appears twice; give every job its own key")
        keys.add(job.key)
        out = os.path.abspath(job.out_dir)
        if out in out_dirs:
            raise ConfigError(
                f"jobs '{out_dirs[out]}' and '{job.key}' share out_dir {job.out_dir}; give each its own (run_dir)"
            )
        out_dirs[out] = job.key
    for job in jobs:
        for dep in job.deps:
            if dep not in keys:
                raise ConfigError(f"job '{job.key}' depends on '{dep}', which is not in the sweep")
    remaining = {job.key: set(job.deps) for job in jobs}
    while remaining:
        free = [k for k, deps in remaining.items() if not deps & remaining.keys()]
        if not free:
            raise ConfigError(f"jobs {sorted(remaining)} depend on each other in a cycle; break the cycle")
        for k in free:
            del remaining[k]


def _schedule(jobs: list[Job], backend: Backend, *, progress: bool) -> dict[str, JobResult]:
    results: dict[str, JobResult] = {}
    total = len(jobs)

    def record(result: JobResult) -> None:
        results[result.key] = result
        if progress:
            took = f" ({result.wall_s:.1f}s)" if result.wall_s is not None else ""
            why = f": {result.error}" if result.error else ""
            why += f" (traceback in {result.log})" if result.log else ""
            _log(f"sweep [{len(results)}/{total}] {result.status} {result.key}{took}{why}")

    pending: list[Job] = []
    for job in jobs:
        cached = read_done(job)
        if cached is not None:
            record(cached)
            continue
        if (Path(job.out_dir) / RUNNING).is_file():
            _log(f"sweep: re-running {job.key}: its earlier run stopped mid-job (worker killed or crashed)")
        pending.append(job)
    priority = critical_path(jobs)
    pending.sort(key=lambda job: -priority[job.key])
    in_flight: dict[Any, Job] = {}
    while pending or in_flight:
        waiting: list[Job] = []
        for job in pending:
            failed = [d for d in job.deps if d in results and not results[d].ok]
            if failed:
                error = f"not run: dependency '{failed[0]}' {results[failed[0]].status}"
                record(JobResult(key=job.key, status="skipped", out_dir=str(job.out_dir), error=error))
            elif (backend.slots is None or len(in_flight) < backend.slots) and all(
                d in results for d in job.deps
            ):
                in_flight[backend.submit(job.to_json())] = job
            else:
                waiting.append(job)
        pending = waiting
        if not in_flight:
            continue  # only skips this pass; they may have unblocked jobs listed before their deps
        for handle, outcome in backend.wait(list(in_flight)):
            job = in_flight.pop(handle)
            record(JobResult(key=job.key, out_dir=str(job.out_dir), **outcome))
    return results


def critical_path(jobs: Sequence[Job], cost: Mapping[str, float] | None = None) -> dict[str, float]:
    """Per job key: its cost plus the largest such total along any chain of jobs that depend on it, i.e. the
    work that must still follow its start. ``cost`` gives each job's cost by key (0 where absent); without it
    a job costs its ``steps``, and a job without ``steps`` the longest job's."""
    if cost is None:
        longest = max((job.steps for job in jobs if job.steps is not None), default=1)
        cost = {job.key: longest if job.steps is None else job.steps for job in jobs}
    dependents: dict[str, list[str]] = {job.key: [] for job in jobs}
    for job in jobs:
        for dep in job.deps:
            dependents.setdefault(dep, []).append(job.key)
    try:
        order = list(TopologicalSorter({job.key: job.deps for job in jobs}).static_order())
    except CycleError as exc:
        raise ConfigError(
            f"jobs {sorted(exc.args[1])} depend on each other in a cycle; break the cycle"
        ) from None
    total: dict[str, float] = {}
    for key in reversed(order):
        total[key] = cost.get(key, 0) + max((total[d] for d in dependents[key]), default=0)
    return total


def read_done(job: Job) -> JobResult | None:
    """The recorded result when ``job.out_dir/DONE`` is a finished run of this same job, else None."""
    marker = Path(job.out_dir) / DONE
    if not marker.is_file():
        return None
    try:
        done = json.loads(marker.read_text())
    except json.JSONDecodeError:
        return None  # cannot happen with atomic writes; treat as unfinished and redo it
    recorded = {"fn": done.get("fn"), "kwargs": rooted(done.get("kwargs"), done.get("root"))}
    if recorded != job.identity():
        raise ConfigError(
            f"{marker} records a different job ({done.get('fn')} with other kwargs) than '{job.key}'; "
            f"give each job its own out_dir (run_dir) or delete {job.out_dir}"
        )
    return JobResult(
        key=job.key,
        status="cached",
        out_dir=str(job.out_dir),
        wall_s=done.get("wall_s"),
        value=done.get("value"),
    )


def _json_native(value: Any, what: str) -> Any:
    """``value`` as JSON would give it back (tuples become lists); ConfigError when it is not JSON-native."""
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{what} must be JSON-native (numbers, strings, lists, dicts): {exc}") from None


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
