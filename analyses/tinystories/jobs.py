"""The jobs of the TinyStories study and the plan that wires them together.

Every stage is a job of ``interp.sweeps`` in a directory keyed by a hash of its arguments, so a re-run redoes only
what is missing; jobs are deterministic functions of their JSON-native arguments, run in worker processes. One
tokenizer is trained per setting and shared by every model of that setting.
"""

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

from analyses.tinystories.config import CONTROL, PRETRAINED, TinyStoriesStudyConfig, deletion_name
from interp.config import from_dict, to_dict
from interp.jsonio import write_json
from interp.models import n_params
from interp.sweeps import Job, Planner
from interp.training import with_data_workers
from procedural_tasks.story_checkpoints import TOKENIZER_FILE, load_story_checkpoint
from procedural_tasks.story_data import StoryDataConfig, build_story_splits, build_story_tokenizer
from procedural_tasks.story_probes import feature_probes, probe_batch, study_probe_config
from procedural_tasks.story_scoring import generation_seed, score_model
from procedural_tasks.story_stages import (
    StoryDeletionConfig,
    StoryPretrainConfig,
    StoryRecoveryConfig,
    run_story_deletion,
    run_story_pretrain,
    run_story_recovery,
)
from procedural_tasks.story_tokenizer import StoryTokenizer


def job_tokenizer(*, out_dir: Path, data: dict) -> dict:
    """Train the setting's tokenizer on its pretraining texts; write ``tokenizer.json``."""
    tokenizer = build_story_tokenizer(from_dict(StoryDataConfig, data))
    tokenizer.save(out_dir / TOKENIZER_FILE)
    return {"vocab_size": tokenizer.vocab_size}


def job_pretrain(*, out_dir: Path, stage: dict, tokenizer_dir: str, data_workers: int = 0) -> dict:
    """Pretrain one model (the feature present, or the never-had-it control); ``data_workers`` (a
    ``Job.runtime`` argument) make its batches ahead of each step."""
    config = with_data_workers(from_dict(StoryPretrainConfig, stage), data_workers)
    tokenizer = StoryTokenizer.load(Path(tokenizer_dir) / TOKENIZER_FILE)
    summary = run_story_pretrain(config, out_dir, tokenizer=tokenizer)
    return {
        "final_feature_loss": summary["loss_curve"][-1]["feature_loss"],
        "wall_seconds": summary["wall_seconds"],
    }


def job_deletion(*, out_dir: Path, stage: dict, base: str, data_workers: int = 0) -> dict:
    """Deletion fine-tuning of a pretrained model (``data_workers`` as in ``job_pretrain``)."""
    config = with_data_workers(from_dict(StoryDeletionConfig, stage), data_workers)
    summary = run_story_deletion(config, base, out_dir)
    return {
        "final_feature_loss": summary["loss_curve"][-1]["feature_loss"],
        "wall_seconds": summary["wall_seconds"],
    }


def job_recovery(*, out_dir: Path, stage: dict, start: str, data_workers: int = 0) -> dict:
    """Recovery fine-tuning of a deleted model or of the control, with loss and generation scores
    (``data_workers`` as in ``job_pretrain``)."""
    config = with_data_workers(from_dict(StoryRecoveryConfig, stage), data_workers)
    summary = run_story_recovery(config, start, out_dir)
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
        seed=generation_seed(seed),
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


def _runtime(config: TinyStoriesStudyConfig) -> dict[str, int]:
    """A training job's ``Job.runtime``: its data workers, which never change a batch (so not its identity)."""
    return {"data_workers": config.data_workers} if config.data_workers else {}


def _plan_pretrain(
    planner: Planner, config: TinyStoriesStudyConfig, seed: int, tokenizer: Path
) -> dict[bool, Path]:
    dirs = {}
    for with_feature in (True, False):
        stage = config.pretrain_stage(seed, with_feature=with_feature)
        kwargs = {"stage": to_dict(stage), "tokenizer_dir": str(tokenizer)}
        dirs[with_feature] = planner.add(
            "pretrain", f"{__name__}:job_pretrain", kwargs, [tokenizer], runtime=_runtime(config)
        )
    return dirs


def _plan_deletion(
    planner: Planner, config: TinyStoriesStudyConfig, seed: int, base: Path
) -> dict[str, Path]:
    dirs = {}
    for kind in config.deletion_kinds:
        for level in config.lr_levels:
            kwargs = {"stage": to_dict(config.deletion_stage(kind, seed, lr_level=level)), "base": str(base)}
            dirs[deletion_name(kind, level)] = planner.add(
                "deletion", f"{__name__}:job_deletion", kwargs, [base], runtime=_runtime(config)
            )
    return dirs


def _plan_recovery(
    planner: Planner, config: TinyStoriesStudyConfig, seed: int, starts: dict[str, Path]
) -> dict[str, Path]:
    stage = to_dict(config.recovery_stage(seed))
    return {
        name: planner.add(
            "recovery",
            f"{__name__}:job_recovery",
            {"stage": stage, "start": str(start)},
            [start],
            runtime=_runtime(config),
        )
        for name, start in starts.items()
    }


def _plan_analysis(
    planner: Planner, config: TinyStoriesStudyConfig, seed: int, models: dict[str, str]
) -> Path:
    kwargs = {
        "models": models,
        "seed": seed,
        "n_generations": config.n_generations,
        "max_new_tokens": config.max_new_tokens,
        "probe_steps": config.probe_steps,
        "probe_test_frac": config.probe_test_frac,
        "device": config.device,
    }
    return planner.add("analysis", f"{__name__}:job_analysis", kwargs, [Path(p) for p in models.values()])


def plan_study(config: TinyStoriesStudyConfig, root: Path) -> Plan:
    """Every job of one setting with its content-addressed directory under ``root``."""
    planner = Planner(root, key_prefix=f"{config.name}/")
    tokenizer = planner.add("tokenizer", f"{__name__}:job_tokenizer", {"data": to_dict(config.data)})
    pretrain, deletion, recovery, analysis = {}, {}, {}, {}
    for seed in config.seeds:
        pretrained = _plan_pretrain(planner, config, seed, tokenizer)
        pretrain |= {(seed, with_feature): d for with_feature, d in pretrained.items()}
        deleted = _plan_deletion(planner, config, seed, pretrained[True])
        deletion |= {(seed, name): d for name, d in deleted.items()}
        recovered = _plan_recovery(planner, config, seed, {**deleted, CONTROL: pretrained[False]})
        recovery |= {(seed, name): d for name, d in recovered.items()}
        models = {PRETRAINED: str(pretrained[True]), **{n: str(d) for n, d in deleted.items()}}
        models[CONTROL] = str(pretrained[False])
        analysis[seed] = _plan_analysis(planner, config, seed, models)
    return Plan(config, planner.jobs, tokenizer, pretrain, deletion, recovery, analysis)
