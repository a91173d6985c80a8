"""``ftmech audit-bench`` (also ``ftmech reproduce audit_bench``): run the benchmark, write results and report."""

import argparse
import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path

from analyses.audit_bench.config import PRESETS, AuditBenchConfig
from analyses.audit_bench.jobs import plan
from analyses.audit_bench.report import write_study_report
from analyses.audit_bench.results import collect
from interp.arguments import ArgParser, existing_file, positive_int, sweep_flags
from interp.config import load_config, lookup, to_dict
from interp.jsonio import print_json, write_json
from interp.run_dirs import claim_output
from interp.sweeps import raise_failures, run_jobs


def run_bench(
    config: AuditBenchConfig,
    out: Path,
    *,
    workers: int = 2,
    progress: bool = True,
    overwrite: bool = False,
    resume: bool = False,
) -> dict:
    """Run (or finish) the benchmark in ``out``; write results.json and report.html; return the results.

    ``out`` is claimed (``interp.run_dirs``): another study's directory is refused unless ``overwrite``, and a
    finished benchmark of this config is reused without rewriting its files.
    """
    fingerprint = {"study": "audit_bench", "config": to_dict(config)}
    with claim_output(out, fingerprint, overwrite=overwrite, resume=resume, continues=True) as claim:
        if not claim.done:
            write_json(out / "bench_config.json", to_dict(config))
        jobs, cases = plan(config, out / "runs")
        t0 = time.time()
        done = run_jobs(jobs, workers=workers, progress=progress)
        results = collect(config, cases, done, wall_seconds=time.time() - t0)
        if not claim.done:
            write_json(out / "results.json", results)
            write_study_report(results, out / "report.html")
        raise_failures(done)
    return results


def _add_flags(p: argparse.ArgumentParser) -> None:
    sweep_flags(p, default_out="runs/audit_bench", what="benchmark")
    p.add_argument("--preset", default="cpu", help=f"one of {', '.join(PRESETS)}")
    p.add_argument(
        "--config", type=existing_file, help="an AuditBenchConfig JSON/YAML file (overrides --preset)"
    )
    p.add_argument("--seeds", type=positive_int, help="use seeds 0..N-1")
    p.add_argument("--no-progress", action="store_true")


def _run(args: argparse.Namespace) -> dict:
    config = (
        load_config(AuditBenchConfig, args.config) if args.config else lookup(PRESETS, args.preset, "preset")
    )
    if args.seeds is not None:
        config = dataclasses.replace(config, seeds=tuple(range(args.seeds)))
    results = run_bench(
        config,
        Path(args.out),
        workers=args.workers,
        progress=not args.no_progress,
        overwrite=args.overwrite,
        resume=args.resume,
    )
    print_json({"results": str(Path(args.out) / "results.json"), "confusion": results["confusion"]})
    return results


def build_parser() -> ArgParser:
    """The flags of ``ftmech reproduce audit_bench``."""
    p = ArgParser(prog="ftmech reproduce audit_bench", description=__doc__.splitlines()[0])
    _add_flags(p)
    return p


def main(argv: Sequence[str] | None = None) -> dict:
    return _run(build_parser().parse_args(argv))


def add_commands(sub) -> None:
    """Add ``audit-bench``."""
    p = sub.add_parser("audit-bench", help="score the audit on model pairs whose answer is known")
    _add_flags(p)
    p.set_defaults(handler=lambda args: _run(args) and None)
