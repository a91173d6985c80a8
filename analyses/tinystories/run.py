"""Run one or more settings of the TinyStories study as one sweep and write its results and report."""

import time
from collections.abc import Sequence
from pathlib import Path

from analyses.tinystories.config import TinyStoriesStudyConfig
from analyses.tinystories.jobs import plan_study
from analyses.tinystories.report import write_study_report
from analyses.tinystories.results import collect_results, study_results
from interp.config import to_dict
from interp.errors import FtmechError
from interp.jsonio import write_json
from interp.run_dirs import claim_output
from interp.sweeps import raise_failures, run_jobs


def run_studies(
    configs: Sequence[TinyStoriesStudyConfig],
    out: Path,
    *,
    workers: int = 2,
    executor: str = "local",
    progress: bool = True,
    overwrite: bool = False,
    resume: bool = False,
) -> dict:
    """Run several settings as one sweep; write OUT/<setting>/results.json, OUT/results.json and OUT/report.html.

    Finished jobs are reused, so a re-run only does what is missing; a finished study of the same configs is
    left byte for byte. ``out`` is claimed (``interp.run_dirs``): another study's directory is refused unless
    ``overwrite``. A failed job is a ``ConfigError`` after everything else was run and written.
    """
    fingerprint = {"study": "tinystories", "config": [to_dict(c) for c in configs]}
    with claim_output(out, fingerprint, overwrite=overwrite, resume=resume, continues=True) as claim:
        plans = [plan_study(c, out / c.name / "runs") for c in configs]
        t0 = time.time()
        results = run_jobs(
            [j for p in plans for j in p.jobs], workers=workers, executor=executor, progress=progress
        )
        wall = time.time() - t0
        summaries = {plan.config.name: collect_results(plan, results, wall_seconds=wall) for plan in plans}
        combined = study_results(summaries, results, wall_seconds=wall, workers=workers)
        if not claim.done:
            _write(out, configs, summaries, combined)
        raise_failures(results)
    return combined


def _write(out: Path, configs: Sequence[TinyStoriesStudyConfig], summaries: dict, combined: dict) -> None:
    """The study's config, each setting's results, the combined results and the report."""
    write_json(out / "study_config.json", [to_dict(c) for c in configs])
    for name, summary in summaries.items():
        write_json(out / name / "results.json", summary)
    write_json(out / "results.json", combined)
    try:
        write_study_report(combined, out / "report.html")
    except FtmechError as err:
        combined["report_error"] = str(err)
        write_json(out / "results.json", combined)
