"""Command line of the TinyStories study.

- ``ftmech reproduce tinystories``: ``main(argv)`` runs the whole study (``--preset cpu|gpu``, or ``--config``);
- ``ftmech tinystories data|pretrain|delete|recover|score|hub``: ``add_commands(subparsers)`` adds the single
  stages. Their default sizes are the ``cpu`` preset's (``config.cpu_study_config``); flags are its field names
  in kebab case.

Errors are ``FtmechError``s: ``ftmech`` prints them as one line and exits with code 2.
"""

import argparse
import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from analyses.tinystories.config import PRESETS, TinyStoriesStudyConfig, cpu_study_config
from analyses.tinystories.run import run_studies
from interp.arguments import (
    ArgParser,
    existing_dir,
    existing_file,
    non_negative_int,
    output_flags,
    positive_float,
    positive_int,
)
from interp.config import load_config, lookup
from interp.errors import ConfigError, DataError
from interp.jsonio import print_json
from interp.lr_levels import checkpoint_pretrain_lr, lr_for_level
from interp.models import n_params
from interp.runtime import numpy_rng
from interp.study_runs import SweepOptions, study_flags
from procedural_tasks.story_checkpoints import load_hub_story_model, load_story_checkpoint
from procedural_tasks.story_data import StoryDataConfig, build_story_splits, load_story_corpus, split_records
from procedural_tasks.story_deletion import DeletionConfig, build_deletion_set
from procedural_tasks.story_instruct import format_instruct
from procedural_tasks.story_loaders import shared_sample_dir
from procedural_tasks.story_scoring import feature_prompts, score_model
from procedural_tasks.story_stages import (
    run_story_deletion,
    run_story_pretrain,
    run_story_recovery,
)

DATA_DIR_HELP = "hub: a local TinyStories_all_data folder (its data*.json shards; nothing is downloaded)"
DATA_SETS = (
    "pretrain",
    "filter",
    "filter_random_labels",
    "filter_mix_match",
    "refusal",
    "recovery",
    "prompts",
)

# ----------------------------------------------------------------------------------------------------------------
# ftmech reproduce tinystories


def build_parser() -> argparse.ArgumentParser:
    p = ArgParser(
        prog="ftmech reproduce tinystories", description="Reproduce the TinyStories study end to end."
    )
    p.add_argument(
        "--setting",
        default="both",
        choices=["synthetic", "shared", "hub", "both"],
        help="synthetic twist (template-generated stories), shared-sample dialogue, both (default: synthetic "
        "and shared), or hub (the study's data from --data-dir)",
    )
    p.add_argument("--data-dir", type=existing_dir, help=DATA_DIR_HELP)
    p.add_argument(
        "--preset", default="cpu", help="cpu (minutes, the default) or gpu (the study's 91M model)"
    )
    p.add_argument("--seeds", type=positive_int, help="number of model seeds, run as 0..N-1 (default 2)")
    p.add_argument(
        "--config",
        type=existing_file,
        help="a TinyStoriesStudyConfig JSON/YAML file (one setting); flags override it",
    )
    p.add_argument("--deletion-kinds", help="comma-separated: filter,filter_random_labels,filter_mix_match")
    study_flags(p, default_out="runs/tinystories")
    p.add_argument("--device", help="auto (the default), cpu or cuda")
    p.add_argument(
        "--data-workers",
        type=non_negative_int,
        help="processes making training batches ahead of each step (default: the preset's, gpu 4, cpu 0); "
        "the batches, so the results, are the same for every count",
    )
    return p


def study_configs(args: argparse.Namespace) -> list[TinyStoriesStudyConfig]:
    """The configs named by the command-line flags."""
    make = lookup(PRESETS, args.preset, "preset")
    _check_data_dir(args.setting, args.data_dir)
    if args.config:
        configs = [load_config(TinyStoriesStudyConfig, args.config)]
    else:
        settings = ["synthetic", "shared"] if args.setting == "both" else [args.setting]
        configs = []
        for setting in settings:
            if setting == "shared" and shared_sample_dir() is None:
                print(
                    "ftmech: skipping the shared setting: the TinyStories sample (../shared/data/tinystories) is absent"
                )
                continue
            configs.append(make(setting, **_data_dir(setting, args.data_dir)))
    overrides: dict[str, Any] = {}
    if args.seeds is not None:
        overrides["seeds"] = tuple(range(args.seeds))
    if args.device is not None:
        overrides["device"] = args.device
    if args.data_workers is not None:
        overrides["data_workers"] = args.data_workers
    if args.deletion_kinds:
        overrides["deletion_kinds"] = tuple(args.deletion_kinds.split(","))
    configs = [dataclasses.replace(c, **overrides) for c in configs]
    if not configs:
        raise DataError("no setting to run; pass --setting synthetic")
    return configs


def _check_data_dir(setting: str, data_dir: str | None) -> None:
    """--data-dir goes with --setting hub, and only with it."""
    if setting == "hub" and data_dir is None:
        raise ConfigError(f"--setting hub needs --data-dir DIR: {DATA_DIR_HELP}")
    if setting != "hub" and data_dir is not None:
        raise ConfigError("--data-dir is read only by --setting hub; drop it or add --setting hub")


def _data_dir(setting: str, data_dir: str | None) -> dict[str, str]:
    """The config override of the hub setting's data folder (none for the other settings)."""
    return {"data_dir": str(Path(data_dir).resolve())} if setting == "hub" and data_dir else {}


def main(argv: Sequence[str] | None = None) -> dict:
    """``ftmech reproduce tinystories [flags]``: run (or finish) the study; print where its results are."""
    args = build_parser().parse_args(argv)
    combined = run_studies(study_configs(args), Path(args.out), SweepOptions.from_args(args))
    print_json(
        {
            "results": str(Path(args.out) / "results.json"),
            "report": str(Path(args.out) / "report.html"),
            "wall_seconds": round(combined["wall_seconds"], 1),
        }
    )
    return combined


# ----------------------------------------------------------------------------------------------------------------
# ftmech tinystories data|pretrain|delete|recover|score|hub


def _study_config(args: argparse.Namespace) -> TinyStoriesStudyConfig:
    overrides: dict[str, Any] = {}
    if getattr(args, "feature", None):
        overrides["feature"] = args.feature
    for flag in ("n_stories", "n_ctx", "vocab_size", "batch_size"):
        if getattr(args, flag, None) is not None:
            overrides[flag] = getattr(args, flag)
    _check_data_dir(args.setting, args.data_dir)
    return cpu_study_config(args.setting, **overrides, **_data_dir(args.setting, args.data_dir))


def _checkpoint_study(data: StoryDataConfig) -> TinyStoriesStudyConfig:
    """The CPU study of a checkpoint's corpus: the recipe its later stages train with."""
    return cpu_study_config(data.setting, feature=data.feature, data_dir=data.data_dir)


def _stage_lr(args: argparse.Namespace, ckpt_dir: str) -> float:
    """``--lr``, or ``--lr-level`` against the pretraining LR recorded behind ``ckpt_dir``."""
    if args.lr is not None:
        return args.lr
    return lr_for_level(args.lr_level, checkpoint_pretrain_lr(ckpt_dir))


def _train_args(args: argparse.Namespace) -> dict[str, Any]:
    """The training flags as overrides of the study's recipe (``TinyStoriesStudyConfig.train_config``)."""
    return {"steps": args.steps, "batch_size": args.batch_size, "device": args.device}


def cmd_data(args: argparse.Namespace) -> None:
    """Print formatted Instruct examples of a pretraining or deletion set (or generation prompts) as JSON lines."""
    data = _study_config(args).data
    splits = split_records(load_story_corpus(data), data)
    if args.set == "prompts":
        for prompt in feature_prompts(splits.test, data, args.n):
            print(json.dumps({"prompt": prompt}))
        return
    if args.set == "pretrain":
        records = splits.pretrain
    else:
        records = build_deletion_set(splits.finetune, DeletionConfig(kind=args.set, feature=data.feature))
    rng = numpy_rng(args.seed)
    print(json.dumps({"set": args.set, "n_records": len(records)}))
    for record in records[: args.n]:
        text = format_instruct(record, rng=rng, fields=data.fields)
        print(
            json.dumps({"text": text, "features": record.features, "prompt_features": record.prompt_features})
        )


def cmd_pretrain(args: argparse.Namespace) -> None:
    study = _study_config(args)
    config = study.pretrain_stage(
        args.seed, with_feature=not args.without_feature, lr=args.lr, **_train_args(args)
    )
    summary = run_story_pretrain(config, args.out)
    print_json({k: summary[k] for k in ("with_feature", "n_train", "loss_curve", "wall_seconds")})


def cmd_delete(args: argparse.Namespace) -> None:
    if args.lr is None and args.lr_level is None:
        raise ConfigError("give --lr-level M or S (eta_PT/10 or eta_PT/100 of the base's LR) or --lr")
    base = load_story_checkpoint(args.base)
    study = _checkpoint_study(base.data)
    level = args.lr_level if args.lr is None else None
    lr = _stage_lr(args, args.base)
    config = study.deletion_stage(args.kind, args.seed, lr_level=level, lr=lr, **_train_args(args))
    summary = run_story_deletion(config, args.base, args.out)
    print_json({k: summary[k] for k in ("dataset", "lr", "n_train", "loss_curve", "wall_seconds")})


def cmd_recover(args: argparse.Namespace) -> None:
    study = _checkpoint_study(load_story_checkpoint(args.start).data)
    lr = _stage_lr(args, args.start)
    config = study.recovery_stage(args.seed, n_generations=args.n_generations, lr=lr, **_train_args(args))
    summary = run_story_recovery(config, args.start, args.out)
    print_json({k: summary[k] for k in ("lr", "n_train", "loss_curve", "scores", "wall_seconds")})


def cmd_score(args: argparse.Namespace) -> None:
    ckpt = load_story_checkpoint(args.checkpoint, device=args.device)
    splits = build_story_splits(ckpt.data, ckpt.tokenizer)
    score = score_model(
        ckpt.model,
        ckpt.tokenizer,
        ckpt.data,
        splits,
        n_generations=args.n_generations,
        max_new_tokens=args.max_new_tokens,
        seed=args.seed,
    )
    print_json(score.to_json(n_texts=args.examples))


def cmd_hub(args: argparse.Namespace) -> None:
    model = load_hub_story_model(args.name, device=args.device)
    print_json({"name": args.name, "n_params": n_params(model), "n_layers": model.cfg.n_layers})


def _data_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--setting", default="synthetic", choices=["synthetic", "shared", "hub"], help="corpus")
    p.add_argument("--data-dir", type=existing_dir, help=DATA_DIR_HELP)
    p.add_argument("--feature", help="feature to delete/recover (default: twist, or dialogue for shared)")
    p.add_argument("--n-stories", type=positive_int, help="synthetic corpus size")
    p.add_argument("--n-ctx", type=positive_int, help="tokens per text at most")
    p.add_argument("--vocab-size", type=positive_int, help="tokenizer vocabulary bound")


def _train_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--steps", type=positive_int, help="optimizer steps (default: the CPU study's)")
    p.add_argument("--lr", type=positive_float, help="learning rate")
    p.add_argument("--batch-size", type=positive_int, help="stories per step")
    p.add_argument(
        "--seed",
        type=non_negative_int,
        default=0,
        help="model seed: initialisation, batch order, generations",
    )
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    output_flags(p, help="output checkpoint directory")


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add ``ftmech tinystories ...`` to the top-level subparsers."""
    top = subparsers.add_parser("tinystories", help="TinyStories: deletion and recovery of a story feature")
    sub = top.add_subparsers(dest="tinystories_command", required=True, parser_class=ArgParser)

    p = sub.add_parser("data", help="print formatted Instruct examples of a data set as JSON lines")
    _data_flags(p)
    p.add_argument("--set", default="filter", choices=DATA_SETS, help="which set (deletion kinds or prompts)")
    p.add_argument("--n", type=positive_int, default=3, help="examples to print")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed of the Instruct line order")
    p.set_defaults(handler=cmd_data)

    p = sub.add_parser(
        "pretrain", help="pretrain a story model (with the feature, or the never-had-it control)"
    )
    _data_flags(p)
    _train_flags(p)
    p.add_argument(
        "--without-feature", action="store_true", help="never-had-it control: filter the feature out"
    )
    p.set_defaults(handler=cmd_pretrain)

    p = sub.add_parser("delete", help="deletion fine-tuning of a pretrained story model")
    p.add_argument("base", type=existing_dir, help="pretrained checkpoint directory")
    p.add_argument("--kind", default="filter", choices=["filter", "filter_random_labels", "filter_mix_match"])
    p.add_argument("--lr-level", choices=["M", "S"], help="eta_M = base LR / 10, eta_S = base LR / 100")
    _train_flags(p)
    p.set_defaults(handler=cmd_delete)

    p = sub.add_parser("recover", help="recovery (reverse) fine-tuning on stories with the feature")
    p.add_argument("start", type=existing_dir, help="deleted (or never-had-it) checkpoint directory")
    p.add_argument(
        "--lr-level", default="S", choices=["M", "S"], help="LR = the pretraining LR / 10 or / 100"
    )
    p.add_argument("--n-generations", type=positive_int, default=128, help="generations per score")
    _train_flags(p)
    p.set_defaults(handler=cmd_recover)

    p = sub.add_parser("score", help="generation score of a story checkpoint (Wilson 95%% CI)")
    p.add_argument("checkpoint", type=existing_dir, help="story checkpoint directory")
    p.add_argument("--n-generations", type=positive_int, default=128)
    p.add_argument("--max-new-tokens", type=positive_int, default=130)
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed of the sampling generator")
    p.add_argument("--examples", type=non_negative_int, default=3, help="generated stories to print")
    p.add_argument("--device", default="auto")
    p.set_defaults(handler=cmd_score)

    p = sub.add_parser("hub", help="load a TinyStories model from the hub (needs a network or the HF cache)")
    p.add_argument("name", nargs="?", default="roneneldan/TinyStories-1M")
    p.add_argument("--device", default="cpu")
    p.set_defaults(handler=cmd_hub)
