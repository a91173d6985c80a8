"""The ``ftmech`` command line: one subcommand per stage, analysis or study.

Each study package (``analyses.<study>``) contributes its stage commands (``cli.add_commands``), its
``ftmech reproduce <study>`` entry point (``cli.main``) and its report writer
(``report.write_study_report(results, path)``); ``ftmech report DIR`` dispatches on the ``study`` that
``results.json`` records. A command that writes ``--out`` runs inside ``interp.run_dirs.claim_output``: another
run's results are never clobbered (``--overwrite`` replaces them, ``--resume`` continues an unfinished run),
and a repeated command on a finished directory reports it as done. Library errors (``FtmechError``) print one line, ``ftmech: error: ...``, and exit
with code 2; anything else is a bug and keeps its traceback.
"""

import argparse
import hashlib
import importlib
import sys
from collections.abc import Sequence
from pathlib import Path

from interp.arguments import ArgParser, existing_dir
from interp.config import lookup
from interp.errors import ConfigError, FtmechError
from interp.jsonio import print_json, read_json
from interp.run_dirs import claim_output
from interp.sweep_workers import start_worker_server

STUDIES = {name: f"analyses.{name}" for name in ("pcfg", "tracr", "tinystories", "audit_bench", "gam")}
NOT_SETTINGS = ("handler", "claim_output", "out", "overwrite", "resume", "no_progress", "threads")


def _study_module(study: str, part: str):
    """``analyses.<study>.<part>`` for a known study name (a one-line error otherwise)."""
    return importlib.import_module(f"{lookup(STUDIES, study, 'study')}.{part}")


def study_parser(study: str) -> argparse.ArgumentParser:
    """The parser of ``ftmech reproduce STUDY``'s own flags."""
    return _study_module(study, "cli").build_parser()


def cmd_reproduce(args: argparse.Namespace) -> None:
    _study_module(args.study, "cli").main(args.study_args)


def cmd_report(args: argparse.Namespace) -> None:
    """Rebuild DIR/report.html from DIR/results.json, for whichever study wrote it."""
    out = Path(args.dir)
    path = out / "results.json"
    if not path.is_file():
        raise ConfigError(f"{path} does not exist; run `ftmech reproduce STUDY --out {out}` first")
    results = read_json(path)
    study = results.get("study") if isinstance(results, dict) else None
    if study not in STUDIES:
        raise ConfigError(
            f"{path} records no known study ({', '.join(STUDIES)}); it predates schema 1 or was not written "
            "by ftmech reproduce: rerun the study to rewrite it"
        )
    schema = getattr(_study_module(study, "results"), "SCHEMA_VERSION", None)
    if schema is not None and results.get("schema_version") != schema:
        raise ConfigError(
            f"{path} has {study} results schema {results.get('schema_version')!r}, and this ftmech reads schema "
            f"{schema}; rerun the study to rewrite it"
        )
    try:
        report = _study_module(study, "report").write_study_report(results, out / "report.html")
    except (KeyError, TypeError, AttributeError, IndexError) as exc:
        raise ConfigError(
            f"{path} is incomplete or not a {study} result ({type(exc).__name__}: {exc}); rerun the study to "
            "rewrite it"
        ) from None
    print_json({"report": str(report)})


def build_parser() -> argparse.ArgumentParser:
    """The whole ``ftmech`` parser: every study's stage commands, the analyses, reproduce and report."""
    from analyses import analysis_cli, audit_cli

    parser = ArgParser(prog="ftmech", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=ArgParser)
    for study in STUDIES:
        _study_module(study, "cli").add_commands(sub)
    analysis_cli.add_commands(sub)
    audit_cli.add_commands(sub)

    p = sub.add_parser("reproduce", help="run a whole study end to end and write results.json + report.html")
    p.add_argument("study", help=f"{', '.join(STUDIES)} (pcfg is the main job)")
    p.add_argument(
        "study_args", nargs=argparse.REMAINDER, help="the study's own flags (ftmech reproduce pcfg --help)"
    )
    p.set_defaults(handler=cmd_reproduce)

    p = sub.add_parser("report", help="rebuild DIR/report.html from DIR/results.json")
    p.add_argument("dir", type=existing_dir, help="a study directory written by ftmech reproduce")
    p.set_defaults(handler=cmd_report)
    return parser


def run_command(args: argparse.Namespace) -> int:
    """Run a parsed command; one that writes ``--out`` holds it (``claim_output``) while it runs."""
    if not (getattr(args, "claim_output", False) and args.out):
        return int(args.handler(args) or 0)
    settings = {k: v for k, v in vars(args).items() if k not in NOT_SETTINGS}
    if isinstance(settings.get("config"), str) and Path(settings["config"]).is_file():
        # a config file's contents are the settings, so an edited file is another run
        digest = hashlib.sha256(Path(settings["config"]).read_bytes()).hexdigest()
        settings["config"] = {"path": settings["config"], "sha256": digest}
    resume, resumable = getattr(args, "resume", False), hasattr(args, "resume")
    with claim_output(
        args.out, settings, overwrite=args.overwrite, resume=resume, resumable=resumable
    ) as claim:
        if claim.done:
            note = "this finished run is already there; nothing was written (pass --overwrite to redo it)"
            print_json({"out": args.out, "status": "done", "note": note})
            return 0
        return int(args.handler(args) or 0)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``ftmech``; returns the exit code (2 for user errors)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["reproduce"]:
        start_worker_server()  # the workers' imports then run beside this process's own (the studies')
    try:
        return run_command(build_parser().parse_args(argv))
    except FtmechError as exc:
        print(f"ftmech: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "ftmech: interrupted; rerun with --resume to continue from its last checkpoint (where it saved one) "
            "or with --overwrite to start again",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
