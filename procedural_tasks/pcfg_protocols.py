"""The study's PCFG protocols as runnable stages: pretraining, fine-tuning, reverse fine-tuning.

Each stage takes a frozen config, trains with the one engine in ``interp.training`` and writes a
checkpoint directory (``model.safetensors``, ``config.json``, ``metrics.jsonl``) whose metadata
lets any later stage rebuild the task and its vocabulary.
"""

import dataclasses
import shutil
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from interp.batches import Batch, EvalSet, concat_batches
from interp.checkpoints import CheckpointInfo, load_checkpoint, read_checkpoint_info, save_checkpoint
from interp.config import from_dict, to_dict
from interp.errors import CheckpointError, ConfigError
from interp.evaluation import evaluate
from interp.jsonio import write_json
from interp.lr_levels import LEVELS
from interp.models import ModelConfig, build_model
from interp.revival import RevivalCurve, log_spaced_steps, revival_curve
from interp.training import RESUME_DIR, TrainConfig, TrainResult, train
from procedural_tasks.pcfg_tasks import JAILBREAK_TOKENS, PCFGTask, PCFGTaskConfig, SampleSpec

TASK_NAME = "pcfg"
# --- study presets ---------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class PCFGPreset:
    """Sizes of a whole PCFG study: data shape, architecture and the length of each stage."""

    task: PCFGTaskConfig
    model: str  # name in interp.models.PRESETS
    pretrain_steps: int
    pretrain_steps_by_prior: tuple[tuple[str, int], ...] = ()  # (prior name, steps) where a prior needs more
    finetune_steps: int
    reverse_steps: int
    batch_size: int
    eval_n: int  # sequences per evaluation set during training
    final_eval_n: int  # sequences per evaluation set for final numbers
    pretrain_loss: Literal["answer", "sequence"] = "answer"  # the study: next-token CE on the whole sequence
    precision: Literal["fp32", "bf16"] = "fp32"  # bf16 autocast (for GPUs)
    compile: bool = False  # torch.compile the training step (for GPUs)
    data_workers: int = 0  # processes making batches ahead of the step

    def pretrain_steps_for(self, prior: str | None) -> int:
        """Pretraining steps for the named prior (``pretrain_steps`` unless the preset lists it)."""
        return dict(self.pretrain_steps_by_prior).get(prior or "", self.pretrain_steps)

    def train_config(
        self,
        stage: str,
        *,
        lr: float,
        seed: int = 0,
        device: str = "auto",
        steps: int | None = None,
        speed: Mapping[str, Any] | None = None,
    ) -> TrainConfig:
        """The recipe of one stage at this preset's sizes: 4 evaluations in pretraining, 8 log-spaced in
        fine-tuning (doubling from step 2, to resolve the fast collapse) and 14 in reverse fine-tuning (to resolve
        fast revival), each also at step 0, and resumable checkpoints. ``speed`` overrides the
        preset's precision, compile and data_workers (``SPEED_FIELDS``); none of them changes what is learned
        beyond bf16 rounding."""
        stage_steps = {
            "pretrain": self.pretrain_steps,
            "finetune": self.finetune_steps,
            "reverse": self.reverse_steps,
        }
        if stage not in stage_steps:
            raise ConfigError(f"unknown stage '{stage}'; use one of {', '.join(stage_steps)}")
        n = stage_steps[stage] if steps is None else steps
        if stage == "reverse" and n > 0:
            schedule: dict[str, Any] = {"eval_steps": log_spaced_steps(n, 14)}
        elif stage == "finetune" and n > 1:
            schedule = {"eval_steps": log_spaced_steps(n, 8, first=2)}
        else:
            schedule = {"eval_every": max(1, n // 4)}
        return TrainConfig(
            steps=n,
            batch_size=self.batch_size,
            lr=lr,
            seed=seed,
            device=device,
            checkpoint_every=max(1, n // (4 if stage == "pretrain" else 2)),
            loss=self.pretrain_loss if stage == "pretrain" else "answer",
            **({name: getattr(self, name) for name in SPEED_FIELDS} | _speed(speed)),
            **schedule,
        )


SPEED_FIELDS = ("precision", "compile", "data_workers")


def _speed(speed: Mapping[str, Any] | None) -> dict[str, Any]:
    unknown = set(speed or {}) - set(SPEED_FIELDS)
    if unknown:
        raise ConfigError(f"unknown speed settings {sorted(unknown)}; use {', '.join(SPEED_FIELDS)}")
    return {k: v for k, v in (speed or {}).items() if v is not None}


PRESETS: dict[str, PCFGPreset] = {
    "cpu": PCFGPreset(
        task=PCFGTaskConfig(window=40, region=32, families=("count",)),
        model="cpu",
        pretrain_steps=600,
        # the medium prior counts b at 0.44-0.53 after 600 steps; after 2000 it is strongly relevant (>= 95%)
        pretrain_steps_by_prior=(("medium", 2000),),
        finetune_steps=250,
        reverse_steps=300,
        batch_size=32,
        eval_n=256,
        final_eval_n=1000,
    ),
    "paper": PCFGPreset(
        task=PCFGTaskConfig(window=250, region=40),
        model="paper",
        pretrain_steps=200_000,
        finetune_steps=10_000,
        reverse_steps=10_000,
        batch_size=96,
        eval_n=1000,
        final_eval_n=5000,
        pretrain_loss="sequence",
        precision="bf16",
        compile=True,
        data_workers=4,
    ),
    # For tests: a model that is quick to build and train (learns nothing useful).
    "tiny": PCFGPreset(
        task=PCFGTaskConfig(window=12, region=8, families=("count",)),
        model="tiny",
        pretrain_steps=20,
        finetune_steps=10,
        reverse_steps=10,
        batch_size=16,
        eval_n=64,
        final_eval_n=128,
    ),
}


def study_preset(name: str) -> PCFGPreset:
    if name not in PRESETS:
        raise ConfigError(f"unknown preset '{name}'; use one of {', '.join(PRESETS)}")
    return PRESETS[name]


# --- stage configs ---------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class PretrainConfig:
    """Pretraining on the PCFG mixture (next-answer prediction on sampled families and operands)."""

    task: PCFGTaskConfig
    model: ModelConfig  # architecture; d_vocab and n_ctx are filled from the task
    train: TrainConfig
    eval_n: int = 500  # sequences per evaluation set


@dataclass(frozen=True, kw_only=True)
class FinetuneConfig:
    """Fine-tuning a pretrained model on counting O_FT with a planted spurious correlation."""

    train: TrainConfig  # lr is the actual LR; lr_level/labelling record how it was chosen
    operand_pt: str = "a"  # O_PT: the pretraining operand
    operand_ft: str = "b"  # O_FT: the fine-tuning operand
    c_tr: float = 1.0  # C_Tr: fraction of training samples with r(x, O_FT) = r(x, O_PT) + q
    q: int = 1  # the planted offset
    lr_level: str | None = None  # eta_L/M/S/VS when the LR came from a level
    lr_labelling: str = "main_text"  # which of the study's labellings lr_level refers to
    mix_pt_frac: float = 0.0  # fraction of each batch drawn from pretraining data (study E.1)
    rand_ft: bool = False  # randFT (E.4): train on count-O_PT inputs to answer the count of O_FT
    eval_n: int = 500  # sequences per evaluation set

    def __post_init__(self) -> None:
        if not 0 <= self.c_tr <= 1:
            raise ConfigError(f"c_tr must be in [0, 1], got {self.c_tr}")
        if not 0 <= self.mix_pt_frac < 1:
            raise ConfigError(f"mix_pt_frac must be in [0, 1), got {self.mix_pt_frac}")
        if self.operand_pt == self.operand_ft:
            raise ConfigError(f"operand_pt and operand_ft are both '{self.operand_pt}'; they must differ")
        for op in (self.operand_pt, self.operand_ft):
            if op not in ("a", "b", "c"):
                raise ConfigError(f"operand '{op}' must be a terminal: a, b or c")
        if self.lr_level is not None and self.lr_level not in LEVELS:
            raise ConfigError(f"unknown lr_level '{self.lr_level}'; use one of {', '.join(LEVELS)}")


def pretrain_spec() -> SampleSpec:
    return SampleSpec()


def finetune_spec(config: FinetuneConfig) -> SampleSpec:
    """Training samples of a fine-tuning run (randFT answers O_FT's count on O_PT inputs)."""
    return SampleSpec(
        family="count",
        operand=config.operand_pt if config.rand_ft else config.operand_ft,
        c=config.c_tr,
        operand_pt=config.operand_pt,
        operand_ft=config.operand_ft,
        q=config.q,
        answer_operand=config.operand_ft if config.rand_ft else None,
    )


def counting_eval_sets(
    task: PCFGTask,
    n: int,
    *,
    operand_pt: str = "a",
    operand_ft: str = "b",
    q: int = 1,
    seed: int = 0,
    jailbreak: bool = False,
    strict: bool = False,
    only: Collection[str] | None = None,
) -> list[EvalSet]:
    """O_PT and O_FT counting at C_Te = 0 and 1 (names like ``count_a@cte0``), plus jailbreak tokens; with
    ``strict``, also the study's C_Te = 0 (``count_a@cte0strict``): no sample meets count(O_FT) = count(O_PT) + q
    by chance, as about a fifth of the plain C_Te = 0 samples do. ``only`` names the counting sets to build (a
    set's samples do not depend on which others are built)."""
    sets = []
    for operand in (operand_pt, operand_ft):
        for c_te, exclude in ((0, False), (1, False), *(((0, True),) if strict else ())):
            name = eval_name(operand, c_te) + ("strict" if exclude else "")
            if only is not None and name not in only:
                continue
            spec = SampleSpec(
                family="count",
                operand=operand,
                c=float(c_te),
                operand_pt=operand_pt,
                operand_ft=operand_ft,
                q=q,
                strict=exclude,
            )
            sets.append(task.eval_set(name, spec, n, seed))
    if jailbreak:
        for token in JAILBREAK_TOKENS:
            spec = SampleSpec(family="count", operand=operand_pt, family_token=token)
            sets.append(task.eval_set(f"count_{operand_pt}@{token}", spec, n, seed))
    return sets


def eval_name(operand: str, c_te: int) -> str:
    return f"count_{operand}@cte{c_te}"


# --- running stages --------------------------------------------------------------------------------


def task_metadata(
    task_config: PCFGTaskConfig, task: PCFGTask, stage: str, stage_config: Any
) -> dict[str, Any]:
    return {
        "task": TASK_NAME,
        "task_config": to_dict(task_config),
        "vocab": list(task.vocab.tokens),
        "stage": stage,
        "stage_config": to_dict(stage_config),
    }


def task_from_checkpoint(info: CheckpointInfo, source: str) -> PCFGTask:
    """Rebuild the PCFG task of a checkpoint and check its vocabulary is the one the model was trained on."""
    meta = info.metadata
    if meta.get("task") != TASK_NAME:
        raise CheckpointError(
            f"{source} is not a PCFG checkpoint (task {meta.get('task')!r}); give one written by a PCFG stage "
            "(`ftmech pretrain`, `finetune`, `reverse-ft`)"
        )
    task = PCFGTask(from_dict(PCFGTaskConfig, meta["task_config"]))
    if list(task.vocab.tokens) != meta.get("vocab"):
        raise CheckpointError(
            f"{source} was trained with a different PCFG vocabulary than this version builds"
        )
    return task


def load_pcfg_model(
    ckpt_dir: str | Path, *, device: str = "cpu"
) -> tuple[torch.nn.Module, CheckpointInfo, PCFGTask]:
    """A PCFG checkpoint's model, its info and its task; another task's checkpoint is refused by its task name
    before its weights are read."""
    task = task_from_checkpoint(read_checkpoint_info(ckpt_dir), str(ckpt_dir))
    model, info = load_checkpoint(ckpt_dir, device=device)
    return model, info, task


@dataclass(frozen=True)
class SpecBatches:
    """Batches of ``spec`` from ``task``, each drawn from ``seed`` and the step; a dataclass, so it pickles for
    the training engine's data workers."""

    task: PCFGTask
    spec: SampleSpec
    batch_size: int
    seed: int

    def __call__(self, step: int) -> Batch:
        return self.task.batch(self.spec, self.batch_size, self.seed, step)


def _batches(task: PCFGTask, spec: SampleSpec, config: TrainConfig) -> SpecBatches:
    """Batches of ``spec`` from ``task`` under the recipe's seed and batch size."""
    return SpecBatches(task, spec, config.batch_size, config.seed)


def _train_and_save(
    model: torch.nn.Module,
    batch_fn: Callable[[int], Batch],
    config: TrainConfig,
    eval_sets: list[EvalSet],
    out: Path,
    saved: tuple[ModelConfig, dict[str, Any]],
    *,
    resume: bool,
    progress: bool,
) -> TrainResult:
    """Train ``model``, then save it to ``out`` with its model config and metadata (``saved``), the run's
    time and final evaluation added, and drop the resumable state."""
    result = train(
        model, batch_fn, config, eval_sets=eval_sets, out_dir=out, resume=resume, progress=progress
    )
    model_config, meta = saved
    meta = {**meta, "wall_seconds": result.wall_seconds, "final_eval": result.history[-1]["eval"]}
    save_checkpoint(out, model, model_config, meta)
    shutil.rmtree(out / RESUME_DIR, ignore_errors=True)
    return result


def run_pretrain(
    config: PretrainConfig, out_dir: str | Path, *, resume: bool = False, progress: bool = True
) -> TrainResult:
    """Pretrain a model from scratch on the PCFG mixture and save it to ``out_dir``."""
    out = Path(out_dir)
    task = PCFGTask(config.task)
    model_config = config.model.for_task(d_vocab=len(task.vocab), n_ctx=config.task.seq_len)
    model = build_model(model_config, device=config.train.device)
    eval_sets = counting_eval_sets(
        task, config.eval_n, seed=config.train.seed, jailbreak=config.task.jailbreak_frac > 0
    )
    batch_fn = _batches(task, pretrain_spec(), config.train)
    saved = (model_config, task_metadata(config.task, task, "pretrain", config))
    return _train_and_save(
        model, batch_fn, config.train, eval_sets, out, saved, resume=resume, progress=progress
    )


@dataclass(frozen=True)
class FinetuneBatches:
    """Batches of a fine-tuning run: ``n_pt`` of each drawn from the pretraining mixture, the rest from
    ``spec``; a dataclass, so it pickles for the training engine's data workers."""

    task: PCFGTask
    spec: SampleSpec
    batch_size: int
    n_pt: int
    seed: int

    def __call__(self, step: int) -> Batch:
        ft = self.task.batch(self.spec, self.batch_size - self.n_pt, self.seed, step)
        if self.n_pt == 0:
            return ft
        mix = self.task.batch(pretrain_spec(), self.n_pt, self.seed + 1_000_003, step)
        return concat_batches([ft, mix])


def finetune_batch_fn(task: PCFGTask, config: FinetuneConfig) -> FinetuneBatches:
    """Batches of a fine-tuning run, with ``mix_pt_frac`` of each drawn from the pretraining mixture."""
    bs = config.train.batch_size
    return FinetuneBatches(task, finetune_spec(config), bs, round(bs * config.mix_pt_frac), config.train.seed)


def run_finetune(
    config: FinetuneConfig,
    base_dir: str | Path,
    out_dir: str | Path,
    *,
    resume: bool = False,
    progress: bool = True,
) -> TrainResult:
    """Fine-tune the checkpoint in ``base_dir`` on counting O_FT and save it to ``out_dir``."""
    model, info, task = load_pcfg_model(base_dir, device=config.train.device)
    eval_sets = counting_eval_sets(
        task,
        config.eval_n,
        operand_pt=config.operand_pt,
        operand_ft=config.operand_ft,
        q=config.q,
        seed=config.train.seed,
        jailbreak=task.config.jailbreak_frac > 0,
    )
    meta = task_metadata(task.config, task, "finetune", config)
    meta |= {"base": str(base_dir), "base_stage": info.metadata.get("stage")}
    batch_fn, out, saved = finetune_batch_fn(task, config), Path(out_dir), (info.model_config, meta)
    return _train_and_save(
        model, batch_fn, config.train, eval_sets, out, saved, resume=resume, progress=progress
    )


@dataclass(frozen=True, kw_only=True)
class ReverseFTConfig:
    """Reverse fine-tuning: train back on counting O_PT (C_Te = 0 data) at a small LR and time the revival.

    The same recipe trains the controls: Scr.+FT starts from a model pretrained without O_PT, Scr.
    (``from_scratch``) from a random initialisation of the same architecture.
    """

    train: TrainConfig  # give eval_steps (log-spaced) to resolve fast revival
    operand_pt: str = "a"  # the capability to revive
    threshold_frac: float = 0.9  # revived = O_PT accuracy >= threshold_frac x the pretrained model's
    from_scratch: bool = False  # Scr. control: re-initialise the weights (seed = train.seed) first
    lr_level: str | None = None  # eta level the LR came from, for the record
    eval_n: int = 500  # sequences per evaluation set

    def __post_init__(self) -> None:
        if not 0 < self.threshold_frac <= 1:
            raise ConfigError(f"threshold_frac must be in (0, 1], got {self.threshold_frac}")
        if self.lr_level is not None and self.lr_level not in LEVELS:
            raise ConfigError(f"unknown lr_level '{self.lr_level}'; use one of {', '.join(LEVELS)}")


def run_reverse_ft(
    config: ReverseFTConfig,
    start_dir: str | Path,
    out_dir: str | Path,
    *,
    reference_accuracy: float,
    name: str = "reverse_ft",
    progress: bool = True,
    resume: bool = False,
) -> RevivalCurve:
    """Train ``start_dir``'s model back on counting O_PT, evaluated on O_PT alone (C_Te = 0, what the revival
    curve reads); writes the checkpoint and ``revival.json``.

    ``reference_accuracy`` is the pretrained model's O_PT accuracy; the threshold is
    ``threshold_frac`` times it.
    """
    model, info, task = load_pcfg_model(start_dir, device=config.train.device)
    model_config = info.model_config
    if config.from_scratch:
        model_config = dataclasses.replace(model_config, seed=config.train.seed)
        model = build_model(model_config, device=config.train.device)
    target = eval_name(config.operand_pt, 0)
    eval_sets = counting_eval_sets(
        task, config.eval_n, operand_pt=config.operand_pt, seed=config.train.seed, only=(target,)
    )
    batch_fn = _batches(task, SampleSpec(family="count", operand=config.operand_pt), config.train)
    meta = task_metadata(task.config, task, "reverse_ft", config) | {"start": str(start_dir)}
    out, saved = Path(out_dir), (model_config, meta)
    result = _train_and_save(
        model, batch_fn, config.train, eval_sets, out, saved, resume=resume, progress=progress
    )
    steps, values = result.curve(target)
    curve = revival_curve(
        name, steps, values, threshold=config.threshold_frac * reference_accuracy, horizon=config.train.steps
    )
    write_json(
        Path(out_dir) / "revival.json", {"curve": curve.to_json(), "reference_accuracy": reference_accuracy}
    )
    return curve


def evaluate_checkpoint(
    ckpt_dir: str | Path, spec: SampleSpec, n: int, *, seed: int = 0, device: str = "cpu"
) -> dict:
    """Accuracy of a PCFG checkpoint on ``n`` fresh samples of ``spec`` (with floors)."""
    model, _, task = load_pcfg_model(ckpt_dir, device=device)
    name = f"{spec.family}_{spec.operand}@c{spec.c}"
    return evaluate(model, task.eval_set(name, spec, n, seed)).to_json()
