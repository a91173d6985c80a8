"""Run one or more settings of the TinyStories study as one sweep and write its results and report."""

import time
from collections.abc import Sequence
from pathlib import Path

from analyses.tinystories.config import TinyStoriesStudyConfig
from analyses.tinystories.jobs import plan_study
from analyses.tinystories.report import write_study_report
from analyses.tinystories.results import collect_results, study_results
from interp.config import to_dict
from interp.errors import ConfigError, FtmechError
from interp.jsonio import write_json
from interp.sweeps import run_jobs


def run_studies(
    configs: Sequence[TinyStoriesStudyConfig],
    out: Path,
    *,
    workers: int = 2,
    executor: str = "local",
    progress: bool = True,
) -> dict:
    """Run several settings as one sweep; write OUT/<setting>/results.json, OUT/results.json and OUT/report.html.

    Finished jobs are reused, so a re-run only does what is missing. A failed job is a ``ConfigError`` after
    everything else was run and written.
    """
    out.mkdir(parents=True, exist_ok=True)
    plans = [plan_study(c, out / c.name / "runs") for c in configs]
    write_json(out / "study_config.json", [to_dict(c) for c in configs])
    t0 = time.time()
    results = run_jobs(
        [j for p in plans for j in p.jobs], workers=workers, executor=executor, progress=progress
    )
    wall = time.time() - t0
    summaries = {}
    for plan in plans:
        summary = collect_results(plan, results, wall_seconds=wall)
        write_json(out / plan.config.name / "results.json", summary)
        summaries[plan.config.name] = summary
    combined = study_results(summaries, results, wall_seconds=wall, workers=workers)
    write_json(out / "results.json", combined)
    try:
        write_study_report(combined, out / "report.html")
    except FtmechError as err:
        combined["report_error"] = str(err)
        write_json(out / "results.json", combined)
    failed = [r for r in results if r.status == "failed"]
    if failed:
        first = failed[0]
        raise ConfigError(
            f"{len(failed)} job(s) failed, e.g. {first.key}: {first.error}; see {first.out_dir}"
        )
    return combined
