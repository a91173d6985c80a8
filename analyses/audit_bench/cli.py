"""``ftmech audit-bench`` (also ``ftmech reproduce audit_bench``): run the benchmark, write results and report."""

import argparse
import dataclasses
from collections.abc import Sequence
from pathlib import Path

from analyses.audit_bench.config import PRESETS, AuditBenchConfig
from analyses.audit_bench.jobs import plan
from analyses.audit_bench.report import write_study_report
from analyses.audit_bench.results import STUDY, collect
from interp.arguments import ArgParser, existing_file, positive_int
from interp.config import load_config, lookup, to_dict
from interp.jsonio import print_json
from interp.study_runs import StudySweep, SweepOptions, run_study_sweep, study_flags


def run_bench(config: AuditBenchConfig, out: Path, options: SweepOptions | None = None) -> dict:
    """Run (or finish) the benchmark in ``out`` (``interp.study_runs``); write results.json and report.html."""
    sweep = StudySweep(
        STUDY,
        to_dict(config),
        plan=lambda: plan(config, out / "runs"),
        jobs=lambda planned: planned[0],
        summarise=lambda planned, done, wall: collect(config, planned[1], done, wall_seconds=wall),
        report=write_study_report,
        config_file="bench_config.json",
    )
    return run_study_sweep(sweep, out, options)


def _add_flags(p: argparse.ArgumentParser) -> None:
    study_flags(p, default_out="runs/audit_bench", what="benchmark")
    p.add_argument("--preset", default="cpu", help=f"one of {', '.join(PRESETS)}")
    p.add_argument(
        "--config", type=existing_file, help="an AuditBenchConfig JSON/YAML file (overrides --preset)"
    )
    p.add_argument("--seeds", type=positive_int, help="use seeds 0..N-1")


def _run(args: argparse.Namespace) -> dict:
    config = (
        load_config(AuditBenchConfig, args.config) if args.config else lookup(PRESETS, args.preset, "preset")
    )
    if args.seeds is not None:
        config = dataclasses.replace(config, seeds=tuple(range(args.seeds)))
    results = run_bench(config, Path(args.out), SweepOptions.from_args(args))
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
