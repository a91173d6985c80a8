"""``ftmech reproduce gam``: GAM beside a transformer of the same size; writes results.json and report.html."""

import argparse
import dataclasses
from collections.abc import Sequence
from pathlib import Path

from analyses.gam.config import PRESETS, STUDY, GAMStudyConfig
from analyses.gam.jobs import plan_study
from analyses.gam.report import write_study_report
from analyses.gam.results import collect
from interp.arguments import ArgParser, existing_file, positive_int
from interp.config import load_config, lookup, to_dict
from interp.jsonio import print_json
from interp.study_runs import StudySweep, SweepOptions, run_study_sweep, study_flags


def run_gam_study(config: GAMStudyConfig, out: Path, options: SweepOptions | None = None) -> dict:
    """Run (or finish) the study in ``out``; write results.json and report.html."""
    sweep = StudySweep(
        STUDY,
        to_dict(config),
        plan=lambda: plan_study(config, out / "runs"),
        jobs=lambda plan: plan.planner.jobs,
        summarise=lambda plan, done, wall: collect(config, plan, done, wall_seconds=wall),
        report=write_study_report,
    )
    return run_study_sweep(sweep, out, options)


def build_parser() -> ArgParser:
    """The flags of ``ftmech reproduce gam``."""
    p = ArgParser(prog="ftmech reproduce gam", description=__doc__.splitlines()[0])
    study_flags(p, default_out="runs/gam")
    p.add_argument("--preset", default="cpu", help=f"one of {', '.join(PRESETS)}")
    p.add_argument(
        "--config", type=existing_file, help="a GAMStudyConfig JSON/YAML file (overrides --preset)"
    )
    p.add_argument("--seeds", type=positive_int, help="use seeds 0..N-1")
    p.add_argument("--corpus", choices=("auto", "shared", "synthetic"), help="language-modelling corpus")
    return p


def main(argv: Sequence[str] | None = None) -> dict:
    args: argparse.Namespace = build_parser().parse_args(argv)
    config = (
        load_config(GAMStudyConfig, args.config) if args.config else lookup(PRESETS, args.preset, "preset")
    )
    if args.seeds is not None:
        config = dataclasses.replace(config, seeds=tuple(range(args.seeds)))
    if args.corpus is not None:
        config = dataclasses.replace(config, corpus=args.corpus)
    results = run_gam_study(config, Path(args.out), SweepOptions.from_args(args))
    print_json(
        {
            "results": str(Path(args.out) / "results.json"),
            "findings": [f["outcome"] for f in results["findings"]],
        }
    )
    return results


def add_commands(sub) -> None:
    """The GAM study adds no stage commands: its models train through the PCFG stages (``--model gam_cpu``)."""
    del sub
