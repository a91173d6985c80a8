"""A study's sweep run end to end: claim the output directory, plan and run the jobs, summarise, write.

Every study (and the audit benchmark) runs the same way; only its plan, summary and files differ, so those
are what a study passes to ``run_study_sweep``. The sweep's flags are ``study_flags`` and ``SweepOptions``.
"""

import argparse
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from interp.arguments import sweep_flags
from interp.jsonio import write_json
from interp.run_dirs import claim_output
from interp.sweeps import EXECUTORS, Job, JobResult, raise_failures, run_jobs

P = TypeVar("P")


@dataclass(frozen=True)
class SweepOptions:
    """How a sweep runs (workers, executor, progress lines) and how it treats ``--out`` (``interp.run_dirs``)."""

    workers: int = 2
    executor: str = "local"
    progress: bool = True
    overwrite: bool = False
    resume: bool = False

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "SweepOptions":
        """The options given by the flags of ``study_flags``."""
        return cls(
            workers=args.workers,
            executor=args.executor,
            progress=not args.no_progress,
            overwrite=args.overwrite,
            resume=args.resume,
        )


def study_flags(p: argparse.ArgumentParser, *, default_out: str, what: str = "study") -> None:
    """The flags of ``SweepOptions``: ``--out``, ``--overwrite``, ``--resume``, ``--workers``, ``--executor``
    and ``--no-progress``."""
    sweep_flags(p, default_out=default_out, what=what)
    p.add_argument("--executor", default="local", choices=EXECUTORS, help="local processes or ray")
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
    config: Any  # JSON-native: the fingerprint's config, written to ``config_file``
    plan: Callable[[], P]
    jobs: Callable[[P], Sequence[Job]]
    summarise: Callable[[P, list[JobResult], float], dict[str, Any]]
    report: Callable[[dict[str, Any], Path], None]
    config_file: str = "study_config.json"
    keep_failures: bool = False  # True: failed jobs stay in the results and the next run retries them


def run_study_sweep(sweep: StudySweep[P], out: Path, options: SweepOptions | None = None) -> dict[str, Any]:
    """Run (or finish) ``sweep`` in ``out`` (``SweepOptions()`` when ``options`` is None); returns its results.

    ``out`` is claimed (``interp.run_dirs``): another run's directory is refused unless ``options.overwrite``,
    and a finished run of this config is reused without rewriting its files. Failed jobs raise a
    ``ConfigError`` once everything else was run and written (unless ``sweep.keep_failures``).
    """
    options = options or SweepOptions()
    fingerprint = {"study": sweep.study, "config": sweep.config}
    with claim_output(
        out, fingerprint, overwrite=options.overwrite, resume=options.resume, continues=True
    ) as claim:
        if not claim.done:
            write_json(out / sweep.config_file, sweep.config)
        plan = sweep.plan()
        t0 = time.time()
        results = run_jobs(
            sweep.jobs(plan), workers=options.workers, executor=options.executor, progress=options.progress
        )
        summary = sweep.summarise(plan, results, time.time() - t0)
        if not claim.done:
            write_json(out / "results.json", summary)
            sweep.report(summary, out / "report.html")
        if sweep.keep_failures:
            claim.finished = all(r.ok for r in results)
        else:
            raise_failures(results)
    return summary
