"""Fine-tuning a compiled program from O_PT to O_FT with the spurious correlation, and reverse fine-tuning it
back to O_PT, through ``interp.training.train``.

Recipe. From the paper (App. C.1): Gaussian noise on every weight (``tracr_preparation``; our std and the
MLP rebalancing before it deviate, see there), SGD with momentum, batch 96, linear warmup over 20% of the
steps (2K of 10K) then cosine to 1e-2 x the peak, LRs eta_L/M/S/VS = 1e-1/1e-2/1e-3/1e-4. Inferred (the paper
does not say): momentum 0.9, no weight decay, cross-entropy on the answer at the last letter only. Ours:
gradient-norm clipping and far fewer steps (the Tracr study's deviations table lists every difference).
A run that diverges (non-finite loss) is recorded as ``diverged``, never hidden.
"""

import copy
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from interp.batches import Batch, EvalSet
from interp.config import to_dict
from interp.errors import ConfigError, TrainingError
from interp.jsonio import write_json
from interp.lr_levels import COMPILED_REFERENCE_LR, LEVELS, lr_for_level
from interp.revival import RevivalCurve, revival_curve
from interp.training import TrainConfig, TrainResult, train
from procedural_tasks.tracr_batches import eval_name, tracr_eval_sets, training_batch_fn
from procedural_tasks.tracr_models import save_tracr_checkpoint
from procedural_tasks.tracr_preparation import STUDY_NOISE_STD, prepared_model
from procedural_tasks.tracr_programs import ProgramConfig, program_config

BATCH_SIZE = 96  # App. C.1
SUMMARY = "summary.json"


def finetune_lr(level: str) -> float:
    """The study's Tracr LR of eta level ``level`` (L, M, S, VS: 1e-1 .. 1e-4), the appendix labelling."""
    return lr_for_level(level, COMPILED_REFERENCE_LR, "appendix")


def sgd_train_config(
    *,
    lr: float,
    steps: int,
    seed: int,
    grad_clip: float | None = 1.0,
    eval_steps: tuple[int, ...] | None = None,
) -> TrainConfig:
    """App. C.1's recipe: SGD with momentum, batch 96, 20% warmup then cosine to 1e-2 x lr.

    Momentum 0.9, no weight decay and the answer-only loss are inferred (App. C.1 gives none of them);
    ``grad_clip`` (global norm) is ours: without it the Counter's loss at eta_L and eta_M turns NaN within
    3-7 steps (measured, seed 0).
    """
    return TrainConfig(
        steps=steps,
        batch_size=BATCH_SIZE,
        lr=lr,
        optimizer="sgd",
        momentum=0.9,
        weight_decay=0.0,
        schedule="cosine",
        warmup_frac=0.2,
        min_lr_ratio=0.01,
        loss="answer",
        grad_clip=grad_clip,
        eval_every=max(1, steps // 8),
        eval_steps=eval_steps,
        seed=seed,
        device="cpu",
        threads=1,
    )


@dataclass(frozen=True, kw_only=True)
class TracrFinetuneConfig:
    """Fine-tuning a compiled program from O_PT to O_FT (count b; the 6th largest) with C_Tr."""

    program: str = "counter"  # counter or max_identifier
    train: TrainConfig  # the recipe (sgd_train_config); train.seed drives noise, data and evaluation
    c_tr: float = 0.0  # C_Tr: fraction of training samples with r(x, O_FT) - r(x, O_PT) = q
    q: int = 1  # the planted offset
    lr_level: str | None = None  # eta level the LR came from (L, M, S, VS), for the record
    n_letters: int | None = None  # letters per input; None: the program's max_seq_len
    noise_std: float = STUDY_NOISE_STD  # std of the Gaussian noise added to every weight first
    balance_mlps: bool = True  # rescale ReLU neurons to equal in/out norms first (function-preserving)
    eval_n: int = 500  # inputs per evaluation set

    def __post_init__(self) -> None:
        program_config(self.program)
        if not 0 <= self.c_tr <= 1:
            raise ConfigError(f"c_tr must be in [0, 1], got {self.c_tr}; e.g. --c-tr 1")
        if self.lr_level is not None and self.lr_level not in LEVELS:
            raise ConfigError(f"unknown lr_level {self.lr_level!r}; use one of {', '.join(LEVELS)}")
        if not (self.noise_std >= 0 and math.isfinite(self.noise_std)):
            raise ConfigError(f"noise_std must be >= 0, got {self.noise_std}")
        if self.eval_n < 1:
            raise ConfigError(f"eval_n must be >= 1, got {self.eval_n}")
        _check_n_letters(self.program, self.n_letters)


def _check_n_letters(program: str, n_letters: int | None) -> None:
    limit = program_config(program).max_seq_len
    if n_letters is not None and not 1 <= n_letters <= limit:
        raise ConfigError(f"n_letters {n_letters} must lie in 1..{limit} for {program}")


@dataclass(frozen=True)
class TracrRunResult:
    """How a (reverse) fine-tuning run ended: ``ok`` or ``diverged`` (non-finite loss), with its history."""

    status: Literal["ok", "diverged"]
    history: list[dict[str, Any]]
    final_accuracy: dict[str, float]  # eval set -> accuracy at the last evaluation before the end
    wall_seconds: float
    error: str | None = None

    def to_json(self) -> dict:
        return dict(self.__dict__)


def _train_or_diverge(
    model: torch.nn.Module,
    batch_fn: Callable[[int], Batch],
    config: TrainConfig,
    eval_sets: Sequence[EvalSet],
    out: Path,
    progress: bool,
) -> TracrRunResult:
    """Run the engine; a TrainingError (NaN/inf loss) becomes status ``diverged``, never a hidden failure."""
    try:
        result: TrainResult = train(
            model, batch_fn, config, eval_sets=eval_sets, out_dir=out, progress=progress
        )
    except TrainingError as exc:
        history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line]
        last = history[-1]["eval"] if history else {}
        return TracrRunResult(
            status="diverged",
            history=history,
            final_accuracy={k: v["accuracy"] for k, v in last.items()},
            wall_seconds=float("nan") if not history else history[-1]["time"] - history[0]["time"],
            error=str(exc),
        )
    return TracrRunResult(
        status="ok",
        history=result.history,
        final_accuracy={k: v["accuracy"] for k, v in result.history[-1]["eval"].items()},
        wall_seconds=result.wall_seconds,
    )


def _train_on(
    model: torch.nn.Module,
    program: ProgramConfig,
    config: "TracrFinetuneConfig | TracrReverseFTConfig",
    out: Path,
    progress: bool,
    **batches: Any,
) -> TracrRunResult:
    """Train ``model`` with ``config.train`` on ``training_batch_fn(program, **batches)``, evaluated on the
    study's evaluation sets of ``program``."""
    seed = config.train.seed
    eval_sets = tracr_eval_sets(program, config.eval_n, seed=seed, n_letters=config.n_letters, q=config.q)
    batch_fn = training_batch_fn(
        program, batch_size=config.train.batch_size, seed=seed, n_letters=config.n_letters, **batches
    )
    return _train_or_diverge(model, batch_fn, config.train, eval_sets, out, progress)


def run_finetune(
    config: TracrFinetuneConfig, out_dir: str | Path, *, progress: bool = False
) -> TracrRunResult:
    """Fine-tune the prepared compiled program to O_FT; writes the model (when not diverged) and summary.json."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    seed = config.train.seed
    model, info = prepared_model(
        config.program, noise_std=config.noise_std, seed=seed, balance=config.balance_mlps
    )
    result = _train_on(model, info.config, config, out, progress, target="ft", c_tr=config.c_tr, q=config.q)
    meta = {"stage": "finetune", "stage_config": to_dict(config), "status": result.status}
    if result.status == "ok":
        save_tracr_checkpoint(out, model, info, meta)
    write_json(out / SUMMARY, {**meta, **result.to_json()})
    return result


@dataclass(frozen=True, kw_only=True)
class TracrReverseFTConfig:
    """Reverse fine-tuning back to O_PT on uncorrelated data (C_Te = 0 inputs), timing the revival."""

    program: str = "counter"
    train: TrainConfig  # the FT recipe at eta_VS; give eval_steps (log-spaced) to resolve fast revival
    threshold: float = 0.9  # revived once Acc O_PT (C_Te = 0) reaches this fraction (the compiled model: 1.0)
    n_letters: int | None = None
    q: int = 1
    eval_n: int = 500

    def __post_init__(self) -> None:
        program_config(self.program)
        if not 0 < self.threshold <= 1:
            raise ConfigError(f"threshold must be in (0, 1], got {self.threshold}")
        _check_n_letters(self.program, self.n_letters)


def run_reverse_ft(
    config: TracrReverseFTConfig,
    model: torch.nn.Module,
    out_dir: str | Path,
    *,
    name: str,
    progress: bool = False,
) -> tuple[TracrRunResult, RevivalCurve | None]:
    """Train ``model`` (not changed: a copy is trained) back on O_PT; the run and its revival curve."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    program = program_config(config.program)
    model = copy.deepcopy(model)
    result = _train_on(model, program, config, out, progress, target="pt", c_tr=0.0)
    curve = None
    if result.status == "ok":
        steps = [r["step"] for r in result.history]
        values = [r["eval"][eval_name("pt", 0)]["accuracy"] for r in result.history]
        curve = revival_curve(name, steps, values, threshold=config.threshold, horizon=config.train.steps)
    meta = {"stage": "reverse_ft", "stage_config": to_dict(config), "status": result.status, "name": name}
    write_json(out / SUMMARY, {**meta, **result.to_json(), "revival": curve.to_json() if curve else None})
    return result, curve
