"""A study's sweep run end to end: claim the output directory, plan and run the jobs, summarise, write.

Every study (and the audit benchmark) runs the same way; only its plan, summary and files differ, so those
are what a study passes to ``run_study_sweep``. The sweep's flags are ``study_flags`` and ``SweepOptions``; with
``--plan`` the sweep is planned (``interp.sweep_plan``) and printed instead of run.
"""

import argparse
import dataclasses
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from interp.arguments import ray_address, sweep_flags
from interp.errors import ConfigError
from interp.jsonio import read_json, write_json
from interp.run_dirs import claim_output
from interp.runtime import resolve_device
from interp.sweep_plan import plan_sweep
from interp.sweep_workers import (
    check_gpu_fraction,
    check_ray_address,
    describe_groups,
    visible_gpus,
    worker_groups,
)
from interp.sweeps import EXECUTORS, Job, JobResult, raise_failures, run_jobs
from interp.training import RESUME_NEUTRAL

SWEEP_FILE = "sweep.json"  # the placement of the latest run (not part of the results' identity)
PLAN_FILE = "plan.json"
RESULTS = "results.json"  # what a finished run returns when its command is repeated

P = TypeVar("P")


@dataclass(frozen=True)
class SweepOptions:
    """How a sweep runs (workers, GPU packing, executor, progress lines), how it treats ``--out``
    (``interp.run_dirs``), and whether it is only planned. Placement never changes a job's result."""

    workers: int = 2
    executor: str = "local"
    progress: bool = True
    overwrite: bool = False
    resume: bool = False
    gpus_per_job: float | None = None  # fraction (0, 1] of a GPU per job; None: CPU workers (or one GPU each)
    ray_address: str | None = None  # a Ray cluster to join (executor "ray"); None: $RAY_ADDRESS or local
    plan: bool = False  # print and write the plan (interp.sweep_plan), run nothing
    ms_per_step: float | None = None  # the plan's per-job step time; None: measured on finished jobs

    def __post_init__(self) -> None:
        check_gpu_fraction(self.gpus_per_job)
        if self.ray_address is not None and self.executor != "ray":
            raise ConfigError(f"--ray-address {self.ray_address} needs --executor ray")
        if self.ms_per_step is not None and not self.plan:
            raise ConfigError("--ms-per-step is read only by --plan; add --plan or drop it")
        if self.plan and self.overwrite:
            raise ConfigError("--plan replaces nothing; drop --overwrite")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "SweepOptions":
        """The options given by the flags of ``study_flags``."""
        return cls(
            workers=args.workers,
            executor=args.executor,
            progress=not args.no_progress,
            overwrite=args.overwrite,
            resume=args.resume,
            gpus_per_job=args.gpus_per_job,
            ray_address=args.ray_address,
            plan=args.plan,
            ms_per_step=args.ms_per_step,
        )

    def plan_slots(self) -> tuple[int, str]:
        """The plan's concurrent jobs and where they run: the local packing (one GPU assumed where a GPU
        fraction is given but none is visible), or ``workers`` for Ray."""
        if self.executor == "ray":
            return self.workers, f"{self.workers} Ray task(s) at once (--workers)"
        gpus = visible_gpus() if self.gpus_per_job is not None else []
        groups = worker_groups(self.workers, self.gpus_per_job, gpus or ["0"])
        where = describe_groups(groups, 1, self.gpus_per_job)
        if self.gpus_per_job is not None and not gpus:
            where += " (no GPU visible here: planned for one)"
        return sum(n for _, n in groups), where


def study_flags(p: argparse.ArgumentParser, *, default_out: str, what: str = "study") -> None:
    """The flags of ``SweepOptions``: ``--out``, ``--overwrite``, ``--resume``, ``--workers``, ``--gpus-per-job``,
    ``--plan``, ``--ms-per-step``, ``--executor``, ``--ray-address`` and ``--no-progress``."""
    sweep_flags(p, default_out=default_out, what=what)
    p.add_argument("--executor", default="local", choices=EXECUTORS, help="local processes or ray")
    p.add_argument(
        "--ray-address",
        type=ray_address,
        help="join the running Ray cluster at HOST:PORT, ray://HOST:PORT or auto (with --executor ray)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress lines")


@dataclass(frozen=True)
class StudySweep(Generic[P]):
    """What one study's run consists of.

    ``plan`` is called once ``--out`` is claimed (planning creates the job directories) and returns the plan
    that ``jobs`` reads the sweep from and ``summarise(plan, results, wall_seconds)`` turns into the results.
    Unless this finished run was already there, they are written to ``results.json`` and ``report`` writes
    ``report.html`` from them.
    """

    study: str  # the study's name in the directory's fingerprint
    config: dict[str, Any] | list[dict[str, Any]]  # JSON-native (one per setting where a study runs several):
    # the fingerprint's config, written to ``config_file``
    plan: Callable[[], P]
    jobs: Callable[[P], Sequence[Job]]
    summarise: Callable[[P, list[JobResult], float], dict[str, Any]]
    report: Callable[[dict[str, Any], Path], None]
    config_file: str = "study_config.json"
    keep_failures: bool = False  # True: failed jobs are in the results and report, the command still fails
    # (ConfigError) and the next run retries them


def _identity(config: Any) -> Any:
    """``config`` without the settings that never change a result (``RESUME_NEUTRAL``, at any depth): what
    the output directory's fingerprint compares, so a run may be finished with another data worker count."""
    if isinstance(config, dict):
        return {k: _identity(v) for k, v in config.items() if k not in RESUME_NEUTRAL}
    if isinstance(config, list):
        return [_identity(v) for v in config]
    return config


def _check_device(device: str | None, executor: str) -> None:
    """An unknown device, or CUDA where none is visible, is refused before any job runs (a Ray cluster's
    GPUs are on its workers, so there only the name is checked)."""
    if device is None:
        return
    if executor == "ray" and device.startswith("cuda"):
        return
    resolve_device(device)


def run_study_sweep(sweep: StudySweep[P], out: Path, options: SweepOptions | None = None) -> dict[str, Any]:
    """Run (or finish) ``sweep`` in ``out`` (``SweepOptions()`` when ``options`` is None); returns its results.

    ``out`` is claimed (``interp.run_dirs``): another run's directory is refused unless ``options.overwrite``,
    and a finished run of this config returns its recorded results without running or writing anything (a
    data worker count is not part of a run's identity). Failed jobs raise a ``ConfigError`` once everything else
    was run and written, and the run stays unfinished (``sweep.keep_failures``: after the results and report,
    which record them).

    With ``options.plan`` nothing runs: the plan is printed, written to ``plan.json`` (beside the job
    directories that planning makes, which a later run reuses) and the process exits with code 0, as ``--help``.
    """
    options = options or SweepOptions()
    for config in sweep.config if isinstance(sweep.config, list) else [sweep.config]:
        _check_device(config.get("device"), options.executor)
    if options.executor == "ray" and not options.plan:
        check_ray_address(options.ray_address)
    fingerprint = {"study": sweep.study, "config": _identity(sweep.config)}
    with claim_output(
        out, fingerprint, overwrite=options.overwrite, resume=options.resume, continues=True
    ) as claim:
        if claim.done and (out / RESULTS).is_file() and not options.plan:
            note = (
                f"{out} holds this finished study; nothing was run or written (pass --overwrite to redo it)"
            )
            print(f"ftmech: note: {note}", file=sys.stderr)
            return read_json(out / RESULTS)
        if not claim.done:
            write_json(out / sweep.config_file, sweep.config)
        plan = sweep.plan()
        jobs = sweep.jobs(plan)
        if options.plan:
            claim.finished = False  # a later run continues this directory
            slots, where = options.plan_slots()
            planned = plan_sweep(jobs, slots=slots, placement=where, ms_per_step=options.ms_per_step)
            write_json(out / PLAN_FILE, planned.to_json())
        else:
            if not claim.done:
                write_json(out / SWEEP_FILE, dataclasses.asdict(options))
            t0 = time.time()
            results = run_jobs(
                jobs,
                workers=options.workers,
                executor=options.executor,
                gpus_per_job=options.gpus_per_job,
                ray_address=options.ray_address,
                progress=options.progress,
            )
            summary = sweep.summarise(plan, results, time.time() - t0)
            if not claim.done:
                write_json(out / RESULTS, summary)
            if not sweep.keep_failures:
                raise_failures(results)  # before the report, which may have nothing to draw
            if not claim.done:
                sweep.report(summary, out / "report.html")
            raise_failures(
                results
            )  # kept failures are in the results and report; the run is still unfinished
    if options.plan:
        print(planned.to_text())
        sys.exit(0)
    return summary
