"""The TinyStories study end to end (protocol §7): pretraining with and without the feature, deletion at two LRs,
recovery of every deleted model and of the never-had-it control with one recipe, generation scores with Wilson
intervals, feature probes per block, ``results.json`` laid out like the study's Table 1 and Fig. 11, and
``report.html``.

Every stage is a job of ``interp.sweeps`` in a directory keyed by a hash of its arguments, so a re-run redoes only
what is missing; jobs are deterministic functions of their arguments. One tokenizer is trained per setting and
shared by every model of that setting.

CPU scale (``cpu_study_config``): a LLaMA-style model of about 0.26M parameters (``llama_cpu`` shrunk to d_model
64, 3 blocks, SwiGLU hidden 168; smaller than the 1-5M target so the whole study fits about 20 minutes on two
shared cores). LRs keep the study's ratios: eta_M = eta_PT / 10 and eta_S = eta_PT / 100 (the study's 1e-4 and
1e-5 against 1e-3), and recovery runs at eta_S (the study's 1e-5). The Table 1 columns 0 / 30 / 300 / 3000 become
0 / R/100 / R/10 / R for R recovery steps. ``gpu_study_config`` gives the study's sizes with ``llama_91m``.
"""

import argparse
import dataclasses
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from interp.config import from_dict, load_config, to_dict
from interp.errors import ConfigError, DataError, FtmechError
from interp.models import PRESETS as MODEL_PRESETS
from interp.models import ModelConfig, n_params
from interp.revival import log_spaced_steps, revival_curve, speedup
from interp.stats import wilson_ci
from interp.sweeps import Job, JobResult, run_dir, run_jobs
from interp.training import PRECISIONS, TrainConfig
from procedural_tasks.story_protocols import (
    StoryDataConfig,
    StoryDeletionConfig,
    StoryPretrainConfig,
    StoryRecoveryConfig,
    build_story_splits,
    build_story_tokenizer,
    feature_judges,
    feature_probes,
    judged_count,
    load_story_checkpoint,
    probe_batch,
    run_story_deletion,
    run_story_pretrain,
    run_story_recovery,
    score_model,
    study_probe_config,
    write_json,
)
from procedural_tasks.story_tokenizer import StoryTokenizer
from procedural_tasks.tinystories import DeletionConfig, shared_sample_dir

DELETION_KINDS = ("filter", "filter_random_labels", "filter_mix_match")
KIND_LABELS = {"filter": "F", "filter_random_labels": "F+RR", "filter_mix_match": "F+MM"}
CONTROL = "Not in PT"
PRETRAINED = "Present in PT"
LR_LEVELS = ("M", "S")
LR_DIVISORS = {"M": 10.0, "S": 100.0}  # eta_level = eta_PT / divisor (study: 1e-4 and 1e-5 against 1e-3)


@dataclass(frozen=True, kw_only=True)
class TinyStoriesStudyConfig:
    """One setting of the TinyStories study: its data, model, stage lengths, LRs and evaluation sizes."""

    setting: Literal["synthetic", "shared"] = (
        "synthetic"  # synthetic (planted twist) | shared (real, dialogue)
    )
    feature: str = "twist"  # the deleted and recovered feature (shared: dialogue)
    seeds: tuple[int, ...] = (0, 1)  # model seeds (initialisation, batch order, generation draws)
    model: ModelConfig = dataclasses.replace(
        MODEL_PRESETS["llama_cpu"], d_model=64, n_layers=3, n_heads=4, d_mlp=168
    )  # LLaMA-style architecture; d_vocab and n_ctx come from the tokenizer and data
    n_stories: int = 6000  # synthetic corpus size (shared: the whole sample)
    fields: tuple[str, ...] = ("words", "features")  # Instruct lines (the study uses all four)
    max_story_chars: int | None = 400  # shared: stories cut at a sentence boundary (labels recomputed after)
    n_ctx: int = 144  # tokens per text at most
    vocab_size: int = 1024  # tokenizer vocabulary bound
    split: tuple[float, float, float] = (0.7, 0.2, 0.1)  # pretrain / finetune / test fractions
    data_seed: int = 0  # one corpus and tokenizer per setting, shared by all model seeds
    batch_size: int = 32  # sequences per step in every stage
    pretrain_steps: int = 400
    pretrain_lr: float = 6e-3  # eta_PT; warmup then cosine (the study's 1e-3 for 91M)
    warmup_frac: float = 0.1  # pretraining warmup fraction
    deletion_kinds: tuple[str, ...] = (
        "filter",
    )  # F; add filter_random_labels (F+RR), filter_mix_match (F+MM)
    lr_levels: tuple[str, ...] = ("M", "S")  # deletion LRs eta_M = eta_PT/10, eta_S = eta_PT/100
    deletion_steps: int = 100  # constant LR, no warmup (study: 4000)
    recovery_steps: int = 100  # R, the 3000-analogue; a multiple of 100 (columns 0, R/100, R/10, R)
    recovery_lr_level: str = "S"  # recovery LR level (study: 1e-5 = eta_S)
    n_generations: int = 128  # generations per score point and seed (the study used 16)
    max_new_tokens: int = 130  # sampled tokens per story at most (clamped to n_ctx)
    eval_n: int = 128  # held-out feature stories for the loss
    probe_steps: int = 1000  # probe optimiser steps (study: 2000 at batch 128)
    probe_test_frac: float = 0.5  # held-out fraction of the probe stories (the test split)
    loss_tolerance: float = (
        0.05  # recovered (loss) when the feature loss <= pretrained loss x (1 + tolerance)
    )
    score_threshold_frac: float = 0.9  # recovered (score) when the score >= this x the pretrained model's
    precision: str = "fp32"  # fp32, or bf16 autocast for GPUs (gpu_study_config)
    device: str = "auto"

    def __post_init__(self) -> None:
        _ = self.data  # validates setting, feature and the data sizes
        if len(self.seeds) < 2 or len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"seeds {self.seeds} must be at least two distinct seeds, e.g. --seeds 2")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision {self.precision!r} must be one of {', '.join(PRECISIONS)}")
        bad = [k for k in self.deletion_kinds if k not in DELETION_KINDS]
        if bad or not self.deletion_kinds:
            raise ConfigError(
                f"deletion_kinds {self.deletion_kinds} must be a non-empty subset of {DELETION_KINDS}"
            )
        if self.setting == "shared" and "filter_mix_match" in self.deletion_kinds:
            raise ConfigError("F+MM relabels foreshadowing, which the shared sample does not label; drop it")
        if not self.lr_levels or any(lvl not in LR_LEVELS for lvl in self.lr_levels):
            raise ConfigError(f"lr_levels {self.lr_levels} must be a non-empty subset of {LR_LEVELS}")
        if self.recovery_lr_level not in LR_LEVELS:
            raise ConfigError(f"recovery_lr_level {self.recovery_lr_level!r} must be M or S")
        if self.recovery_steps < 100 or self.recovery_steps % 100:
            raise ConfigError(
                f"recovery_steps {self.recovery_steps} must be a positive multiple of 100, e.g. 100"
            )
        for name in (
            "pretrain_steps",
            "deletion_steps",
            "batch_size",
            "n_generations",
            "eval_n",
            "probe_steps",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 < self.pretrain_lr < 1:
            raise ConfigError(f"pretrain_lr {self.pretrain_lr} must be in (0, 1), e.g. 6e-3")
        if not 0 <= self.warmup_frac < 1 or not 0 < self.probe_test_frac < 1:
            raise ConfigError("warmup_frac must be in [0, 1) and probe_test_frac in (0, 1)")
        if self.loss_tolerance < 0 or not 0 < self.score_threshold_frac <= 1:
            raise ConfigError("loss_tolerance must be >= 0 and score_threshold_frac in (0, 1]")

    @property
    def data(self) -> StoryDataConfig:
        return StoryDataConfig(
            setting=self.setting,
            feature=self.feature,
            n_stories=self.n_stories,
            fields=self.fields,
            max_story_chars=self.max_story_chars,
            n_ctx=self.n_ctx,
            vocab_size=self.vocab_size,
            split=self.split,
            seed=self.data_seed,
        )

    @property
    def name(self) -> str:
        return f"{self.setting}-{self.feature}"

    def lr(self, level: str) -> float:
        return self.pretrain_lr / LR_DIVISORS[level]

    @property
    def score_steps(self) -> tuple[int, ...]:
        """The Table 1 columns: 0, R/100, R/10, R (the study's 0 / 30 / 300 / 3000)."""
        r = self.recovery_steps
        return (0, r // 100, r // 10, r)


def cpu_study_config(setting: str = "synthetic", **overrides: Any) -> TinyStoriesStudyConfig:
    """The CPU-scale study of one setting (synthetic twist or shared-sample dialogue)."""
    if setting == "synthetic":
        base = TinyStoriesStudyConfig(setting="synthetic", feature="twist", split=(0.7, 0.2, 0.1))
    elif setting == "shared":
        base = TinyStoriesStudyConfig(
            setting="shared", feature="dialogue", split=(0.6, 0.2, 0.2), fields=("features",)
        )
    else:
        raise ConfigError(f"setting {setting!r} is unknown; use synthetic or shared")
    return dataclasses.replace(base, **overrides)


def gpu_study_config(setting: str = "synthetic", **overrides: Any) -> TinyStoriesStudyConfig:
    """The study's sizes (protocol §7.2-7.4) with the 91M ``llama_91m`` model, for a GPU."""
    base = cpu_study_config(setting)
    sizes: dict[str, Any] = {
        "model": MODEL_PRESETS["llama_91m"],
        "n_stories": 200_000,
        "fields": ("words", "features", "summary", "sentence") if setting == "synthetic" else base.fields,
        "max_story_chars": None,
        "n_ctx": 512,
        "vocab_size": 8192,
        "batch_size": 128,
        "pretrain_steps": 30_000,
        "pretrain_lr": 1e-3,
        "deletion_kinds": DELETION_KINDS if setting == "synthetic" else ("filter", "filter_random_labels"),
        "deletion_steps": 4000,
        "recovery_steps": 3000,
        "n_generations": 256,
        "max_new_tokens": 350,
        "eval_n": 512,
        "precision": "bf16",
        "probe_steps": 2000,
        "device": "cuda",
    }
    return dataclasses.replace(base, **{**sizes, **overrides})


# ----------------------------------------------------------------------------------------------------------------
# Jobs: top-level functions of JSON-native arguments, run in worker processes


def _pretrain_train(config: TinyStoriesStudyConfig, seed: int) -> TrainConfig:
    return TrainConfig(
        steps=config.pretrain_steps,
        batch_size=config.batch_size,
        lr=config.pretrain_lr,
        weight_decay=0.1,
        betas=(0.9, 0.95),
        warmup_frac=config.warmup_frac,
        eval_every=max(1, config.pretrain_steps // 4),
        loss="sequence",
        seed=seed,
        device=config.device,
        precision=config.precision,
    )


def _finetune_train(
    config: TinyStoriesStudyConfig, seed: int, steps: int, lr: float, eval_steps
) -> TrainConfig:
    return TrainConfig(
        steps=steps,
        batch_size=config.batch_size,
        lr=lr,
        weight_decay=0.1,
        betas=(0.9, 0.95),
        schedule="constant",
        warmup_frac=0.0,
        eval_steps=tuple(eval_steps),
        loss="sequence",
        seed=seed,
        device=config.device,
        precision=config.precision,
    )


def job_tokenizer(*, out_dir: Path, data: dict) -> dict:
    """Train the setting's tokenizer on its pretraining texts; write ``tokenizer.json``."""
    tokenizer = build_story_tokenizer(from_dict(StoryDataConfig, data))
    tokenizer.save(out_dir / "tokenizer.json")
    return {"vocab_size": tokenizer.vocab_size}


def job_pretrain(*, out_dir: Path, stage: dict, tokenizer_dir: str) -> dict:
    """Pretrain one model (the feature present, or the never-had-it control)."""
    config = from_dict(StoryPretrainConfig, stage)
    tokenizer = StoryTokenizer.load(Path(tokenizer_dir) / "tokenizer.json")
    summary = run_story_pretrain(config, out_dir, tokenizer=tokenizer)
    return {
        "final_feature_loss": summary["loss_curve"][-1]["feature_loss"],
        "wall_seconds": summary["wall_seconds"],
    }


def job_deletion(*, out_dir: Path, stage: dict, base: str) -> dict:
    """Deletion fine-tuning of a pretrained model."""
    summary = run_story_deletion(from_dict(StoryDeletionConfig, stage), base, out_dir)
    return {
        "final_feature_loss": summary["loss_curve"][-1]["feature_loss"],
        "wall_seconds": summary["wall_seconds"],
    }


def job_recovery(*, out_dir: Path, stage: dict, start: str) -> dict:
    """Recovery fine-tuning of a deleted model or of the control, with loss and generation scores."""
    summary = run_story_recovery(from_dict(StoryRecoveryConfig, stage), start, out_dir)
    return {"wall_seconds": summary["wall_seconds"]}


def job_analysis(
    *,
    out_dir: Path,
    models: dict,
    seed: int,
    n_generations: int,
    max_new_tokens: int,
    probe_steps: int,
    probe_test_frac: float,
    device: str,
) -> dict:
    """The pretrained model's generation score and feature loss (the recovery targets), and feature probes per
    block for every model in ``models`` ({name: checkpoint dir}; the first is the pretrained one)."""
    t0 = time.time()
    names = list(models)
    first = load_story_checkpoint(models[names[0]], device=device)
    data, tokenizer = first.data, first.tokenizer
    splits = build_story_splits(data, tokenizer)
    score = score_model(
        first.model,
        tokenizer,
        data,
        splits,
        n_generations=n_generations,
        max_new_tokens=max_new_tokens,
        seed=seed * 100_003 + 17,
    )
    features = data.labelled_features
    batch = probe_batch(tokenizer, splits.test, features, n_ctx=data.n_ctx, seed=seed)
    probe_config = dataclasses.replace(
        study_probe_config(steps=probe_steps, seed=seed), test_frac=probe_test_frac
    )
    probes = {}
    for name in names:
        ckpt = first if name == names[0] else load_story_checkpoint(models[name], device=device)
        probes[name] = feature_probes(ckpt.model, batch, config=probe_config).to_json()
    payload = {
        "pretrained_score": score.to_json(n_texts=8),
        "pretrained_feature_loss": first.metadata["loss_curve"][-1]["feature_loss"],
        "n_params": n_params(first.model),
        "features": list(features),
        "n_probe_stories": len(batch),
        "probes": probes,
        "wall_seconds": time.time() - t0,
    }
    write_json(out_dir / "analysis.json", payload)
    return {"pretrained_rate": {k: v["rate"] for k, v in payload["pretrained_score"]["judges"].items()}}


# ----------------------------------------------------------------------------------------------------------------
# The plan


def deletion_name(kind: str, level: str) -> str:
    """The study's row name, e.g. ``F (eta_M)``."""
    return f"{KIND_LABELS[kind]} (eta_{level})"


@dataclass(frozen=True)
class Plan:
    """The jobs of one setting and which directory holds which run."""

    config: TinyStoriesStudyConfig
    jobs: list[Job]
    tokenizer: Path
    pretrain: dict[tuple[int, bool], Path]  # (seed, with_feature) -> dir
    deletion: dict[tuple[int, str], Path]  # (seed, row name) -> dir
    recovery: dict[tuple[int, str], Path]  # (seed, row name or CONTROL) -> dir
    analysis: dict[int, Path]


def plan_study(config: TinyStoriesStudyConfig, root: Path) -> Plan:
    """Every job of one setting with its content-addressed directory under ``root``."""
    jobs: list[Job] = []
    keys: dict[Path, str] = {}

    def add(stage: str, fn: str, kwargs: dict[str, Any], deps: Sequence[Path] = ()) -> Path:
        out = run_dir(root, stage, kwargs)
        keys[out] = f"{config.name}/{stage}/{out.name}"
        jobs.append(
            Job(
                key=keys[out],
                fn=f"analyses.tinystories_study:{fn}",
                out_dir=out,
                kwargs=kwargs,
                deps=tuple(keys[d] for d in deps),
            )
        )
        return out

    data = config.data
    tokenizer = add("tokenizer", "job_tokenizer", {"data": to_dict(data)})
    pretrain, deletion, recovery, analysis = {}, {}, {}, {}
    fine_evals = log_spaced_steps(config.deletion_steps, 4)
    recovery_evals = log_spaced_steps(config.recovery_steps, 8)
    for seed in config.seeds:
        model = dataclasses.replace(config.model, seed=seed)
        for with_feature in (True, False):
            stage = StoryPretrainConfig(
                data=data,
                model=model,
                train=_pretrain_train(config, seed),
                with_feature=with_feature,
                eval_n=config.eval_n,
            )
            pretrain[seed, with_feature] = add(
                "pretrain",
                "job_pretrain",
                {"stage": to_dict(stage), "tokenizer_dir": str(tokenizer)},
                [tokenizer],
            )
        starts = {}
        for kind in config.deletion_kinds:
            for level in config.lr_levels:
                stage = StoryDeletionConfig(
                    deletion=DeletionConfig(kind=kind, feature=config.feature, seed=seed),
                    train=_finetune_train(config, seed, config.deletion_steps, config.lr(level), fine_evals),
                    lr_level=level,
                    eval_n=config.eval_n,
                )
                base = pretrain[seed, True]
                name = deletion_name(kind, level)
                deletion[seed, name] = add(
                    "deletion", "job_deletion", {"stage": to_dict(stage), "base": str(base)}, [base]
                )
                starts[name] = deletion[seed, name]
        starts[CONTROL] = pretrain[seed, False]
        recovery_stage = StoryRecoveryConfig(
            train=_finetune_train(
                config, seed, config.recovery_steps, config.lr(config.recovery_lr_level), recovery_evals
            ),
            score_steps=config.score_steps,
            n_generations=config.n_generations,
            max_new_tokens=config.max_new_tokens,
            eval_n=config.eval_n,
        )
        for name, start in starts.items():
            recovery[seed, name] = add(
                "recovery", "job_recovery", {"stage": to_dict(recovery_stage), "start": str(start)}, [start]
            )
        models = {PRETRAINED: str(pretrain[seed, True])}
        models |= {name: str(d) for (s, name), d in deletion.items() if s == seed}
        models[CONTROL] = str(pretrain[seed, False])
        analysis[seed] = add(
            "analysis",
            "job_analysis",
            {
                "models": models,
                "seed": seed,
                "n_generations": config.n_generations,
                "max_new_tokens": config.max_new_tokens,
                "probe_steps": config.probe_steps,
                "probe_test_frac": config.probe_test_frac,
                "device": config.device,
            },
            [Path(p) for p in models.values()],
        )
    return Plan(config, jobs, tokenizer, pretrain, deletion, recovery, analysis)


# ----------------------------------------------------------------------------------------------------------------
# Results


def _read(path: Path) -> dict:
    return json.loads(path.read_text())


def _pooled(counts: Sequence[dict]) -> dict:
    """Sum k and n over seeds; the Wilson interval of the pooled rate (seeds treated as extra samples)."""
    k, n = sum(c["k"] for c in counts), sum(c["n"] for c in counts)
    return judged_count(k, n).to_json()


def _primary_judge(judges: Sequence[str]) -> str:
    return "loose" if "loose" in judges else judges[0]


def _probe_rows(probes: dict, feature_index: int) -> list[dict]:
    """Per layer: held-out accuracy of one feature, with k of n for a Wilson interval."""
    rows = []
    for i, layer in enumerate(probes["layers"]):
        acc = layer["feature_accuracy"][feature_index]
        rows.append(
            {
                "layer": f"B{i}",
                "hook": layer["hook"],
                "accuracy": acc,
                "n": layer["n_test"],
                "k": int(round(acc * layer["n_test"])),
                "control_accuracy": layer.get("control_accuracy"),
            }
        )
    return rows


def collect_results(plan: Plan, results: Sequence[JobResult], *, wall_seconds: float) -> dict:
    """``results.json`` of one setting from the finished job directories (missing jobs are listed, not guessed)."""
    config = plan.config
    failed = [r.key for r in results if not r.ok and r.key.startswith(config.name + "/")]
    analyses = {
        s: _read(d / "analysis.json") for s, d in plan.analysis.items() if (d / "analysis.json").is_file()
    }
    recoveries = {
        k: _read(d / "recovery.json") for k, d in plan.recovery.items() if (d / "recovery.json").is_file()
    }
    deletions = {k: _read(d / "stage.json") for k, d in plan.deletion.items() if (d / "stage.json").is_file()}
    pretrains = {k: _read(d / "stage.json") for k, d in plan.pretrain.items() if (d / "stage.json").is_file()}
    seeds = list(config.seeds)
    rows = [deletion_name(k, lvl) for k in config.deletion_kinds for lvl in config.lr_levels] + [CONTROL]
    judges = list(feature_judges(config.setting, config.feature))
    primary = _primary_judge(judges)
    steps = list(config.score_steps)
    out: dict[str, Any] = {
        "setting": config.setting,
        "feature": config.feature,
        "config": to_dict(config),
        "wall_seconds": wall_seconds,
        "failed_jobs": failed,
        "judges": judges,
        "primary_judge": primary,
        "lrs": {
            "pretrain": config.pretrain_lr,
            **{f"eta_{lvl}": config.lr(lvl) for lvl in LR_LEVELS},
            "recovery": config.lr(config.recovery_lr_level),
        },
    }
    if not analyses or not recoveries:
        out["complete"] = False
        return out
    any_analysis = next(iter(analyses.values()))
    out["n_params"] = any_analysis["n_params"]
    out["splits"] = next(iter(pretrains.values()))["splits"] if pretrains else None

    pretrained = {
        j: _pooled([analyses[s]["pretrained_score"]["judges"][j] for s in analyses]) for j in judges
    }
    out["pretrained"] = {
        "score": pretrained,
        "score_per_seed": {s: analyses[s]["pretrained_score"]["judges"] for s in analyses},
        "feature_loss_per_seed": {s: analyses[s]["pretrained_feature_loss"] for s in analyses},
        "examples": any_analysis["pretrained_score"]["examples"],
    }
    control_pretrain_loss = {
        s: pretrains[s, False]["loss_curve"][-1]["feature_loss"] for s in seeds if (s, False) in pretrains
    }
    out["control_pretrained_feature_loss_per_seed"] = control_pretrain_loss

    from analyses.paper_numbers import TINYSTORIES_TABLE1, TINYSTORIES_TABLE1_STEPS

    table: dict[str, Any] = {
        "columns": steps,
        "study_columns": list(TINYSTORIES_TABLE1_STEPS),
        "study_percent_twist": {row: list(v) for row, v in TINYSTORIES_TABLE1.items()},
        "rows": {},
    }
    for row in rows:
        per_seed = {s: recoveries[s, row]["scores"] for s in seeds if (s, row) in recoveries}
        if not per_seed:
            continue
        pooled = {
            str(step): {j: _pooled([per_seed[s][str(step)]["judges"][j] for s in per_seed]) for j in judges}
            for step in steps
        }
        table["rows"][row] = {
            "pooled": pooled,
            "per_seed": {s: {st: v["judges"] for st, v in sc.items()} for s, sc in per_seed.items()},
            "examples_at_0": next(iter(per_seed.values()))["0"]["examples"],
        }
    out["table1"] = table

    curves: dict[str, Any] = {}
    revival: dict[str, Any] = {}
    for row in rows:
        per_seed = [(s, recoveries[s, row]["loss_curve"]) for s in seeds if (s, row) in recoveries]
        if not per_seed:
            continue
        x = [p["step"] for p in per_seed[0][1]]
        curves[row] = {
            "steps": x,
            "per_seed": [[p["feature_loss"] for p in c] for _, c in per_seed],
            "seeds": [s for s, _ in per_seed],
        }
        revival[row] = {}
        for s, curve in per_seed:
            ref_loss = analyses[s]["pretrained_feature_loss"] if s in analyses else None
            if ref_loss is None:
                continue
            threshold = ref_loss * (1 + config.loss_tolerance)
            loss_curve = revival_curve(
                f"{row} seed {s}",
                [p["step"] for p in curve],
                [-p["feature_loss"] for p in curve],
                threshold=-threshold,
                horizon=config.recovery_steps,
            )
            ref_rate = analyses[s]["pretrained_score"]["judges"][primary]["rate"]
            scores = recoveries[s, row]["scores"]
            score_curve = revival_curve(
                f"{row} seed {s}",
                steps,
                [scores[str(st)]["judges"][primary]["rate"] for st in steps],
                threshold=config.score_threshold_frac * ref_rate,
                horizon=config.recovery_steps,
            )
            revival[row][s] = {
                "loss": {
                    "threshold": threshold,
                    "steps_to_threshold": loss_curve.steps_to_threshold,
                    "auc_neg_loss": loss_curve.auc,
                    "start_loss": curve[0]["feature_loss"],
                    "final_loss": curve[-1]["feature_loss"],
                },
                "score": {
                    "threshold": score_curve.threshold,
                    "steps_to_threshold": score_curve.steps_to_threshold,
                },
                "_loss_curve": loss_curve,
                "_score_curve": score_curve,
            }
    for row in rows:
        if row == CONTROL or row not in revival:
            continue
        for s, entry in revival[row].items():
            control = revival.get(CONTROL, {}).get(s)
            if control is None:
                continue
            entry["loss"]["speedup_vs_control"] = speedup(
                entry["_loss_curve"], control["_loss_curve"]
            ).to_json()
            entry["score"]["speedup_vs_control"] = speedup(
                entry["_score_curve"], control["_score_curve"]
            ).to_json()
    for row in revival.values():
        for entry in row.values():
            entry.pop("_loss_curve"), entry.pop("_score_curve")
    out["revival"] = revival

    features = any_analysis["features"]
    fi = features.index(config.feature)
    probe_models = list(any_analysis["probes"])
    probe_table: dict[str, Any] = {}
    for name in probe_models:
        per_seed = {s: _probe_rows(analyses[s]["probes"][name], fi) for s in analyses}
        layers = [r["layer"] for r in next(iter(per_seed.values()))]
        pooled = []
        for li, layer in enumerate(layers):
            k = sum(per_seed[s][li]["k"] for s in per_seed)
            n = sum(per_seed[s][li]["n"] for s in per_seed)
            low, high = wilson_ci(k, n)
            pooled.append(
                {
                    "layer": layer,
                    "accuracy": k / n,
                    "ci_low": low,
                    "ci_high": high,
                    "n": n,
                    "per_seed": [per_seed[s][li]["accuracy"] for s in per_seed],
                    "control_task_accuracy": float(
                        np.mean([per_seed[s][li]["control_accuracy"] for s in per_seed])
                    ),
                }
            )
        all_features = {
            f: [
                float(
                    np.mean(
                        [analyses[s]["probes"][name]["layers"][li]["feature_accuracy"][j] for s in analyses]
                    )
                )
                for li in range(len(layers))
            ]
            for j, f in enumerate(features)
        }
        probe_table[name] = {
            "feature": pooled,
            "all_features_mean_over_seeds": all_features,
            "majority_floor_all_features": analyses[next(iter(analyses))]["probes"][name]["layers"][0][
                "majority_floor"
            ],
        }
    floors = probe_feature_floors(plan, sorted(analyses))
    out["fig11"] = {
        "probe_accuracy": probe_table,
        "feature_majority_floor": floors,
        "recovery_loss": curves,
        "probe_feature": config.feature,
        "n_probe_stories": any_analysis["n_probe_stories"],
    }

    out["deletion"] = {}
    for row in rows[:-1]:
        per = [deletions[s, row] for s in seeds if (s, row) in deletions]
        if not per or row not in table["rows"]:
            continue
        out["deletion"][row] = {
            "feature_loss_before": [analyses[s]["pretrained_feature_loss"] for s in seeds if s in analyses],
            "feature_loss_after": [d["loss_curve"][-1]["feature_loss"] for d in per],
            "score_before": pretrained,
            "score_after": table["rows"][row]["pooled"]["0"],
        }
    out["findings"] = findings(out, config, primary)
    out["complete"] = not failed
    return out


def findings(res: dict, config: TinyStoriesStudyConfig, primary: str) -> list[dict]:
    """The study's three claims, each with the numbers and whether it held here (criteria fixed in advance)."""
    out = []
    table = res["table1"]["rows"]
    before = res["pretrained"]["score"][primary]
    steps = [str(s) for s in config.score_steps]
    deleted: dict[str, bool] = {}
    for row, d in res["deletion"].items():
        after = d["score_after"][primary]
        out.append(
            {
                "claim": f"deletion {row} drives the generation score down",
                "criterion": "Wilson 95% CI of the deleted model's score (pooled over seeds) lies below the pretrained model's",
                "pretrained": before,
                "deleted": after,
                "loss_before_mean": float(np.mean(d["feature_loss_before"])),
                "loss_after_mean": float(np.mean(d["feature_loss_after"])),
                "held": after["ci_high"] < before["ci_low"],
            }
        )
        deleted[row] = out[-1]["held"]
    control_rows = table.get(CONTROL)
    for row in res["deletion"]:
        rev = res["revival"].get(row, {})
        ctrl = res["revival"].get(CONTROL, {})
        per_seed = []
        for s, entry in rev.items():
            c = ctrl.get(s)
            if c is None:
                continue
            mine, theirs = entry["loss"]["steps_to_threshold"], c["loss"]["steps_to_threshold"]
            faster = mine is not None and (theirs is None or mine < theirs)
            per_seed.append(
                {
                    "seed": s,
                    "steps_to_loss_threshold": mine,
                    "control_steps": theirs,
                    "control_censored": theirs is None,
                    "faster": faster,
                    "speedup": entry["loss"].get("speedup_vs_control"),
                }
            )
        early = {}
        for step in steps[1:3]:
            mine, theirs = table[row]["pooled"][step][primary], control_rows["pooled"][step][primary]
            early[step] = {"recovered": mine, "control": theirs, "higher": mine["ci_low"] > theirs["ci_high"]}
        # A deleted model already within the loss tolerance at step 0 has nothing to recover by this measure.
        vacuous = [p["seed"] for p in per_seed if p["steps_to_loss_threshold"] == 0]
        out.append(
            {
                "claim": f"recovery after {row} is faster than the never-had-it control (feature loss)",
                "criterion": (
                    "every seed reaches the pretrained model's feature loss x (1 + tolerance) in fewer recovery "
                    "steps than the control of the same seed (a control that never reaches it counts as slower); "
                    "not measurable where the deletion left the loss within the tolerance"
                ),
                "per_seed": per_seed,
                "not_measurable_seeds": vacuous,
                "held": None if vacuous or not per_seed else all(p["faster"] for p in per_seed),
            }
        )
        r10 = steps[2]
        out.append(
            {
                "claim": f"after {r10} recovery steps from {row} the generation score is above the control's",
                "criterion": (
                    f"pooled Wilson 95% CI of the score at step {r10} lies above the never-had-it control's; "
                    "not measurable where the deletion did not lower the score"
                ),
                "score_at_R/100_and_R/10": early,
                "held": early[r10]["higher"] if deleted[row] else None,
            }
        )
    probes = res["fig11"]["probe_accuracy"]
    summary = {
        name: {
            "mean_over_layers": float(np.mean([r["accuracy"] for r in p["feature"]])),
            "best_layer": max(p["feature"], key=lambda r: r["accuracy"]),
        }
        for name, p in probes.items()
    }
    for row in res["deletion"]:
        if row not in probes or CONTROL not in probes:
            continue
        layers_above = [
            r["layer"]
            for r, c in zip(probes[row]["feature"], probes[CONTROL]["feature"], strict=True)
            if r["ci_low"] > c["ci_high"]
        ]
        drop = [
            p["accuracy"] - d["accuracy"]
            for p, d in zip(probes[PRETRAINED]["feature"], probes[row]["feature"], strict=True)
        ]
        out.append(
            {
                "claim": f"after {row} the {config.feature} probe stays above the never-had-it model's",
                "criterion": "at some block the deleted model's probe accuracy CI lies above the control's (pooled Wilson 95%)",
                "layers_above_control": layers_above,
                "pretrained_minus_deleted_per_layer": drop,
                "summary": {k: summary[k] for k in (PRETRAINED, row, CONTROL)},
                "held": bool(layers_above),
            }
        )
    floor = res["fig11"]["feature_majority_floor"]
    above = [r["layer"] for r in probes[PRETRAINED]["feature"] if r["ci_low"] > floor["pooled"]]
    out.append(
        {
            "claim": f"the pretrained model's {config.feature} probe reads the feature above its majority floor",
            "criterion": "at some block the pooled Wilson 95% CI of the pretrained model's probe lies above the floor",
            "majority_floor": floor["pooled"],
            "layers_above_floor": above,
            "best_layer": summary[PRETRAINED]["best_layer"],
            "held": bool(above),
        }
    )
    return out


def _outcome(held: bool | None) -> str:
    """A finding's outcome as the report states it; None means the data cannot decide it."""
    return {True: "held", False: "did not hold"}.get(held, "not measurable")


def probe_feature_floors(plan: Plan, seeds: Sequence[int]) -> dict:
    """The majority-class floor of the probed feature on each seed's held-out probe split (and pooled).

    interp.probing reports one floor averaged over all features of a multi-label probe; this rebuilds the probe
    labels and the seeded split to give the floor of the one feature the study is about.
    """
    from interp.probing import split_indices

    config = plan.config
    data = config.data
    tokenizer = StoryTokenizer.load(plan.tokenizer / "tokenizer.json")
    test = build_story_splits(data, tokenizer).test
    labels = np.array([config.feature in r.features for r in test])
    per_seed, hits, total = {}, 0, 0
    for seed in seeds:
        train_idx, test_idx = split_indices(len(labels), config.probe_test_frac, seed)
        majority = labels[train_idx].mean() >= 0.5
        correct = int((labels[test_idx] == majority).sum())
        per_seed[seed] = correct / len(test_idx)
        hits, total = hits + correct, total + len(test_idx)
    return {"per_seed": per_seed, "pooled": hits / total if total else None}


# ----------------------------------------------------------------------------------------------------------------
# Report


def write_study_report(summaries: dict[str, dict], path: Path) -> Path | None:
    """report.html of one or more settings with interp.reports (None if a setting is incomplete)."""
    from interp.figures import bar_figure, curves_figure
    from interp.reports import Section, Table, write_report

    sections = []
    for name, res in summaries.items():
        if not res.get("complete") and "table1" not in res:
            continue
        primary = res["primary_judge"]
        steps = res["table1"]["columns"]
        rows = [
            (
                "pretrained (reference)",
                *(
                    f"{100 * res['pretrained']['score'][primary]['rate']:.0f}%" if i == 0 else ""
                    for i in range(len(steps))
                ),
            )
        ]
        table_rows = []
        for row, d in res["table1"]["rows"].items():
            cells = []
            for step in steps:
                c = d["pooled"][str(step)][primary]
                cells.append(
                    f"{100 * c['rate']:.0f}% [{100 * c['ci_low']:.0f}, {100 * c['ci_high']:.0f}] (n={c['n']})"
                )
            table_rows.append((row, *cells))
        sections.append(
            Section(
                title=f"{name}: Table 1, generation score during recovery",
                content=Table(
                    columns=(
                        "start",
                        *[
                            f"step {s} (study {t})"
                            for s, t in zip(steps, res["table1"]["study_columns"], strict=True)
                        ],
                    ),
                    rows=tuple(rows + table_rows),
                ),
                caption=(
                    f"Percentage of generated stories with the {res['feature']} (judge: {primary}), pooled over seeds, "
                    "with the Wilson 95% interval and the number of generations. The first row is the pretrained model."
                ),
            )
        )
        study = res["table1"]["study_percent_twist"]
        sections.append(
            Section(
                title=f"{name}: the study's Table 1 (twist, 91M model, GPT-3.5 judge, 16 generations a cell)",
                content=Table(
                    columns=("start", *[f"step {t}" for t in res["table1"]["study_columns"]]),
                    rows=tuple((row, *[f"{v}%" for v in values]) for row, values in study.items()),
                ),
                caption="Jain et al. 2023 Table 1 as printed (analyses.paper_numbers.TINYSTORIES_TABLE1), for comparison.",
            )
        )
        curves = res["fig11"]["recovery_loss"]
        series = [
            {"name": row, "x": [max(1, s) for s in c["steps"]], "ys": c["per_seed"]}
            for row, c in curves.items()
        ]
        ref = float(np.mean(list(res["pretrained"]["feature_loss_per_seed"].values())))
        sections.append(
            Section(
                title=f"{name}: Fig. 11b, feature-story loss during recovery",
                content=curves_figure(
                    series,
                    title="recovery loss",
                    x_title="recovery step (step 0 drawn at 1)",
                    y_title="story loss on feature stories",
                    log_x=True,
                    reference_lines={"pretrained": ref},
                ),
                caption="Mean over seeds with the min-max band; the dashed line is the pretrained model's loss.",
            )
        )
        probes = res["fig11"]["probe_accuracy"]
        series = [
            {
                "name": m,
                "x": [r["layer"] for r in p["feature"]],
                "ys": [list(v) for v in zip(*[r["per_seed"] for r in p["feature"]], strict=True)],
            }
            for m, p in probes.items()
        ]
        sections.append(
            Section(
                title=f"{name}: Fig. 11a, {res['feature']} probe accuracy per block",
                content=bar_figure(
                    series,
                    title="probe accuracy",
                    x_title="block (B0 = embedding output)",
                    y_title="held-out accuracy",
                    y_range=(0.0, 1.0),
                ),
                caption="Linear probe on the mean of the last 10 positions of each story, per block; mean over seeds, min-max whiskers.",
            )
        )
        sections.append(
            Section(
                title=f"{name}: findings",
                content=Table(
                    columns=("claim", "held", "criterion"),
                    rows=tuple((f["claim"], _outcome(f["held"]), f["criterion"]) for f in res["findings"]),
                ),
                caption="Each claim of the study with the criterion fixed before the run; the numbers are in results.json.",
            )
        )
    if not sections:
        return None
    intro = (
        "<p>Jain et al. 2023, TinyStories part (protocol §7), at CPU scale. Generation scores are judged by "
        "local rules, not GPT-3.5; see results.json for every number.</p>"
    )
    return write_report(
        path,
        title="ftmech: TinyStories deletion and recovery",
        intro_html=intro,
        sections=sections,
        data=summaries,
    )


# ----------------------------------------------------------------------------------------------------------------
# Entry points


def run_studies(
    configs: Sequence[TinyStoriesStudyConfig],
    out: Path,
    *,
    workers: int = 2,
    executor: str = "local",
    progress: bool = True,
) -> dict:
    """Run several settings as one sweep; write OUT/<setting>/results.json, OUT/results.json and OUT/report.html."""
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
    by_stage: dict[str, float] = {}
    for r in results:
        stage = r.key.split("/")[1]
        by_stage[stage] = by_stage.get(stage, 0.0) + (r.wall_s or 0.0)
    combined = {
        "wall_seconds": wall,  # this invocation only (finished jobs are reused, not rerun)
        "job_seconds_total": sum(by_stage.values()),  # every job's own run time, cached ones included
        "job_seconds_by_stage": by_stage,
        "workers": workers,
        "settings": summaries,
    }
    write_json(out / "results.json", combined)
    try:
        write_study_report(summaries, out / "report.html")
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


def run_study(config: TinyStoriesStudyConfig, out: Path, workers: int = 2, executor: str = "local") -> dict:
    """Run (or finish) one setting in ``out``; returns its results (also in OUT/results.json)."""
    return run_studies([config], out, workers=workers, executor=executor)["settings"][config.name]


def build_parser() -> argparse.ArgumentParser:
    from interp.cli import ArgParser

    p = ArgParser(
        prog="ftmech reproduce tinystories", description="Reproduce the TinyStories study end to end."
    )
    p.add_argument(
        "--setting",
        default="both",
        choices=["synthetic", "shared", "both"],
        help="synthetic twist, shared-sample dialogue, or both (default)",
    )
    p.add_argument(
        "--scale", default="cpu", choices=["cpu", "gpu"], help="cpu (minutes) or gpu (the study's 91M)"
    )
    p.add_argument("--seeds", type=int, help="number of model seeds, run as 0..N-1 (default 2)")
    p.add_argument(
        "--config", help="a TinyStoriesStudyConfig JSON/YAML file (one setting); flags override it"
    )
    p.add_argument("--deletion-kinds", help="comma-separated: filter,filter_random_labels,filter_mix_match")
    p.add_argument("--out", default="runs/tinystories", help="study directory (re-runs reuse finished jobs)")
    p.add_argument("--workers", type=int, default=2, help="parallel worker processes (one torch thread each)")
    p.add_argument("--executor", default="local", choices=["local", "ray"])
    p.add_argument("--device", help="auto (the default), cpu or cuda")
    p.add_argument("--no-progress", action="store_true")
    return p


def study_configs(args: argparse.Namespace) -> list[TinyStoriesStudyConfig]:
    """The configs named by the command-line flags."""
    if args.config:
        configs = [load_config(TinyStoriesStudyConfig, args.config)]
    else:
        settings = ["synthetic", "shared"] if args.setting == "both" else [args.setting]
        make = cpu_study_config if args.scale == "cpu" else gpu_study_config
        configs = []
        for setting in settings:
            if setting == "shared" and shared_sample_dir() is None:
                print(
                    "ftmech: skipping the shared setting: the TinyStories sample (../shared/data/tinystories) is absent"
                )
                continue
            configs.append(make(setting))
    overrides: dict[str, Any] = {}
    if args.seeds is not None:
        overrides["seeds"] = tuple(range(args.seeds))
    if args.device is not None:
        overrides["device"] = args.device
    if args.deletion_kinds:
        overrides["deletion_kinds"] = tuple(args.deletion_kinds.split(","))
    configs = [dataclasses.replace(c, **overrides) for c in configs]
    if not configs:
        raise DataError("no setting to run; pass --setting synthetic")
    return configs


def main(argv: Sequence[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    combined = run_studies(
        study_configs(args),
        Path(args.out),
        workers=args.workers,
        executor=args.executor,
        progress=not args.no_progress,
    )
    print(
        json.dumps(
            {
                "results": str(Path(args.out) / "results.json"),
                "report": str(Path(args.out) / "report.html"),
                "wall_seconds": round(combined["wall_seconds"], 1),
            }
        )
    )
    return combined


if __name__ == "__main__":
    main()
