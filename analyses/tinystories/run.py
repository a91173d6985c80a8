"""Run one or more settings of the TinyStories study as one sweep and write its results and report."""

from collections.abc import Sequence
from pathlib import Path

from analyses.tinystories.config import TinyStoriesStudyConfig
from analyses.tinystories.jobs import Plan, plan_study
from analyses.tinystories.report import write_study_report
from analyses.tinystories.results import STUDY, collect_results, study_results
from interp.config import to_dict
from interp.errors import FtmechError
from interp.jsonio import write_json
from interp.study_runs import StudySweep, SweepOptions, run_study_sweep
from interp.sweeps import JobResult


def run_studies(
    configs: Sequence[TinyStoriesStudyConfig], out: Path, options: SweepOptions | None = None
) -> dict:
    """Run several settings as one sweep (``interp.study_runs``); write OUT/<setting>/results.json,
    OUT/results.json and OUT/report.html.

    A failed job is a ``ConfigError`` after everything else was run and written; a report that cannot be
    drawn is recorded in results.json as ``report_error``.
    """
    options = options or SweepOptions()

    def summarise(plans: list[Plan], results: list[JobResult], wall: float) -> dict:
        summaries = {plan.config.name: collect_results(plan, results, wall_seconds=wall) for plan in plans}
        return study_results(summaries, results, wall_seconds=wall, workers=options.workers)

    sweep = StudySweep(
        STUDY,
        [to_dict(c) for c in configs],
        plan=lambda: [plan_study(c, out / c.name / "runs") for c in configs],
        jobs=lambda plans: [job for plan in plans for job in plan.jobs],
        summarise=summarise,
        report=lambda combined, path: _write_settings_and_report(out, combined, path),
    )
    return run_study_sweep(sweep, out, options)


def _write_settings_and_report(out: Path, combined: dict, path: Path) -> None:
    """Each setting's results.json beside its runs, then the report."""
    for name, summary in combined["settings"].items():
        write_json(out / name / "results.json", summary)
    try:
        write_study_report(combined, path)
    except FtmechError as err:
        combined["report_error"] = str(err)
        write_json(out / "results.json", combined)
