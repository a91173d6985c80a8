"""A sweep's plan, made without running it: its jobs per stage with their step counts, what the finished jobs
of a partial run took, and the wall time a packing is projected to take.

The projection's arithmetic, stated in every plan: a job of s steps takes s x ms_per_step, where ms_per_step
is one job's step time (data included) measured while ``slots`` jobs share the machine; ``slots`` jobs run at
once, started as their dependencies finish, the longest chain of remaining steps first (the scheduler's own
rule, ``interp.sweeps.critical_path``), so the projected wall time is that list schedule's length. With no
ms_per_step given, each stage's rate measured on its finished jobs (their wall time over their steps,
evaluation included) is used. The critical path (the longest chain of dependent jobs) is the floor no packing
goes below. Jobs without a step count or a rate (e.g. the analyses) are left out, and the plan says how many.
"""

import heapq
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from interp.errors import ConfigError
from interp.sweeps import Job, critical_path, read_done


@dataclass(frozen=True, kw_only=True)
class StagePlan:
    """One stage of a sweep (the jobs whose keys share it): counts, steps and what its finished jobs took."""

    stage: str
    jobs: int
    finished: int  # jobs with a DONE marker
    steps: int  # all its jobs' steps
    step_counts: tuple[int, ...]  # the distinct per-job step counts
    without_steps: int  # jobs with no step count
    measured_steps: int  # steps of the finished jobs
    measured_s: float  # their wall seconds

    @property
    def measured_ms_per_step(self) -> float | None:
        return 1000 * self.measured_s / self.measured_steps if self.measured_steps else None


@dataclass(frozen=True, kw_only=True)
class SweepPlan:
    """The plan of a sweep and its projected wall time on ``slots`` concurrent jobs."""

    stages: tuple[StagePlan, ...]
    slots: int
    placement: str  # where the slots are (e.g. "4 per GPU on 1 GPU")
    ms_per_step: float | None  # the per-job step time assumed; None: each stage's measured rate
    projected_jobs: int  # jobs with a duration (a step count and a rate)
    projected_steps: int  # their steps
    serial_h: float  # the projected jobs one after another
    wall_h: float  # the list schedule on `slots`
    critical_path_h: float
    remaining_wall_h: float  # the same schedule with the finished jobs taking no time

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def to_text(self) -> str:
        """The plan as a table and the projection's arithmetic, for a terminal."""
        n_jobs = sum(s.jobs for s in self.stages)
        done = sum(s.finished for s in self.stages)
        lines = [
            f"plan: {n_jobs} jobs ({done} finished) on {self.slots} slot(s): {self.placement}",
            f"{'stage':<14}{'jobs':>6}{'done':>6}  {'steps/job':<16}{'steps':>12}  measured ms/step",
        ]
        for s in self.stages:
            counts = ",".join(str(c) for c in s.step_counts)
            rate = s.measured_ms_per_step
            lines.append(
                f"{s.stage:<14}{s.jobs:>6}{s.finished:>6}  {counts or '-':<16}{s.steps:>12,}  "
                + (f"{rate:.1f} ({s.measured_steps:,} steps in {s.measured_s:,.0f} s)" if rate else "-")
            )
        if not self.projected_jobs:
            lines.append(
                "projection: none yet (no stage has a measured rate); pass --ms-per-step MS, or run some jobs "
                "and plan again"
            )
            return "\n".join(lines)
        rate = f"{self.ms_per_step:g} ms/step" if self.ms_per_step else "each stage's measured ms/step"
        lines += [
            f"projection: a job of s steps takes s x {rate} (one job's step time while {self.slots} share "
            "the machine, data included)",
            f"  serial: {self.projected_steps:,} steps = {self.serial_h:.2f} h",
            f"  wall on {self.slots} slot(s), jobs started as their dependencies finish, longest chain first: "
            f"{self.wall_h:.2f} h ({self.remaining_wall_h:.2f} h still to run)",
            f"  critical path (no packing goes below it): {self.critical_path_h:.2f} h",
        ]
        left_out = n_jobs - self.projected_jobs
        if left_out:
            lines.append(f"  not projected: {left_out} job(s) without a step count or a measured rate")
        return "\n".join(lines)


def stage_of(job: Job) -> str:
    """A job's stage: ``job.stage``, or the part of its key before the run's hash (``[prefix/]stage/hash``)."""
    if job.stage is not None:
        return job.stage
    parts = job.key.split("/")
    return parts[-2] if len(parts) > 1 else parts[0]


def plan_sweep(
    jobs: Sequence[Job], *, slots: int, placement: str = "", ms_per_step: float | None = None
) -> SweepPlan:
    """The plan of ``jobs`` on ``slots`` concurrent jobs; see the module docstring for the arithmetic."""
    if not isinstance(slots, int) or slots < 1:
        raise ConfigError(f"slots must be an integer >= 1, got {slots!r}")
    if ms_per_step is not None and not (math.isfinite(ms_per_step) and ms_per_step > 0):
        raise ConfigError(f"ms_per_step must be a number > 0, got {ms_per_step!r}; e.g. --ms-per-step 12")
    walls = {job.key: _finished_wall(job) for job in jobs}
    stages = _stages(jobs, walls)
    rates = {s.stage: ms_per_step or s.measured_ms_per_step for s in stages}
    seconds: dict[str, float | None] = {}
    for job in jobs:
        rate = rates[stage_of(job)]
        seconds[job.key] = None if job.steps is None or rate is None else job.steps * rate / 1000
    known = {k: s for k, s in seconds.items() if s is not None}
    to_run = {k: (0.0 if walls[k] is not None else s) for k, s in known.items()}
    return SweepPlan(
        stages=tuple(stages),
        slots=slots,
        placement=placement,
        ms_per_step=ms_per_step,
        projected_jobs=len(known),
        projected_steps=sum(j.steps for j in jobs if j.key in known),
        serial_h=sum(known.values()) / 3600,
        wall_h=_list_schedule(jobs, known, slots) / 3600,
        critical_path_h=max(critical_path(jobs, known).values(), default=0.0) / 3600,
        remaining_wall_h=_list_schedule(jobs, to_run, slots) / 3600,
    )


def _finished_wall(job: Job) -> float | None:
    done = read_done(job)
    return None if done is None else float(done.wall_s or 0.0)


def _stages(jobs: Sequence[Job], walls: Mapping[str, float | None]) -> list[StagePlan]:
    by_stage: dict[str, list[Job]] = {}
    for job in jobs:
        by_stage.setdefault(stage_of(job), []).append(job)
    stages = []
    for stage, members in by_stage.items():
        finished = [j for j in members if walls[j.key] is not None]
        measured = [j for j in finished if j.steps]
        stages.append(
            StagePlan(
                stage=stage,
                jobs=len(members),
                finished=len(finished),
                steps=sum(j.steps or 0 for j in members),
                step_counts=tuple(sorted({j.steps for j in members if j.steps is not None})),
                without_steps=sum(j.steps is None for j in members),
                measured_steps=sum(j.steps for j in measured),
                measured_s=sum(walls[j.key] for j in measured),
            )
        )
    return stages


def _list_schedule(jobs: Sequence[Job], seconds: Mapping[str, float], slots: int) -> float:
    """When the last job ends if each takes ``seconds[key]`` (0 when absent) and, as the sweep scheduler does,
    jobs start in ``critical_path`` order once their dependencies have finished and a slot is free."""
    finished: set[str] = set()
    running: list[tuple[float, int, str]] = []  # (end, order, key), a heap
    priority = critical_path(jobs)
    pending = list(enumerate(sorted(jobs, key=lambda job: -priority[job.key])))
    now = 0.0
    while pending or running:
        waiting = []
        for order, job in pending:
            if len(running) < slots and all(d in finished for d in job.deps):
                heapq.heappush(running, (now + seconds.get(job.key, 0.0), order, job.key))
            else:
                waiting.append((order, job))
        pending = waiting
        if not running:
            raise ConfigError("the sweep's jobs depend on each other in a cycle or on a job not in the sweep")
        now, _, key = heapq.heappop(running)
        finished.add(key)
    return now
