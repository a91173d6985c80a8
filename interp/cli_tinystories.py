"""``ftmech tinystories data|pretrain|delete|recover|score|hub|study``: the TinyStories part of the study.

``add_commands(subparsers)`` adds the ``tinystories`` command to ``ftmech``'s parser. Handlers import
``procedural_tasks`` and ``analyses`` lazily, so ``interp`` keeps no import-time dependency on them. Default sizes
come from the CPU-scale study config (``analyses.tinystories_study.cpu_study_config``); flags are its field names in
kebab case. Errors are ``FtmechError``s: ``ftmech`` prints them as one line and exits with code 2.
"""

import argparse
import dataclasses
import json
from typing import Any

from interp.errors import ConfigError

DATA_SETS = (
    "pretrain",
    "filter",
    "filter_random_labels",
    "filter_mix_match",
    "refusal",
    "recovery",
    "prompts",
)


def _print_json(payload: Any) -> None:
    print(json.dumps(payload, indent=2, sort_keys=True, default=str))


def _study_config(args: argparse.Namespace):
    from analyses.tinystories_study import cpu_study_config

    overrides: dict[str, Any] = {}
    if getattr(args, "feature", None):
        overrides["feature"] = args.feature
    for flag in ("n_stories", "n_ctx", "vocab_size", "batch_size"):
        if getattr(args, flag, None) is not None:
            overrides[flag] = getattr(args, flag)
    return cpu_study_config(args.setting, **overrides)


def _data_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--setting", default="synthetic", choices=["synthetic", "shared"], help="corpus")
    p.add_argument("--feature", help="feature to delete/recover (default: twist, or dialogue for shared)")
    p.add_argument("--n-stories", type=int, help="synthetic corpus size")
    p.add_argument("--n-ctx", type=int, help="tokens per text at most")
    p.add_argument("--vocab-size", type=int, help="tokenizer vocabulary bound")


def _train_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--steps", type=int, help="optimizer steps (default: the CPU study's)")
    p.add_argument("--lr", type=float, help="learning rate")
    p.add_argument("--batch-size", type=int, help="stories per step")
    p.add_argument("--seed", type=int, default=0, help="model seed: initialisation, batch order, generations")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--out", required=True, help="output checkpoint directory")


def _train_config(study, args: argparse.Namespace, *, steps: int, lr: float, constant: bool, eval_steps=None):
    from interp.training import TrainConfig

    return TrainConfig(
        steps=args.steps if args.steps is not None else steps,
        batch_size=args.batch_size or study.batch_size,
        lr=args.lr if args.lr is not None else lr,
        weight_decay=0.1,
        betas=(0.9, 0.95),
        schedule="constant" if constant else "cosine",
        warmup_frac=0.0 if constant else study.warmup_frac,
        eval_every=max(1, (args.steps or steps) // 4),
        eval_steps=eval_steps,
        loss="sequence",
        seed=args.seed,
        device=args.device,
    )


def cmd_data(args: argparse.Namespace) -> None:
    """Print formatted Instruct examples of a pretraining or deletion set (or generation prompts) as JSON lines."""
    from interp.runtime import numpy_rng
    from procedural_tasks.story_protocols import feature_prompts, load_story_corpus, split_records
    from procedural_tasks.tinystories import DeletionConfig, build_deletion_set, format_instruct

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
    from procedural_tasks.story_protocols import StoryPretrainConfig, run_story_pretrain

    study = _study_config(args)
    config = StoryPretrainConfig(
        data=study.data,
        model=dataclasses.replace(study.model, seed=args.seed),
        train=_train_config(study, args, steps=study.pretrain_steps, lr=study.pretrain_lr, constant=False),
        with_feature=not args.without_feature,
        eval_n=study.eval_n,
    )
    summary = run_story_pretrain(config, args.out)
    _print_json({k: summary[k] for k in ("with_feature", "n_train", "loss_curve", "wall_seconds")})


def _pretrain_lr(ckpt_dir: str) -> float:
    """The pretraining LR behind a checkpoint: its own for a pretrained model, its base's for a deleted one."""
    from interp.checkpoints import read_checkpoint_info

    meta = read_checkpoint_info(ckpt_dir).metadata
    try:
        if meta.get("stage") == "pretrain":
            return float(meta["stage_config"]["train"]["lr"])
        if meta.get("stage") == "deletion":
            return _pretrain_lr(meta["base"])
    except (KeyError, TypeError, ValueError):
        pass
    raise ConfigError(f"{ckpt_dir} does not record its pretraining LR; pass --lr")


def cmd_delete(args: argparse.Namespace) -> None:
    from analyses.tinystories_study import LR_DIVISORS, cpu_study_config
    from procedural_tasks.story_protocols import (
        StoryDeletionConfig,
        load_story_checkpoint,
        run_story_deletion,
    )
    from procedural_tasks.tinystories import DeletionConfig

    if args.lr is None and args.lr_level is None:
        raise ConfigError("give --lr-level M or S (eta_PT/10 or eta_PT/100 of the base's LR) or --lr")
    base = load_story_checkpoint(args.base)
    study = cpu_study_config(base.data.setting)
    lr = args.lr if args.lr is not None else _pretrain_lr(args.base) / LR_DIVISORS[args.lr_level]
    config = StoryDeletionConfig(
        deletion=DeletionConfig(kind=args.kind, feature=base.data.feature, seed=args.seed),
        train=_train_config(study, args, steps=study.deletion_steps, lr=lr, constant=True),
        lr_level=args.lr_level if args.lr is None else None,
        eval_n=study.eval_n,
    )
    summary = run_story_deletion(config, args.base, args.out)
    _print_json({k: summary[k] for k in ("dataset", "lr", "n_train", "loss_curve", "wall_seconds")})


def cmd_recover(args: argparse.Namespace) -> None:
    from analyses.tinystories_study import LR_DIVISORS, cpu_study_config
    from interp.revival import log_spaced_steps
    from procedural_tasks.story_protocols import (
        StoryRecoveryConfig,
        load_story_checkpoint,
        run_story_recovery,
    )

    start = load_story_checkpoint(args.start)
    study = cpu_study_config(start.data.setting)
    steps = args.steps if args.steps is not None else study.recovery_steps
    lr = args.lr if args.lr is not None else _pretrain_lr(args.start) / LR_DIVISORS[args.lr_level]
    score_steps = tuple(sorted({0, max(1, steps // 100), max(1, steps // 10), steps}))
    config = StoryRecoveryConfig(
        train=_train_config(
            study, args, steps=steps, lr=lr, constant=True, eval_steps=log_spaced_steps(steps, 8)
        ),
        score_steps=score_steps,
        n_generations=args.n_generations,
        max_new_tokens=study.max_new_tokens,
        eval_n=study.eval_n,
    )
    summary = run_story_recovery(config, args.start, args.out)
    _print_json({k: summary[k] for k in ("lr", "n_train", "loss_curve", "scores", "wall_seconds")})


def cmd_score(args: argparse.Namespace) -> None:
    from procedural_tasks.story_protocols import build_story_splits, load_story_checkpoint, score_model

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
    _print_json(score.to_json(n_texts=args.examples))


def cmd_hub(args: argparse.Namespace) -> None:
    from interp.models import n_params
    from procedural_tasks.story_protocols import load_hub_story_model

    model = load_hub_story_model(args.name, device=args.device)
    _print_json({"name": args.name, "n_params": n_params(model), "n_layers": model.cfg.n_layers})


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add ``ftmech tinystories ...`` to the top-level subparsers."""
    top = subparsers.add_parser("tinystories", help="TinyStories: deletion and recovery of a story feature")
    sub = top.add_subparsers(dest="tinystories_command", required=True)

    p = sub.add_parser("data", help="print formatted Instruct examples of a data set as JSON lines")
    _data_flags(p)
    p.add_argument("--set", default="filter", choices=DATA_SETS, help="which set (deletion kinds or prompts)")
    p.add_argument("--n", type=int, default=3, help="examples to print")
    p.add_argument("--seed", type=int, default=0, help="seed of the Instruct line order")
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
    p.add_argument("base", help="pretrained checkpoint directory")
    p.add_argument("--kind", default="filter", choices=["filter", "filter_random_labels", "filter_mix_match"])
    p.add_argument("--lr-level", choices=["M", "S"], help="eta_M = base LR / 10, eta_S = base LR / 100")
    _train_flags(p)
    p.set_defaults(handler=cmd_delete)

    p = sub.add_parser("recover", help="recovery (reverse) fine-tuning on stories with the feature")
    p.add_argument("start", help="deleted (or never-had-it) checkpoint directory")
    p.add_argument(
        "--lr-level", default="S", choices=["M", "S"], help="LR = the pretraining LR / 10 or / 100"
    )
    p.add_argument("--n-generations", type=int, default=128, help="generations per score")
    _train_flags(p)
    p.set_defaults(handler=cmd_recover)

    p = sub.add_parser("score", help="generation score of a story checkpoint (Wilson 95%% CI)")
    p.add_argument("checkpoint")
    p.add_argument("--n-generations", type=int, default=128)
    p.add_argument("--max-new-tokens", type=int, default=130)
    p.add_argument("--seed", type=int, default=0, help="seed of the sampling generator")
    p.add_argument("--examples", type=int, default=3, help="generated stories to print")
    p.add_argument("--device", default="auto")
    p.set_defaults(handler=cmd_score)

    p = sub.add_parser("hub", help="load a TinyStories model from the hub (needs a network or the HF cache)")
    p.add_argument("name", nargs="?", default="roneneldan/TinyStories-1M")
    p.add_argument("--device", default="cpu")
    p.set_defaults(handler=cmd_hub)
