"""The TinyStories protocols as runnable stages (protocol §7): pretraining, deletion and recovery.

Context: a model pretrained on Instruct stories with a feature (e.g. twist) is fine-tuned so that it stops writing
the feature when asked (deletion: filtering, F+RR, F+MM), then fine-tuned again on stories that have it
(recovery, the study's reverse fine-tuning). If deletion only wrapped the capability, recovery is much faster than
for a control pretrained on the corpus without the feature and fine-tuned with the identical recipe.

Each stage trains with ``interp.training.train`` on the story tokens, records the feature-story loss at every
evaluation, and saves a story checkpoint (with its tokenizer) and a JSON summary.
"""

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from interp.config import to_dict
from interp.errors import ConfigError, DataError
from interp.jsonio import write_json
from interp.lr_levels import LEVELS
from interp.models import ModelConfig, build_model
from interp.training import TrainConfig, TrainResult, train
from procedural_tasks.story_batches import EncodedStories, encode_stories, story_batch_fn, story_loss
from procedural_tasks.story_checkpoints import load_story_checkpoint, save_story_checkpoint
from procedural_tasks.story_data import (
    StoryDataConfig,
    StorySplits,
    build_story_splits,
    build_story_tokenizer,
)
from procedural_tasks.story_deletion import DeletionConfig, build_deletion_set, drop_feature, keep_feature
from procedural_tasks.story_records import StoryRecord
from procedural_tasks.story_scoring import generation_seed, score_model
from procedural_tasks.story_tokenizer import StoryTokenizer


@dataclass(frozen=True, kw_only=True)
class StoryPretrainConfig:
    """Pretraining on Instruct stories; ``with_feature=False`` is the never-had-it control (Not-in-PT)."""

    data: StoryDataConfig
    model: ModelConfig  # architecture; d_vocab and n_ctx are filled from the tokenizer and data
    train: TrainConfig  # loss is forced to "sequence"
    with_feature: bool = True  # False: the feature's stories are filtered out of the pretraining split
    eval_n: int = 256  # held-out feature stories for the loss


@dataclass(frozen=True, kw_only=True)
class StoryDeletionConfig:
    """Deletion fine-tuning (protocol §7.3) on the fine-tuning split; constant LR in the study."""

    deletion: (
        DeletionConfig  # kind: filter (F), filter_random_labels (F+RR), filter_mix_match (F+MM), refusal
    )
    train: TrainConfig
    lr_level: str | None = None  # "M" or "S": the study's eta_M / eta_S, for the record
    eval_n: int = 256

    def __post_init__(self) -> None:
        if self.deletion.kind == "recovery":
            raise ConfigError("deletion kind 'recovery' keeps the feature; use run_story_recovery instead")
        if self.lr_level is not None and self.lr_level not in LEVELS:
            raise ConfigError(f"lr_level {self.lr_level!r} is unknown; use M or S")


@dataclass(frozen=True, kw_only=True)
class StoryRecoveryConfig:
    """Recovery (the study's reverse fine-tuning) on fine-tuning stories that have the feature."""

    train: TrainConfig  # give eval_steps (log-spaced) for the loss curve
    score_steps: tuple[int, ...] = (0,)  # steps at which the generation score is measured (Table 1 columns)
    n_generations: int = 128  # sampled stories per score
    max_new_tokens: int = 128
    temperature: float = 1.0
    eval_n: int = 256

    def __post_init__(self) -> None:
        if any(s < 0 or s > self.train.steps for s in self.score_steps):
            raise ConfigError(f"score_steps {self.score_steps} must lie in [0, steps={self.train.steps}]")
        if self.n_generations < 1:
            raise ConfigError(f"n_generations {self.n_generations} must be >= 1, e.g. 128")
        if self.max_new_tokens < 1 or self.temperature < 0:
            raise ConfigError("max_new_tokens must be >= 1 and temperature >= 0")


def _feature_eval(
    data: StoryDataConfig, tokenizer: StoryTokenizer, splits: StorySplits, n: int
) -> EncodedStories:
    records = keep_feature(splits.test, data.feature)[:n]
    if not records:
        raise DataError(f"the test split has no story with {data.feature!r}")
    return encode_stories(tokenizer, records, data, salt=21)


def _train_with_loss(
    model: torch.nn.Module,
    stories: EncodedStories,
    train_config: TrainConfig,
    eval_stories: EncodedStories,
    out: Path,
    *,
    extra: Callable[[int], dict] | None = None,
) -> tuple[TrainResult, list[dict]]:
    """Train on ``stories``; at each evaluation record the feature-story loss (and ``extra(step)``)."""
    curve: list[dict] = []

    def on_eval(row: Mapping[str, Any]) -> None:
        point = {"step": row["step"], "feature_loss": story_loss(model, eval_stories)}
        if extra is not None:
            point.update(extra(row["step"]))
        curve.append(point)

    config = dataclasses.replace(train_config, loss="sequence")
    result = train(
        model,
        story_batch_fn(stories, config.batch_size, config.seed),
        config,
        out_dir=out,
        progress=False,
        on_eval=on_eval,
    )
    return result, curve


def pretrain_records(config: StoryPretrainConfig, splits: StorySplits) -> list[StoryRecord]:
    """The pretraining stories: the pretraining split, without the feature's stories for the control."""
    if config.with_feature:
        return list(splits.pretrain)
    return drop_feature(splits.pretrain, config.data.feature)


def run_story_pretrain(
    config: StoryPretrainConfig, out_dir: str | Path, *, tokenizer: StoryTokenizer | None = None
) -> dict:
    """Pretrain a story model (with or without the feature) from scratch; save it with its tokenizer."""
    out = Path(out_dir)
    tokenizer = tokenizer or build_story_tokenizer(config.data)
    splits = build_story_splits(config.data, tokenizer)
    stories = encode_stories(tokenizer, pretrain_records(config, splits), config.data, salt=1)
    model_config = config.model.for_task(d_vocab=tokenizer.vocab_size, n_ctx=config.data.n_ctx)
    model = build_model(model_config, device=config.train.device)
    eval_stories = _feature_eval(config.data, tokenizer, splits, config.eval_n)
    result, curve = _train_with_loss(model, stories, config.train, eval_stories, out)
    summary = {
        "stage": "pretrain",
        "with_feature": config.with_feature,
        "n_train": len(stories),
        "splits": splits.to_json(),
        "loss_curve": curve,
        "final_train_loss": result.history[-1]["train_loss"],
        "wall_seconds": result.wall_seconds,
    }
    meta = {"data": to_dict(config.data), "stage": "pretrain", "stage_config": to_dict(config), **summary}
    save_story_checkpoint(out, model, model_config, tokenizer, meta)
    write_json(out / "stage.json", summary)
    return summary


def run_story_deletion(config: StoryDeletionConfig, base_dir: str | Path, out_dir: str | Path) -> dict:
    """Fine-tune ``base_dir``'s model on a deletion set of its own fine-tuning split; save it."""
    base = load_story_checkpoint(base_dir, device=config.train.device)
    data = base.data
    if config.deletion.feature != data.feature:
        raise ConfigError(
            f"deletion feature {config.deletion.feature!r} differs from the data's {data.feature!r}"
        )
    splits = build_story_splits(data, base.tokenizer)
    records = build_deletion_set(splits.finetune, config.deletion)
    stories = encode_stories(base.tokenizer, records, data, salt=2)
    eval_stories = _feature_eval(data, base.tokenizer, splits, config.eval_n)
    result, curve = _train_with_loss(base.model, stories, config.train, eval_stories, Path(out_dir))
    summary = {
        "stage": "deletion",
        "dataset": config.deletion.name,
        "lr": config.train.lr,
        "lr_level": config.lr_level,
        "n_train": len(stories),
        "loss_curve": curve,
        "wall_seconds": result.wall_seconds,
    }
    meta = {
        "data": to_dict(data),
        "stage": "deletion",
        "stage_config": to_dict(config),
        "base": str(base_dir),
    }
    save_story_checkpoint(out_dir, base.model, base.model_config, base.tokenizer, {**meta, **summary})
    write_json(Path(out_dir) / "stage.json", summary)
    return summary


def run_story_recovery(config: StoryRecoveryConfig, start_dir: str | Path, out_dir: str | Path) -> dict:
    """Train ``start_dir``'s model on fine-tuning stories with the feature; record loss and generation scores.

    Writes ``recovery.json`` (loss curve, scores at ``score_steps``, the generations) and the final checkpoint.
    The generation seed depends only on the train seed, so every start and step is scored with the same draws
    (common random numbers make differences between models less noisy).
    """
    start = load_story_checkpoint(start_dir, device=config.train.device)
    data, tokenizer = start.data, start.tokenizer
    splits = build_story_splits(data, tokenizer)
    stories = encode_stories(tokenizer, keep_feature(splits.finetune, data.feature), data, salt=2)
    eval_stories = _feature_eval(data, tokenizer, splits, config.eval_n)
    eval_steps = tuple(sorted(set(config.train.eval_steps or ()) | set(config.score_steps)))
    train_config = dataclasses.replace(config.train, eval_steps=eval_steps)
    generations: dict[str, list[str]] = {}

    def extra(step: int) -> dict:
        if step not in config.score_steps:
            return {}
        score = score_model(
            start.model,
            tokenizer,
            data,
            splits,
            n_generations=config.n_generations,
            max_new_tokens=config.max_new_tokens,
            seed=generation_seed(config.train.seed),
            temperature=config.temperature,
        )
        generations[str(step)] = list(score.texts)
        return {"score": score.to_json()}

    result, curve = _train_with_loss(
        start.model, stories, train_config, eval_stories, Path(out_dir), extra=extra
    )
    summary = {
        "stage": "recovery",
        "start": str(start_dir),
        "start_stage": start.metadata.get("stage"),
        "lr": config.train.lr,
        "n_train": len(stories),
        "loss_curve": [{k: v for k, v in p.items() if k != "score"} for p in curve],
        "scores": {str(p["step"]): p["score"] for p in curve if "score" in p},
        "wall_seconds": result.wall_seconds,
    }
    write_json(Path(out_dir) / "recovery.json", summary)
    write_json(Path(out_dir) / "generations.json", generations)
    meta = {
        "data": to_dict(data),
        "stage": "recovery",
        "stage_config": to_dict(config),
        "start": str(start_dir),
    }
    save_story_checkpoint(out_dir, start.model, start.model_config, tokenizer, meta)
    return summary
