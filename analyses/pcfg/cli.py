"""The PCFG study on the command line: ``ftmech reproduce pcfg`` and the stages one at a time
(``ftmech data pcfg``, ``pretrain``, ``finetune``, ``reverse-ft``, ``evaluate``).

Flags are config field names in kebab case; library errors are ``FtmechError``s, which ``ftmech`` prints as
one line with exit code 2.
"""

import argparse
import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

from analyses.pcfg.config import GRIDS, PCFGStudyConfig
from analyses.pcfg.jobs import run_study
from interp.arguments import (
    ArgParser,
    existing_dir,
    existing_file,
    fraction,
    non_negative_int,
    output_flags,
    positive_float,
    positive_int,
    random_seed,
)
from interp.config import load_config
from interp.errors import ConfigError
from interp.jsonio import print_json, write_json
from interp.lr_levels import LABELLINGS, LEVELS, checkpoint_pretrain_lr, lr_for_level
from interp.models import preset as model_preset
from interp.runtime import numpy_rng
from interp.study_runs import SweepOptions, study_flags
from interp.training import LOSSES, PRECISIONS
from procedural_tasks.pcfg import sample_strings, to_text
from procedural_tasks.pcfg_protocols import (
    SPEED_FIELDS,
    FinetuneConfig,
    PretrainConfig,
    ReverseFTConfig,
    evaluate_checkpoint,
    run_finetune,
    run_pretrain,
    run_reverse_ft,
    study_preset,
)
from procedural_tasks.pcfg_tasks import FAMILIES, SampleSpec, parse_prior, sample

C = TypeVar("C", FinetuneConfig, ReverseFTConfig)


def _common_train_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--steps",
        type=non_negative_int,
        help="optimizer steps (default: the preset's; 0 keeps the start weights)",
    )
    p.add_argument("--lr", type=positive_float, help="peak learning rate")
    p.add_argument("--batch-size", type=positive_int, help="sequences per step (default: the preset's)")
    p.add_argument("--seed", type=random_seed, default=0, help="seed of data and initialisation")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--threads", type=positive_int, help="torch threads (default $FTMECH_THREADS or 1)")
    p.add_argument("--eval-every", type=positive_int, help="steps between evaluations")
    p.add_argument("--checkpoint-every", type=positive_int, help="steps between resumable checkpoints")
    speed_flags(p)
    output_flags(p, resumable=True)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _stage_flags(p: argparse.ArgumentParser) -> None:
    """Flags of the stages that start from a checkpoint: sizes and the LR given as an eta level."""
    p.add_argument("--preset", default="cpu", help="study preset for default sizes: cpu, paper or tiny")
    p.add_argument("--lr-level", choices=LEVELS, help="eta level relative to the pretraining LR")
    p.add_argument(
        "--lr-labelling",
        default="main_text",
        choices=LABELLINGS,
        help="main_text (eta_M = eta_PT/10) or appendix",
    )


def speed_flags(p: argparse.ArgumentParser) -> None:
    """How fast a run trains, never what it learns (bf16 aside): precision, compile, data workers."""
    p.add_argument("--precision", choices=PRECISIONS, help="fp32, or bf16 autocast (default: the preset's)")
    p.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        help="torch.compile the training step, CUDA graphs on a GPU (default: the preset's; paper: on)",
    )
    p.add_argument(
        "--data-workers",
        type=non_negative_int,
        help="processes making batches ahead of each step (default: the preset's; paper: 4)",
    )


def _train_changes(args: argparse.Namespace) -> dict[str, Any]:
    changes = {"seed": args.seed, "device": args.device, "threads": args.threads}
    for flag in ("steps", "lr", "batch_size", "eval_every", "checkpoint_every", "loss", *SPEED_FIELDS):
        if getattr(args, flag, None) is not None:
            changes[flag] = getattr(args, flag)
    return changes


# --- data ------------------------------------------------------------------------------------------


def _task_config_from_args(args: argparse.Namespace):

    task = study_preset(args.preset).task
    changes: dict[str, Any] = {}
    if args.window is not None:
        changes["window"] = args.window
    if args.region is not None:
        changes["region"] = args.region
        changes["region_min"] = None if task.region_min is None else min(task.region_min, args.region)
    if getattr(args, "families", None):
        changes["families"] = tuple(args.families.split(","))
    if getattr(args, "prior", None) is not None:
        changes["prior"] = parse_prior(args.prior)
    if getattr(args, "jailbreak_frac", None) is not None:
        changes["jailbreak_frac"] = args.jailbreak_frac
    if not changes:
        return task
    window = changes.get("window", task.window)
    if "region" not in changes and task.region > window:
        raise ConfigError(
            f"window {window} is smaller than the preset's region {task.region}; pass --region too"
        )
    return dataclasses.replace(task, **changes)


def _task_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="cpu", help="study preset: cpu, paper or tiny")
    p.add_argument("--window", type=positive_int, help="text tokens per sample")
    p.add_argument("--region", type=positive_int, help="counted region (the largest O' when O' varies)")


def cmd_data_pcfg(args: argparse.Namespace) -> None:

    if args.task not in FAMILIES:
        raise ConfigError(f"unknown task '{args.task}'; use one of {', '.join(FAMILIES)}")
    config = _task_config_from_args(args)
    spec = SampleSpec(family=args.task, operand=args.operand, c=args.c_tr, q=args.q)
    rng = numpy_rng(args.seed)
    for _ in range(args.n):
        s = sample(config, spec, rng)
        print(
            json.dumps(
                {
                    "tokens": s.tokens,
                    "text": s.text,
                    "task": s.family,
                    "operand": s.operand,
                    "answer": s.answer,
                    "correlated": s.correlated,
                    "region": s.region,
                }
            )
        )


def cmd_data_strings(args: argparse.Namespace) -> None:

    for string in sample_strings(numpy_rng(args.seed), args.n):
        print(" ".join(to_text(string)))


# --- stages ----------------------------------------------------------------------------------------


def cmd_pretrain(args: argparse.Namespace) -> None:
    sp = study_preset(args.preset)
    if args.config:
        config = load_config(PretrainConfig, args.config)
    else:
        steps = sp.pretrain_steps_for(args.prior) if args.steps is None else args.steps
        train = sp.train_config("pretrain", lr=1e-3, steps=steps)
        config = PretrainConfig(
            task=_task_config_from_args(args),
            model=model_preset(args.model or sp.model),
            train=train,
            eval_n=sp.eval_n,
        )
    config = dataclasses.replace(
        config,
        train=dataclasses.replace(config.train, **_train_changes(args)),
        model=dataclasses.replace(config.model, seed=args.seed),
    )
    result = run_pretrain(config, args.out, resume=args.resume, progress=not args.no_progress)
    summary = {
        "out": args.out,
        "wall_seconds": round(result.wall_seconds, 1),
        "final_eval": result.history[-1]["eval"],
    }
    write_json(Path(args.out) / "summary.json", summary)
    print_json(
        {
            k: (v if k != "final_eval" else {n: e["accuracy"] for n, e in v.items()})
            for k, v in summary.items()
        }
    )


def _stage_lr(args: argparse.Namespace, base_dir: str) -> float:
    if args.lr is not None:
        if args.lr_level is not None:
            raise ConfigError("give either --lr or --lr-level, not both")
        return args.lr
    return lr_for_level(args.lr_level or "M", checkpoint_pretrain_lr(base_dir), args.lr_labelling)


def _lr_level(args: argparse.Namespace) -> str | None:
    """The eta level a stage records: None when an absolute --lr was given."""
    return None if args.lr is not None else (args.lr_level or "M")


def _stage_config(args: argparse.Namespace, config_class: type[C], stage: str, start: str) -> tuple[C, float]:
    """The config of a stage that starts from the checkpoint ``start``, and its LR: the preset's training
    recipe with the training flags, the LR level, and the stage's other fields from the flags of their names."""
    sp = study_preset(args.preset)
    lr = _stage_lr(args, start)
    train = sp.train_config(stage, lr=lr, steps=args.steps)
    given = {"train": dataclasses.replace(train, **(_train_changes(args) | {"lr": lr}))}
    given |= {"lr_level": _lr_level(args), "eval_n": sp.eval_n}
    flags = {f.name: getattr(args, f.name) for f in dataclasses.fields(config_class) if f.name not in given}
    return config_class(**given, **flags), lr


def cmd_finetune(args: argparse.Namespace) -> None:
    config, lr = _stage_config(args, FinetuneConfig, "finetune", args.base)
    result = run_finetune(config, args.base, args.out, resume=args.resume, progress=not args.no_progress)
    final = {name: e["accuracy"] for name, e in result.history[-1]["eval"].items()}
    write_json(
        Path(args.out) / "summary.json",
        {"lr": lr, "final_accuracy": final, "wall_seconds": result.wall_seconds},
    )
    print_json({"out": args.out, "lr": lr, "final_accuracy": final})


def cmd_reverse_ft(args: argparse.Namespace) -> None:
    config, _ = _stage_config(args, ReverseFTConfig, "reverse", args.start)
    curve = run_reverse_ft(
        config,
        args.start,
        args.out,
        reference_accuracy=args.reference_accuracy,
        progress=not args.no_progress,
        resume=args.resume,
    )
    print_json(curve.to_json())


def cmd_evaluate(args: argparse.Namespace) -> None:

    if args.task not in FAMILIES:
        raise ConfigError(f"unknown task '{args.task}'; use one of {', '.join(FAMILIES)}")
    spec = SampleSpec(family=args.task, operand=args.operand)
    if args.c_te:  # the correlated test set: the evaluated operand is the correlation's O_FT
        spec = dataclasses.replace(
            spec, c=args.c_te, operand_pt=args.operand_pt, operand_ft=args.operand, q=args.q
        )
    print_json(evaluate_checkpoint(args.dir, spec, args.n, seed=args.seed, device=args.device))


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``ftmech data pcfg|pcfg-strings``, ``pretrain``, ``finetune``, ``reverse-ft`` and ``evaluate``."""
    _add_data_commands(sub)
    _add_pretrain(sub)
    _add_finetune(sub)
    _add_reverse_ft(sub)
    _add_evaluate(sub)


def _add_data_commands(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="print task data as JSON lines")
    data_sub = data.add_subparsers(dest="data_command", required=True, parser_class=ArgParser)
    p = data_sub.add_parser("pcfg", help="PCFG task samples, one JSON object per line")
    _task_flags(p)
    p.add_argument("--task", default="count", help="count, count_bigram, index, index_bigram or token")
    p.add_argument("--operand", default="a", help="a, b, c (or a bigram such as ab)")
    p.add_argument("--n", type=positive_int, default=10, help="samples to print")
    p.add_argument("--seed", type=random_seed, default=0)
    p.add_argument(
        "--c-tr", type=fraction, default=0.0, help="fraction of samples with the spurious correlation"
    )
    p.add_argument("--q", type=int, default=1, help="planted offset r(x, b) - r(x, a)")
    p.set_defaults(handler=cmd_data_pcfg)
    p = data_sub.add_parser("pcfg-strings", help="full grammar strings, one per line")
    p.add_argument("--n", type=positive_int, default=10, help="strings to print")
    p.add_argument("--seed", type=random_seed, default=0)
    p.set_defaults(handler=cmd_data_strings)


def _add_pretrain(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pretrain", help="pretrain a model on the PCFG task mixture")
    _task_flags(p)
    p.add_argument("--prior", help="operand prior over (a,b,c): 0.9,0.1,0 or low|medium|high|only_b|no_a")
    p.add_argument("--families", help="comma-separated task families")
    p.add_argument(
        "--jailbreak-frac", type=fraction, help="fraction of counting samples with a jailbreak token"
    )
    p.add_argument("--model", help="architecture preset (default: the study preset's)")
    p.add_argument(
        "--loss",
        choices=LOSSES,
        help="answer-token loss, or the study's next-token loss on the whole sequence (default: the preset's)",
    )
    p.add_argument("--config", type=existing_file, help="a PretrainConfig JSON/YAML file; flags override it")
    _common_train_flags(p)
    p.set_defaults(handler=cmd_pretrain)


def _stage_parser(
    sub: argparse._SubParsersAction, name: str, what: str, start: str, start_help: str
) -> argparse.ArgumentParser:
    """The parser of a stage that starts from the checkpoint ``start``, with the flags every such stage has."""
    p = sub.add_parser(name, help=what)
    p.add_argument(start, type=existing_dir, help=start_help)
    _stage_flags(p)
    p.add_argument("--operand-pt", default="a")
    return p


def _add_finetune(sub: argparse._SubParsersAction) -> None:
    what = "fine-tune a pretrained PCFG model on counting O_FT with a spurious correlation"
    p = _stage_parser(sub, "finetune", what, "base", "pretrained checkpoint directory")
    p.add_argument(
        "--c-tr", type=fraction, default=1.0, help="C_Tr: fraction of samples with count(b) = count(a) + q"
    )
    p.add_argument("--q", type=int, default=1)
    p.add_argument("--operand-ft", default="b")
    p.add_argument(
        "--mix-pt-frac", type=fraction, default=0.0, help="fraction of each batch from pretraining data (E.1)"
    )
    p.add_argument(
        "--rand-ft", action="store_true", help="randFT (E.4): answer count(O_FT) on count-O_PT inputs"
    )
    _common_train_flags(p)
    p.set_defaults(handler=cmd_finetune)


def _add_reverse_ft(sub: argparse._SubParsersAction) -> None:
    what = "train a model back on counting O_PT and time the revival"
    start_help = "checkpoint to start from (fine-tuned model or a control)"
    p = _stage_parser(sub, "reverse-ft", what, "start", start_help)
    p.add_argument(
        "--from-scratch", action="store_true", help="Scr. control: re-initialise the weights first"
    )
    p.add_argument(
        "--reference-accuracy", type=fraction, default=1.0, help="the pretrained model's O_PT accuracy"
    )
    p.add_argument(
        "--threshold-frac", type=fraction, default=0.9, help="revived at this fraction of the reference"
    )
    _common_train_flags(p)
    p.set_defaults(handler=cmd_reverse_ft)


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="accuracy of a PCFG checkpoint")
    p.add_argument("dir", type=existing_dir, help="checkpoint directory")
    p.add_argument("--task", default="count")
    p.add_argument("--operand", default="a")
    p.add_argument("--operand-pt", default="a", help="O_PT of the correlation (with --c-te > 0)")
    p.add_argument("--c-te", type=fraction, default=0.0, help="fraction of test samples with the correlation")
    p.add_argument("--q", type=int, default=1)
    p.add_argument("--n", type=positive_int, default=2000, help="test samples")
    p.add_argument("--seed", type=random_seed, default=0)
    p.add_argument("--device", default="auto")
    p.set_defaults(handler=cmd_evaluate)


# --- the whole study -------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = ArgParser(prog="ftmech reproduce pcfg", description="Reproduce the PCFG study end to end.")
    p.add_argument("--preset", help="cpu (the default), paper or tiny")
    p.add_argument("--seeds", type=positive_int, help="number of seeds, run as 0..N-1 (default 3)")
    study_flags(p, default_out="runs/pcfg")
    p.add_argument("--device", help="auto (the default), cpu or cuda")
    p.add_argument(
        "--config",
        type=existing_file,
        help="a PCFGStudyConfig JSON/YAML file; --preset/--seeds/--device override it",
    )
    p.add_argument("--no-analysis", action="store_true", help="skip probes, pruning, diffing and the audit")
    speed_flags(p)
    p.add_argument(
        "--grid",
        choices=list(GRIDS),
        default="default",
        help="default (the cpu-sized grid) or full (the study's priors H/M/L x eta_M/eta_S x C_Tr 0/.5/.8/1)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    if args.config and args.grid != "default":
        raise ConfigError("give --grid or --config, not both (a config file names its own grid)")
    config = load_config(PCFGStudyConfig, args.config) if args.config else PCFGStudyConfig.for_grid(args.grid)
    overrides = {
        "preset": args.preset,
        "device": args.device,
        "seeds": args.seeds and tuple(range(args.seeds)),
        **{name: getattr(args, name) for name in SPEED_FIELDS},
    }
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if args.no_analysis:
        overrides["analyse"] = False
    config = dataclasses.replace(config, **overrides)
    summary = run_study(config, Path(args.out), SweepOptions.from_args(args))
    print(
        json.dumps(
            {
                "results": str(Path(args.out) / "results.json"),
                "report": str(Path(args.out) / "report.html"),
                "wall_seconds": round(summary["wall_seconds"], 1),
            }
        )
    )
    return summary
