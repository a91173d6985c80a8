"""The one training engine, used unchanged for pretraining, fine-tuning and reverse fine-tuning.

Data come from ``batch_fn(step) -> Batch``: a pure function of the step (the caller seeds it), so a
resumed run sees exactly the batches an uninterrupted one would and ends with identical weights.
"""

import contextlib
import dataclasses
import json
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from interp import prefetch
from interp.atomic_files import atomic_write_text
from interp.batches import Batch, EvalSet
from interp.checkpoints import (
    atomic_save_tensors,
    load_tensors,
    load_weights_into,
    replace_dir,
)
from interp.config import to_dict
from interp.errors import CheckpointError, ConfigError, TrainingError
from interp.evaluation import answer_logits, evaluate
from interp.runtime import eval_mode, set_threads

S = TypeVar("S")  # a stage config with a ``train`` field

RESUME_DIR = "resume"
METRICS = "metrics.jsonl"


# The largest lr accepted: larger ones overflow float32 inside torch's optimizers (AdamW's first step is
# lr / (1 - beta1)) and crash there; anything up to it that diverges is recorded as a divergence.
MAX_LR = 1e30
LOSSES = ("answer", "sequence")  # cross-entropy on the answer token, or next-token on the whole sequence
PRECISIONS = ("fp32", "bf16")  # bf16: the forward pass under torch.autocast; weights and optimizer stay fp32


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Optimisation recipe; the study's defaults (AdamW, 20% warmup, cosine to max/100)."""

    steps: int  # optimizer steps
    batch_size: int = 64  # sequences per step
    lr: float = 1e-3  # peak learning rate
    optimizer: Literal["adamw", "sgd"] = "adamw"  # AdamW, or SGD with momentum (tracr fine-tuning)
    weight_decay: float = 0.01  # decoupled weight decay (AdamW) or L2 (SGD)
    betas: tuple[float, float] = (0.9, 0.999)  # AdamW betas
    momentum: float = 0.9  # SGD momentum
    schedule: Literal["cosine", "constant"] = "cosine"  # after warmup: cosine to the floor, or flat
    warmup_frac: float = 0.2  # fraction of steps with linear warmup from 0
    min_lr_ratio: float = 0.01  # cosine floor as a fraction of lr
    loss: Literal["answer", "sequence"] = "answer"  # CE on the answer token only, or next-token CE
    grad_clip: float | None = 1.0  # max global grad norm; None disables clipping
    eval_every: int = 100  # steps between evaluations (step 0 and the last step are always evaluated)
    eval_steps: tuple[int, ...] | None = (
        None  # explicit evaluation steps (e.g. log-spaced); overrides eval_every
    )
    eval_batch_size: int | None = None  # sequences per evaluation forward pass; None: by device
    checkpoint_every: int | None = None  # steps between resumable checkpoints; None: only at the end
    seed: int = 0  # data and any other randomness of the run
    device: str = "auto"  # auto, cpu or cuda
    threads: int | None = 1  # torch threads per process (None: $FTMECH_THREADS or 1)
    precision: Literal["fp32", "bf16"] = (
        "fp32"  # bf16: autocast the forward pass (weights, optimizer stay fp32)
    )
    compile: bool = False  # torch.compile the training forward pass (CUDA graphs on a GPU)
    data_workers: int = 0  # processes making batches ahead of the step (0: in the loop)

    def __post_init__(self) -> None:
        if self.steps < 0:
            raise ConfigError(f"steps must be >= 0, got {self.steps}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        if not 0 < self.lr <= MAX_LR:
            raise ConfigError(f"lr must be a positive number at most {MAX_LR:g}, got {self.lr}")
        if not 0 <= self.warmup_frac <= 1:
            raise ConfigError(f"warmup_frac must be in [0, 1], got {self.warmup_frac}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ConfigError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if self.optimizer not in ("adamw", "sgd"):
            raise ConfigError(f"unknown optimizer '{self.optimizer}'; use adamw or sgd")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.loss not in LOSSES:
            raise ConfigError(f"unknown loss '{self.loss}'; use {' or '.join(LOSSES)}")
        if self.schedule not in ("cosine", "constant"):
            raise ConfigError(f"unknown schedule '{self.schedule}'; use cosine or constant")
        if self.eval_every < 1:
            raise ConfigError(f"eval_every must be >= 1, got {self.eval_every}")
        if self.checkpoint_every is not None and self.checkpoint_every < 1:
            raise ConfigError(f"checkpoint_every must be >= 1 or unset, got {self.checkpoint_every}")
        if self.data_workers < 0:
            raise ConfigError(f"data_workers must be >= 0, got {self.data_workers}")
        if self.eval_batch_size is not None and self.eval_batch_size < 1:
            raise ConfigError(f"eval_batch_size must be >= 1 or unset, got {self.eval_batch_size}")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ConfigError(f"grad_clip must be > 0 or unset, got {self.grad_clip}")

    def is_eval_step(self, step: int) -> bool:
        """Whether metrics are recorded after ``step`` optimizer steps."""
        if step in (0, self.steps):
            return True
        if self.eval_steps is not None:
            return step in self.eval_steps
        return step % self.eval_every == 0


def lr_at(step: int, config: TrainConfig) -> float:
    """Learning rate for optimizer step ``step`` (0-based): linear warmup, then cosine or constant."""
    warmup = int(config.warmup_frac * config.steps)
    if step < warmup:
        return config.lr * (step + 1) / warmup
    if config.schedule == "constant":
        return config.lr
    progress = (step - warmup) / max(1, config.steps - warmup)
    floor = config.lr * config.min_lr_ratio
    return floor + 0.5 * (config.lr - floor) * (1 + math.cos(math.pi * min(1.0, progress)))


@dataclass(frozen=True)
class TrainResult:
    """What a run did: its metric records (one per evaluation) and where it ended."""

    history: list[dict[str, Any]]
    final_step: int
    wall_seconds: float
    resumed_from: int | None = None

    def curve(self, eval_name: str, metric: str = "accuracy") -> tuple[list[int], list[float]]:
        """(steps, values) of one evaluation metric over the run."""
        points = [
            (r["step"], r["eval"][eval_name][metric]) for r in self.history if eval_name in r.get("eval", {})
        ]
        return [p[0] for p in points], [p[1] for p in points]


def with_data_workers(stage: S, data_workers: int | None) -> S:
    """``stage`` (a frozen stage config holding a ``train`` TrainConfig) training with ``data_workers`` batch
    processes (None: as it is); the batches, so the result, are the same for every count."""
    if data_workers is None:
        return stage
    return dataclasses.replace(stage, train=dataclasses.replace(stage.train, data_workers=data_workers))


# devices with torch's fused AdamW and foreach gradient clipping
FUSED_DEVICES = ("cpu", "cuda")


def make_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW or SGD+momentum over the model's trainable parameters. AdamW is torch's fused kernel on a CPU or
    CUDA device: one kernel per step rather than a loop over tensors."""
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "adamw":
        fused = all(p.device.type in FUSED_DEVICES for p in params)
        return torch.optim.AdamW(
            params, lr=config.lr, betas=config.betas, weight_decay=config.weight_decay, fused=fused
        )
    return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)


def batch_loss(model: torch.nn.Module, batch: Batch, loss: str) -> torch.Tensor:
    """Cross-entropy on the answer token, or on every masked next-token position."""
    if loss == "answer":
        return F.cross_entropy(answer_logits(model, batch).float(), batch.answers)
    logits = model(batch.tokens)[:, :-1]
    targets = batch.tokens[:, 1:]
    if batch.loss_mask is None:
        return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())
    mask = batch.loss_mask[:, :-1]
    return F.cross_entropy(logits[mask].float(), targets[mask])


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer state_dict into tensors (for safetensors) and JSON-native values."""
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {}
    for idx, entry in state["state"].items():
        for key, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"{idx}.{key}"] = value
            else:
                scalars[f"{idx}.{key}"] = value
    return tensors, {"scalars": scalars, "param_groups": state["param_groups"]}


def _restore_optimizer(
    optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict
) -> None:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        idx, key = name.split(".", 1)
        state.setdefault(int(idx), {})[key] = value
    for name, value in meta["scalars"].items():
        idx, key = name.split(".", 1)
        state.setdefault(int(idx), {})[key] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def save_resume_state(
    out_dir: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    step: int,
    config: TrainConfig,
    history: list[dict[str, Any]],
) -> None:
    """Write everything needed to continue at ``step`` into ``out_dir/resume`` atomically."""
    tmp = out_dir / f".{RESUME_DIR}.tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    atomic_save_tensors(model.state_dict(), tmp / "model.safetensors")
    opt_tensors, opt_meta = _optimizer_tensors(optimizer)
    atomic_save_tensors(opt_tensors, tmp / "optimizer.safetensors")
    state = {"step": step, "config": to_dict(config), "optimizer": opt_meta, "history": history}
    atomic_write_text(tmp / "state.json", json.dumps(state))
    replace_dir(tmp, out_dir / RESUME_DIR)


RESUME_NEUTRAL = ("data_workers",)  # may change between a run and its resumption: batches are the same


def _resume_identity(config: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k not in RESUME_NEUTRAL}


def load_resume_state(
    out_dir: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, config: TrainConfig
) -> tuple[int, list[dict[str, Any]]]:
    """Restore model and optimizer from ``out_dir/resume``; the run's config must be unchanged but for
    ``RESUME_NEUTRAL`` settings."""
    resume = out_dir / RESUME_DIR
    try:
        state = json.loads((resume / "state.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"cannot resume from {resume}: state.json unreadable ({exc})") from None
    if _resume_identity(state.get("config") or {}) != _resume_identity(
        json.loads(json.dumps(to_dict(config)))
    ):
        raise CheckpointError(
            f"cannot resume from {resume}: it was written with a different training config; "
            "rerun with the original flags or use a new --out"
        )
    load_weights_into(model, load_tensors(resume / "model.safetensors"), str(resume / "model.safetensors"))
    _restore_optimizer(optimizer, load_tensors(resume / "optimizer.safetensors"), state["optimizer"])
    return int(state["step"]), state["history"]


@dataclass(frozen=True)
class _Recorder:
    """Evaluates the model at a step; the row goes to ``history``, ``out/metrics.jsonl`` and ``on_eval``."""

    model: torch.nn.Module
    eval_sets: Sequence[EvalSet]
    config: TrainConfig
    history: list[dict[str, Any]]
    out: Path | None
    on_eval: Callable[[Mapping[str, Any]], None] | None

    def __call__(self, step: int, train_loss: float | None) -> None:
        config = self.config
        row: dict[str, Any] = {"step": step, "lr": lr_at(max(0, step - 1), config), "train_loss": train_loss}
        with eval_mode(self.model):
            row["eval"] = {
                s.name: evaluate(self.model, s, batch_size=config.eval_batch_size).to_json()
                for s in self.eval_sets
            }
        row["time"] = time.time()
        self.history.append(row)
        if self.out is not None:
            with open(self.out / METRICS, "a") as handle:
                handle.write(json.dumps(row) + "\n")
        if self.on_eval is not None:
            self.on_eval(row)


def _starting_point(
    out: Path | None, model: torch.nn.Module, optimizer: torch.optim.Optimizer, config: TrainConfig
) -> tuple[int, list[dict[str, Any]]]:
    """The step and history a resumed run continues from (model and optimizer restored from ``out``)."""
    if out is None or not (out / RESUME_DIR / "state.json").is_file():
        raise CheckpointError(f"--resume given but there is no resumable state in {out}/{RESUME_DIR}")
    return load_resume_state(out, model, optimizer, config)


def compiled(model: torch.nn.Module, enabled: bool) -> torch.nn.Module:
    """``model`` wrapped by ``torch.compile`` when ``enabled`` (it shares the model's parameters), else itself.

    On CUDA the compiled graphs run as CUDA graphs (shapes are static in training). Compiled kernels are
    cached in ``$TORCHINDUCTOR_CACHE_DIR`` (default ``~/.cache/ftmech/torchinductor``), so only the first run
    of a shape pays for compilation.
    """
    if not enabled:
        return model
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(Path.home() / ".cache" / "ftmech" / "torchinductor"))
    cuda = next(model.parameters()).device.type == "cuda"
    return torch.compile(model, mode="reduce-overhead" if cuda else None, dynamic=False)


def _optimizer_step(
    model: torch.nn.Module,
    forward: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: Batch,
    config: TrainConfig,
    step: int,
    out: Path | None,
    history: list[dict[str, Any]],
) -> float:
    """One optimizer step on ``batch`` (the loss computed by ``forward``, ``model`` or its compiled wrapper);
    its loss. A non-finite loss is a TrainingError, raised after the last finite weights were saved as a
    resumable state in ``out``."""
    device = batch.tokens.device
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.precision == "bf16"):
        loss = batch_loss(forward, batch, config.loss)
    if not torch.isfinite(loss.detach()):
        if out is not None:
            save_resume_state(out, model, optimizer, step, config, history)
        where = f"; the last finite weights are in {out / RESUME_DIR}" if out is not None else ""
        raise TrainingError(
            f"loss became {float(loss.detach())} at step {step}{where}; lower --lr or enable grad_clip"
        )
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    update_weights(model, optimizer, config)
    return float(loss.detach())


def update_weights(model: torch.nn.Module, optimizer: torch.optim.Optimizer, config: TrainConfig) -> None:
    """Clip the gradients (when ``config.grad_clip`` is set; one foreach kernel on a CPU or CUDA device) and
    step the optimizer."""
    if config.grad_clip is not None:
        device = next(model.parameters()).device
        torch.nn.utils.clip_grad_norm_(
            model.parameters(), config.grad_clip, foreach=device.type in FUSED_DEVICES or None
        )
    optimizer.step()


def check_batch_memory(batch: Batch, d_vocab: int, device: torch.device) -> None:
    """Refuse a batch whose logits alone (forward, softmax and gradient: three fp32 copies) exceed the memory
    available now: the kernel's OOM killer would stop this process, and maybe others, mid-run instead."""
    need = 3 * 4 * batch.tokens.numel() * d_vocab
    available = _available_memory(device)
    if available is not None and need > available:
        rows, cols = batch.tokens.shape
        raise ConfigError(
            f"a batch of {rows} x {cols} tokens needs about {need / 2**30:.1f} GiB for its logits alone, more than "
            f"the {available / 2**30:.1f} GiB available on {device.type}; lower --batch-size"
        )


def _available_memory(device: torch.device) -> int | None:
    """Bytes that can be allocated on ``device`` now (Linux's MemAvailable on a CPU); None where unknown."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def train(
    model: torch.nn.Module,
    batch_fn: Callable[[int], Batch],
    config: TrainConfig,
    *,
    eval_sets: Sequence[EvalSet] = (),
    out_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    on_eval: Callable[[Mapping[str, Any]], None] | None = None,
) -> TrainResult:
    """Train ``model`` in place for ``config.steps`` steps on ``batch_fn(step)``.

    Every evaluation appends one JSON line to ``out_dir/metrics.jsonl``; with ``checkpoint_every``
    a resumable state is kept in ``out_dir/resume``. A non-finite loss stops the run with a
    TrainingError after saving the last finite weights there.
    """
    set_threads(config.threads)
    device = next(model.parameters()).device
    out = Path(out_dir) if out_dir is not None else None
    optimizer = make_optimizer(model, config)
    start, history = _starting_point(out, model, optimizer, config) if resume else (0, [])
    resumed_from = start if resume else None
    if start < config.steps:
        check_batch_memory(batch_fn(start), model.cfg.d_vocab, device)
    if out is not None:
        atomic_write_text(out / METRICS, "".join(json.dumps(r) + "\n" for r in history))
    record = _Recorder(model, eval_sets, config, history, out, on_eval)
    t0 = time.time()
    model.train()
    if start == 0 and not history:
        record(0, None)
    losses: list[float] = []
    bar = tqdm(total=config.steps, initial=start, disable=not progress, dynamic_ncols=True, leave=False)
    forward = compiled(model, config.compile)
    steps = range(start, config.steps)
    with contextlib.closing(prefetch.batches(batch_fn, steps, workers=config.data_workers)) as stream:
        for step, batch in zip(steps, stream, strict=True):
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, config)
            batch.check_vocab(model.cfg.d_vocab)
            batch = (
                batch.pin_memory().to(device, non_blocking=True)
                if device.type == "cuda"
                else batch.to(device)
            )
            losses.append(_optimizer_step(model, forward, optimizer, batch, config, step, out, history))
            done = step + 1
            bar.update(1)
            if config.is_eval_step(done):
                record(done, sum(losses) / len(losses))
                losses = []
                summary = {k: round(v["accuracy"], 3) for k, v in history[-1]["eval"].items()}
                bar.set_postfix(loss=f"{history[-1]['train_loss']:.3f}", **summary)
            if (
                out is not None
                and config.checkpoint_every
                and done % config.checkpoint_every == 0
                and done < config.steps
            ):
                save_resume_state(out, model, optimizer, done, config, history)
    bar.close()
    return TrainResult(
        history=history, final_step=config.steps, wall_seconds=time.time() - t0, resumed_from=resumed_from
    )
