"""The Tracr study on the command line: ``ftmech reproduce tracr`` and the stages one at a time
(``ftmech tracr compile|finetune|analyse``).

Flags are config field names in kebab case; library errors are ``FtmechError``s, which ``ftmech`` prints as
one line with exit code 2.
"""

import argparse
import importlib.util
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from analyses.tracr.config import PRESETS, TracrStudyConfig
from analyses.tracr.jobs import run_study
from interp.arguments import (
    ArgParser,
    comma_list,
    existing_dir,
    existing_file,
    fraction,
    non_negative_float,
    non_negative_int,
    output_flags,
    positive_float,
    positive_int,
    random_seed,
)
from interp.config import from_dict, load_config, lookup, to_dict
from interp.errors import ConfigError
from interp.jsonio import print_json, read_json
from interp.lr_levels import COMPILED_LEVELS
from interp.study_runs import SweepOptions, study_flags
from procedural_tasks.tracr_analysis import ANALYSIS, TracrAnalysisConfig, analyse_finetuned
from procedural_tasks.tracr_batches import eval_name
from procedural_tasks.tracr_finetuning import TracrFinetuneConfig, finetune_lr, run_finetune, sgd_train_config
from procedural_tasks.tracr_preparation import STUDY_NOISE_STD
from procedural_tasks.tracr_programs import PROGRAMS

TRACR_MISSING = (
    "ftmech tracr compile needs tracr and JAX, which are not installed; install the extra "
    "(pip install 'ftmech[tracr]') or use the precompiled weights shipped in procedural_tasks/tracr_weights"
)
COMPILE_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "compile_tracr.py"


def _clip_or_none(text: str) -> float | None:
    """A gradient-norm clip (a number > 0), or ``none``/``off`` for no clipping."""
    return None if text.lower() in ("none", "off") else positive_float(text)


def cmd_compile(args: argparse.Namespace) -> None:
    """Compile the RASP programs with tracr and write the weights (scripts/compile_tracr.py's logic)."""
    if importlib.util.find_spec("tracr") is None or importlib.util.find_spec("jax") is None:
        raise ConfigError(TRACR_MISSING)
    if not COMPILE_SCRIPT.is_file():
        raise ConfigError(f"{COMPILE_SCRIPT} is missing; compiling needs a source checkout of ftmech")
    spec = importlib.util.spec_from_file_location("ftmech_compile_tracr", COMPILE_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    argv = ["--programs", *args.programs]
    if args.out_dir:
        argv += ["--out-dir", args.out_dir]
    module.main(argv)


def cmd_finetune(args: argparse.Namespace) -> None:
    """Fine-tune a compiled program to O_FT with C_Tr (App. C.1's recipe with our deviations, listed in
    ``analyses.tracr.config.DEVIATIONS``); optionally analyse it."""
    if (args.lr is None) == (args.lr_level is None):
        raise ConfigError("give exactly one of --lr (a number) or --lr-level (L, M, S or VS)")
    lr = args.lr if args.lr is not None else finetune_lr(args.lr_level)
    config = TracrFinetuneConfig(
        program=args.program,
        train=sgd_train_config(lr=lr, steps=args.steps, seed=args.seed, grad_clip=args.grad_clip),
        c_tr=args.c_tr,
        q=args.q,
        lr_level=args.lr_level,
        n_letters=args.n_letters,
        noise_std=args.noise_std,
        balance_mlps=not args.no_balance,
        eval_n=args.eval_n,
    )
    result = run_finetune(config, args.out, progress=not args.no_progress)
    payload: dict[str, Any] = {
        "out": args.out,
        "lr": lr,
        "status": result.status,
        "final_accuracy": result.final_accuracy,
    }
    if result.error:
        payload["error"] = result.error
    if args.analyse and result.status == "ok":
        analysis = analyse_finetuned(args.out, config=TracrAnalysisConfig(eval_n=args.eval_n))
        payload["analysis"] = str(Path(args.out) / ANALYSIS)
        payload["attention_head"] = analysis["attention"]["finetuned"]
    print_json(payload)


def cmd_analyse(args: argparse.Namespace) -> None:
    """Attention masses, detector activity, single-weight pruning, weight diff and patching of a run."""
    config = TracrAnalysisConfig(prune_ks=args.prune_ks, score_n=args.score_n, eval_n=args.eval_n)
    path = Path(args.dir) / ANALYSIS
    if path.is_file() and not args.overwrite:
        recorded = read_json(path).get("analysis_config")
        if recorded == to_dict(config):
            note = "this analysis is already there; nothing was written (pass --overwrite to redo it)"
            print_json({"analysis": str(path), "status": "done", "note": note})
            return
        raise ConfigError(
            f"{path} holds an analysis with other settings ({recorded}); pass --overwrite to replace it"
        )
    result = analyse_finetuned(args.dir, config=config)
    layer = result["attention"]["layer"]
    pruning = result["pruning"]
    print_json(
        {
            "analysis": str(Path(args.dir) / ANALYSIS),
            "attention_head_layer": layer,
            "attention_start": {g: v[layer] for g, v in result["attention"]["start"].items()},
            "attention_finetuned": {g: v[layer] for g, v in result["attention"]["finetuned"].items()},
            "pruning_ks": pruning["ks"],
            "pruning_acc_o_pt_cte0": pruning["accuracy"][eval_name("pt", 0)],
            "pruned_units": pruning["units"][:4],
            "patching_restored": result["patching"]["restored"],
        }
    )


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add ``tracr compile|finetune|analyse`` to ``ftmech``'s subcommands."""
    tracr = subparsers.add_parser("tracr", help="compiled Tracr programs: compile, fine-tune, analyse")
    sub = tracr.add_subparsers(dest="tracr_command", required=True, parser_class=type(tracr))

    p = sub.add_parser("compile", help="compile the RASP programs with tracr (needs the tracr extra)")
    p.add_argument(
        "--programs", nargs="+", default=list(PROGRAMS), choices=PROGRAMS, help="programs to compile"
    )
    p.add_argument(
        "--out-dir", help="where to write {name}.safetensors/json (default: the package's tracr_weights)"
    )
    p.set_defaults(handler=cmd_compile)

    p = sub.add_parser("finetune", help="fine-tune a compiled program to O_FT (count b; 6th largest)")
    p.add_argument("--program", default="counter", choices=PROGRAMS, help="the compiled program")
    p.add_argument("--lr", type=positive_float, help="peak learning rate")
    p.add_argument("--lr-level", choices=COMPILED_LEVELS, help="eta level: 1e-1, 1e-2, 1e-3, 1e-4")
    p.add_argument(
        "--c-tr", type=fraction, default=0.0, help="C_Tr: fraction of samples with r(x,O_FT)-r(x,O_PT)=q"
    )
    p.add_argument("--q", type=int, default=1, help="planted offset")
    p.add_argument("--steps", type=positive_int, default=200, help="SGD steps (paper: 10000)")
    p.add_argument(
        "--seed", type=random_seed, default=0, help="seed of the weight noise, data and evaluation sets"
    )
    p.add_argument(
        "--n-letters", type=positive_int, help="letters per input (default: the program's max_seq_len)"
    )
    p.add_argument(
        "--noise-std",
        type=non_negative_float,
        default=STUDY_NOISE_STD,
        help="std of the weight noise (paper: 1e-3)",
    )
    p.add_argument("--no-balance", action="store_true", help="keep tracr's unbalanced MLP weights")
    p.add_argument("--grad-clip", type=_clip_or_none, default=1.0, help="global grad-norm clip, or 'none'")
    p.add_argument("--eval-n", type=positive_int, default=500, help="inputs per evaluation set")
    p.add_argument("--analyse", action="store_true", help="run the analyses afterwards (as tracr analyse)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    output_flags(p)
    p.set_defaults(handler=cmd_finetune)

    p = sub.add_parser("analyse", help="analyse a fine-tuned run against its exact starting point")
    p.add_argument("dir", type=existing_dir, help="a directory written by `ftmech tracr finetune`")
    p.add_argument(
        "--prune-ks",
        type=comma_list(non_negative_int),
        default=(0, 1, 2, 3, 4, 8, 20),
        help="e.g. 0,1,2,3,4,8,20",
    )
    p.add_argument("--score-n", type=positive_int, default=512, help="inputs scoring grad x weight")
    p.add_argument("--eval-n", type=positive_int, default=500, help="inputs per evaluation set")
    p.add_argument(
        "--overwrite", action="store_true", help="replace DIR/analysis.json made with other settings"
    )
    p.set_defaults(handler=cmd_analyse)


# --- the whole study: ftmech reproduce tracr -------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = ArgParser(prog="ftmech reproduce tracr", description="Reproduce the Tracr study end to end.")
    study_flags(p, default_out="runs/tracr")
    p.add_argument("--preset", default="cpu", help=f"one of {', '.join(PRESETS)}")
    p.add_argument(
        "--config", type=existing_file, help="a TracrStudyConfig JSON/YAML file (overrides --preset)"
    )
    p.add_argument("--seeds", type=positive_int, help="use seeds 0..N-1")
    return p


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """``ftmech reproduce tracr --out runs/tracr [--preset cpu|tiny] [--config c.json] [--seeds 3]``: run
    the study, print a one-line summary, and return the results."""
    args = build_parser().parse_args(argv)
    if args.config:
        config = load_config(TracrStudyConfig, args.config)
    else:
        config = lookup(PRESETS, args.preset, "preset")
    if args.seeds is not None:
        config = from_dict(TracrStudyConfig, {**to_dict(config), "seeds": list(range(args.seeds))})
    summary = run_study(config, args.out, SweepOptions.from_args(args))
    print(
        json.dumps(
            {
                "out": args.out,
                "wall_seconds": round(summary["wall_seconds"], 1),
                "jobs": summary["jobs"],
                "findings": [
                    {"claim": f["claim"].split(")")[0] + ")", "outcome": f["outcome"]}
                    for f in summary["findings"]
                ],
            }
        )
    )
    return summary
