"""The study's Tracr protocols (Jain et al. 2023, App. C.1 and §2.3 of the protocol) on the compiled
Counter and Max-identifier: data as ``Batch``/``EvalSet``, fine-tuning from the compiled weights to
O_FT with the spurious correlation, reverse fine-tuning back to O_PT with the Scr.+FT control, and
the analyses that need the compiled circuit's ground truth (operand detector, counting/read head).

Recipe (paper App. C.1): Gaussian noise on every weight, SGD with momentum 0.9, batch 96, linear
warmup over 20% of the steps then cosine to 1e-2 x the peak, LRs eta_L/M/S/VS = 1e-1/1e-2/1e-3/1e-4,
answer-only cross-entropy at the last letter. Training runs through ``interp.training.train``.

Two deviations, both measured (see ``analyses/tracr_study.py``'s ``noise_sweep``) and recorded in
every run's config:

- *MLP balancing.* Our Counter is compiled exact up to 45 letters (tracr's mlp_exactness L = 8648;
  the paper most likely used tracr's default 100). Its SelectorWidth MLP then has hidden activations
  in the thousands, so any noise on its output weights breaks counting (N(0, 1e-5) already gives 0%).
  ``balance_mlp_neurons`` rescales each ReLU neuron, relu(x/c) * c = relu(x) for c > 0, so its input
  and output weights have equal norms: the function is unchanged (tested) and the largest weight
  drops from 8648 to about 111.
- *Noise std.* Even balanced, N(0, 1e-3) (the paper's value, read as a std) destroys the compiled
  Counter (0% count-a) and halves Max-identifier; 1e-4 is the largest std tried that keeps both at
  100% over seeds, and is the study's default (``STUDY_NOISE_STD``).

Ground truth (read from the residual labels and the compiled weights, ``operand_circuit``): the
operand enters each program in exactly one MLP neuron, the detector (Counter: block-0 neuron reading
``tokens:a``, writing ``is_operand:True``; Max-id: block-1 neuron reading ``n_larger:4``, writing
``is_target:True``), and one attention head selects the positions it flags (Counter: block 1, the
counting head; Max-id: block 2, the read head). ``swap_operand`` exchanges the detector's two input
columns and gives an exact compiled model of O_FT: the Scr.+FT control "pretrained to count O_FT".

Why SGD finds wrappers here (``gradient_share``): at the prepared Counter, 99.99% of the squared gradient
of the count-b loss lies in block 1's MLP (SelectorWidth's discretiser, i.e. the count's readout); the
counting head's saturated attention (logit gap ~14.6) and the detector get ~1e-5 each.
"""

import copy
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from jaxtyping import Bool, Float
from torch import Tensor

from interp import hooks
from interp.activations import collect_activations
from interp.atomic_files import atomic_write_text
from interp.batches import Batch, EvalSet
from interp.checkpoints import atomic_save_tensors, load_tensors, load_weights_into, provenance
from interp.config import from_dict, to_dict
from interp.diffing import attention_mass
from interp.errors import CheckpointError, ConfigError, TrainingError
from interp.revival import RevivalCurve, revival_curve
from interp.runtime import torch_generator
from interp.training import TrainConfig, TrainResult, train
from procedural_tasks import tracr_models
from procedural_tasks import tracr_programs as tp
from procedural_tasks.tracr_models import CompiledProgramInfo
from procedural_tasks.tracr_programs import CounterConfig, ProgramConfig, TracrDataset

LR_LEVELS: dict[str, float] = {"L": 1e-1, "M": 1e-2, "S": 1e-3, "VS": 1e-4}  # eta_L, eta_M, eta_S, eta_VS
PROTOCOL_NOISE_STD = 1e-3  # App. C.1's N(0, 0.001), read as a std
STUDY_NOISE_STD = 1e-4  # the largest std that keeps both compiled programs at 100% (measured)
BATCH_SIZE = 96  # App. C.1
WEIGHTS = "model.safetensors"
CONFIG = "config.json"
SUMMARY = "summary.json"
_TRAIN_STREAM, _EVAL_STREAM, _SCORE_STREAM = 1, 2, 3  # numpy seed streams: (seed, stream, index)


def lr_for_level(level: str) -> float:
    """The Tracr fine-tuning LR of eta level ``level`` (L, M, S or VS)."""
    if level not in LR_LEVELS:
        raise ConfigError(f"unknown lr level {level!r}; use one of {', '.join(LR_LEVELS)}, e.g. --lr-level M")
    return LR_LEVELS[level]


# --- data --------------------------------------------------------------------------------------------

Target = Literal["pt", "ft"]


def eval_name(target: Target, c_te: int) -> str:
    """``o_pt@cte0`` etc.: accuracy against r(x, O_PT) or r(x, O_FT) on data with C_Te = ``c_te``."""
    return f"o_{target}@cte{c_te}"


def dataset_batch(data: TracrDataset, *, target: Target) -> Batch:
    """A Batch whose answers are the O_PT or O_FT output class ids, read at the last letter.

    ``labels`` keeps both answers and the correlation mask for probes and analyses.
    """
    if target not in ("pt", "ft"):
        raise ConfigError(f"target must be 'pt' or 'ft', got {target!r}")
    n = len(data.tokens)
    answers = data.labels_pt if target == "pt" else data.labels_ft
    return Batch(
        tokens=torch.from_numpy(data.tokens),
        answer_pos=torch.full((n,), data.answer_position, dtype=torch.long),
        answers=torch.from_numpy(np.asarray(answers, dtype=np.int64)),
        labels={
            "answer_pt": torch.from_numpy(np.asarray(data.labels_pt, dtype=np.int64)),
            "answer_ft": torch.from_numpy(np.asarray(data.labels_ft, dtype=np.int64)),
            "correlated": torch.from_numpy(data.correlated.astype(np.int64)),
        },
    )


def wrapper_answers(config: ProgramConfig, data: TracrDataset) -> Tensor:
    """Class ids of the shortcut "r(x, O_PT) + q" (count a + q; the letter q places after), -1 if none."""
    if isinstance(config, CounterConfig):
        values = [tp.reference_counter(row, config.operand_pt) + data.q for row in data.letters.tolist()]
        table = tp.output_encoding_for(config)
        return torch.tensor([table.get(v, -1) for v in values], dtype=torch.long)
    index = {letter: i for i, letter in enumerate(config.vocab)}
    table = tp.output_encoding_for(config)
    out = []
    for row in data.letters.tolist():
        i = index[tp.reference_max_identifier(row, config.operand_pt, config.vocab)] + data.q
        out.append(table[config.vocab[i]] if 0 <= i < len(config.vocab) else -1)
    return torch.tensor(out, dtype=torch.long)


def make_eval_data(
    config: ProgramConfig, n: int, *, seed: int, c_te: int, n_letters: int | None = None, q: int = 1
) -> TracrDataset:
    """The evaluation inputs with C_Te = ``c_te`` (0 or 1) of run seed ``seed``."""
    return tp.make_dataset(
        config, n, seed=(seed, _EVAL_STREAM, c_te), n_letters=n_letters, c_tr=float(c_te), q=q
    )


def tracr_eval_sets(
    config: ProgramConfig, n: int, *, seed: int, n_letters: int | None = None, q: int = 1
) -> list[EvalSet]:
    """Acc O_PT and Acc O_FT at C_Te = 1 and 0 (Tab. 3's cells); both targets share each set's inputs.

    The O_FT sets carry the wrapper's answers as their shortcut, so each result reports the accuracy
    a model answering r(x, O_PT) + q would get (the wrapper floor at C_Te = 0).
    """
    sets = []
    for c_te in (1, 0):
        data = make_eval_data(config, n, seed=seed, c_te=c_te, n_letters=n_letters, q=q)
        sets.append(EvalSet(eval_name("pt", c_te), dataset_batch(data, target="pt")))
        sets.append(
            EvalSet(
                eval_name("ft", c_te),
                dataset_batch(data, target="ft"),
                shortcut_answers=wrapper_answers(config, data),
            )
        )
    return sets


def training_batch_fn(
    config: ProgramConfig,
    *,
    target: Target,
    batch_size: int,
    seed: int,
    c_tr: float,
    n_letters: int | None = None,
    q: int = 1,
) -> Callable[[int], Batch]:
    """``step -> Batch``: fresh samples per step, a fraction ``c_tr`` drawn under the correlation."""

    def batch_fn(step: int) -> Batch:
        data = tp.make_dataset(
            config, batch_size, seed=(seed, _TRAIN_STREAM, step), n_letters=n_letters, c_tr=c_tr, q=q
        )
        return dataset_batch(data, target=target)

    return batch_fn


# --- the compiled circuit's ground truth ----------------------------------------------------------------


@dataclass(frozen=True)
class OperandCircuit:
    """Where a compiled program reads its operand, derived from residual labels and compiled weights."""

    program: str
    detector_layer: int  # block whose MLP maps the operand's input direction to the flag
    detector_neuron: int  # the hidden neuron that reads the O_PT direction and writes "<flag>:True"
    other_neuron: int  # the neuron that writes "<flag>:False"
    input_direction: str  # residual label the detector reads, e.g. "tokens:a" or "n_larger_9:4"
    flag: str  # the boolean map's label, e.g. "is_operand_5"
    head_layer: int  # block whose attention keys read "<flag>:True": the counting (Counter) or read head

    def to_json(self) -> dict:
        return dict(self.__dict__)


def operand_direction(info: CompiledProgramInfo, operand: str | int) -> str:
    """The residual label that names ``operand`` at the detector's input.

    Counter reads the token (``tokens:b``); Max-identifier reads how many letters are larger than the
    current one, so the O-th largest letter is ``n_larger_*:(O-1)``.
    """
    if isinstance(info.config, CounterConfig):
        label = f"tokens:{operand}"
    else:
        prefixes = {
            lab.rpartition(":")[0]
            for lab in info.residual_labels
            if lab.startswith("n_larger_") and ":" in lab
        }
        if len(prefixes) != 1:
            raise CheckpointError(f"cannot find the n_larger variable in {sorted(prefixes)}")
        label = f"{prefixes.pop()}:{int(operand) - 1}"
    if label not in info.residual_labels:
        raise ConfigError(f"operand {operand!r} has no residual direction {label!r} in {info.name}")
    return label


def operand_circuit(program: str) -> OperandCircuit:
    """Find the operand detector and the head that reads its flag in the clean compiled weights."""
    model, info = tracr_models.load_compiled(program)
    state = model.state_dict()
    index = {label: i for i, label in enumerate(info.residual_labels)}
    column = index[operand_direction(info, info.config.operand_pt)]
    readers = [
        (layer, int(n))
        for layer in range(model.cfg.n_layers)
        for n in torch.nonzero(state[f"blocks.{layer}.mlp.in.weight"][:, column]).flatten().tolist()
    ]
    if len(readers) != 1:
        raise CheckpointError(f"{program}: expected one MLP neuron reading the operand, found {readers}")
    layer, neuron = readers[0]
    w_out = state[f"blocks.{layer}.mlp.out.weight"]
    written = [info.residual_labels[i] for i in torch.nonzero(w_out[:, neuron]).flatten().tolist()]
    if len(written) != 1 or not written[0].endswith(":True"):
        raise CheckpointError(f"{program}: the operand neuron writes {written}, not one '<flag>:True'")
    flag = written[0].rpartition(":")[0]
    false_rows = torch.nonzero(w_out[index[f"{flag}:False"]]).flatten().tolist()
    heads = [
        h
        for h in range(model.cfg.n_layers)
        if bool(state[f"blocks.{h}.attn.k.weight"][:, index[f"{flag}:True"]].any())
    ]
    if len(false_rows) != 1 or len(heads) != 1:
        raise CheckpointError(f"{program}: unexpected circuit (False neurons {false_rows}, heads {heads})")
    return OperandCircuit(
        program=program,
        detector_layer=layer,
        detector_neuron=neuron,
        other_neuron=false_rows[0],
        input_direction=info.residual_labels[column],
        flag=flag,
        head_layer=heads[0],
    )


def swap_operand(model: torch.nn.Module, info: CompiledProgramInfo, operand: str | int) -> torch.nn.Module:
    """A copy of the compiled ``model`` that computes the program for ``operand`` instead of O_PT.

    Exchanges the detector MLP's input columns for O_PT's and ``operand``'s directions; every other
    weight is untouched. Exact only on the clean compiled weights (before balancing or noise).
    """
    circuit = operand_circuit(info.name)
    index = {label: i for i, label in enumerate(info.residual_labels)}
    a = index[operand_direction(info, info.config.operand_pt)]
    b = index[operand_direction(info, operand)]
    edited = copy.deepcopy(model)
    state = edited.state_dict()
    w_in = state[f"blocks.{circuit.detector_layer}.mlp.in.weight"]
    with torch.no_grad():
        w_in[:, [a, b]] = w_in[:, [b, a]].clone()
    return edited


# --- preparing compiled weights for fine-tuning --------------------------------------------------------


def balance_mlp_neurons(model: torch.nn.Module) -> torch.nn.Module:
    """A copy whose ReLU neurons have equal input (weights and bias) and output norms; same function.

    relu(c x) = c relu(x) for c > 0, so dividing a neuron's input weights and bias by c and multiplying
    its output weights by c leaves every output unchanged. Dead neurons (a zero side) are left alone.
    """
    if model.cfg.act_fn != "relu":
        raise ConfigError(f"balancing needs ReLU MLPs; the model uses {model.cfg.act_fn!r}")
    balanced = copy.deepcopy(model)
    state = balanced.state_dict()
    with torch.no_grad():
        for layer in range(balanced.cfg.n_layers):
            w_in = state[f"blocks.{layer}.mlp.in.weight"]
            b_in = state[f"blocks.{layer}.mlp.in.bias"]
            w_out = state[f"blocks.{layer}.mlp.out.weight"]
            norm_in = torch.sqrt(w_in.double().pow(2).sum(1) + b_in.double().pow(2))
            norm_out = w_out.double().norm(dim=0)
            alive = (norm_in > 0) & (norm_out > 0)
            scale = torch.where(
                alive, torch.sqrt(norm_in / norm_out.clamp_min(1e-300)), torch.ones_like(norm_in)
            )
            w_in.div_(scale[:, None].to(w_in.dtype))
            b_in.div_(scale.to(b_in.dtype))
            w_out.mul_(scale[None, :].to(w_out.dtype))
    return balanced


def add_weight_noise(model: torch.nn.Module, *, std: float, seed: int) -> torch.nn.Module:
    """A copy with i.i.d. N(0, std^2) added to every parameter (App. C.1's densifying noise), seeded."""
    if not (std >= 0 and math.isfinite(std)):
        raise ConfigError(f"noise std must be a finite number >= 0, got {std}")
    noisy = copy.deepcopy(model)
    gen = torch_generator(seed)
    with torch.no_grad():
        for _, param in sorted(noisy.state_dict(keep_vars=True).items()):
            noise = torch.randn(param.shape, generator=gen, dtype=torch.float64) * std
            param.add_(noise.to(param.dtype))
    return noisy


def prepared_model(
    program: str,
    *,
    noise_std: float,
    seed: int,
    balance: bool = True,
    operand: str | int | None = None,
) -> tuple[torch.nn.Module, CompiledProgramInfo]:
    """The compiled program (or its ``swap_operand`` edit for ``operand``), balanced and noised."""
    model, info = tracr_models.load_compiled(program)
    if operand is not None and operand != info.config.operand_pt:
        model = swap_operand(model, info, operand)
    if balance:
        model = balance_mlp_neurons(model)
    return add_weight_noise(model, std=noise_std, seed=seed), info


# --- checkpoints -------------------------------------------------------------------------------------


def save_tracr_model(out_dir: str | Path, model: torch.nn.Module, *, program: str, metadata: dict) -> Path:
    """``model.safetensors`` + ``config.json`` (program name, metadata, provenance), each atomic."""
    out = Path(out_dir)
    atomic_save_tensors(model.state_dict(), out / WEIGHTS)
    payload = {"program": program, "metadata": metadata, "provenance": provenance()}
    atomic_write_text(out / CONFIG, json.dumps(payload, indent=2, sort_keys=True, default=str))
    return out


def load_tracr_model(ckpt_dir: str | Path) -> tuple[torch.nn.Module, CompiledProgramInfo, dict]:
    """A saved tracr model: the compiled architecture with the checkpoint's weights, and its metadata."""
    path = Path(ckpt_dir) / CONFIG
    if not path.is_file():
        raise CheckpointError(
            f"{ckpt_dir} has no {CONFIG}; give a directory written by `ftmech tracr finetune`"
        )
    try:
        payload = json.loads(path.read_text())
        program = payload["program"]
    except (json.JSONDecodeError, KeyError) as exc:
        raise CheckpointError(f"{path} is not a tracr checkpoint config ({exc})") from None
    model, info = tracr_models.load_compiled(program)
    load_weights_into(model, load_tensors(Path(ckpt_dir) / WEIGHTS), str(Path(ckpt_dir) / WEIGHTS))
    model.eval()
    return model, info, payload["metadata"]


# --- fine-tuning and reverse fine-tuning -------------------------------------------------------------


def sgd_train_config(
    *,
    lr: float,
    steps: int,
    seed: int,
    grad_clip: float | None = 1.0,
    eval_every: int | None = None,
    eval_steps: tuple[int, ...] | None = None,
) -> TrainConfig:
    """App. C.1's recipe: SGD momentum 0.9, batch 96, 20% warmup then cosine to 1e-2 x lr, no decay.

    ``grad_clip`` (global norm) is our addition: the compiled weights make raw SGD steps explode.
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
        eval_every=eval_every or max(1, steps // 8),
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
        _check_program(self.program)
        if not 0 <= self.c_tr <= 1:
            raise ConfigError(f"c_tr must be in [0, 1], got {self.c_tr}; e.g. --c-tr 1")
        if self.lr_level is not None and self.lr_level not in LR_LEVELS:
            raise ConfigError(f"unknown lr_level {self.lr_level!r}; use one of {', '.join(LR_LEVELS)}")
        if not (self.noise_std >= 0 and math.isfinite(self.noise_std)):
            raise ConfigError(f"noise_std must be >= 0, got {self.noise_std}")
        if self.eval_n < 1:
            raise ConfigError(f"eval_n must be >= 1, got {self.eval_n}")
        _check_n_letters(self.program, self.n_letters)


def _check_program(program: str) -> None:
    if program not in tp.PROGRAMS:
        raise ConfigError(f"unknown tracr program {program!r}; use one of {', '.join(tp.PROGRAMS)}")


def _check_n_letters(program: str, n_letters: int | None) -> None:
    limit = tp.PROGRAMS[program].max_seq_len
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
    program = info.config
    eval_sets = tracr_eval_sets(program, config.eval_n, seed=seed, n_letters=config.n_letters, q=config.q)
    batch_fn = training_batch_fn(
        program,
        target="ft",
        batch_size=config.train.batch_size,
        seed=seed,
        c_tr=config.c_tr,
        n_letters=config.n_letters,
        q=config.q,
    )
    result = _train_or_diverge(model, batch_fn, config.train, eval_sets, out, progress)
    meta = {"stage": "finetune", "stage_config": to_dict(config), "status": result.status}
    if result.status == "ok":
        save_tracr_model(out, model, program=config.program, metadata=meta)
    write_json(out / SUMMARY, {**meta, **result.to_json()})
    return result


def finetune_config_from_dict(data: dict) -> TracrFinetuneConfig:
    """Rebuild a TracrFinetuneConfig from its JSON (unknown keys rejected)."""
    return from_dict(TracrFinetuneConfig, data)


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
        _check_program(self.program)
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
    program = tp.PROGRAMS[config.program]
    seed = config.train.seed
    model = copy.deepcopy(model)
    eval_sets = tracr_eval_sets(program, config.eval_n, seed=seed, n_letters=config.n_letters, q=config.q)
    batch_fn = training_batch_fn(
        program,
        target="pt",
        batch_size=config.train.batch_size,
        seed=seed,
        c_tr=0.0,
        n_letters=config.n_letters,
    )
    result = _train_or_diverge(model, batch_fn, config.train, eval_sets, out, progress)
    curve = None
    if result.status == "ok":
        steps = [r["step"] for r in result.history]
        values = [r["eval"][eval_name("pt", 0)]["accuracy"] for r in result.history]
        curve = revival_curve(name, steps, values, threshold=config.threshold, horizon=config.train.steps)
    meta = {"stage": "reverse_ft", "stage_config": to_dict(config), "status": result.status, "name": name}
    write_json(out / SUMMARY, {**meta, **result.to_json(), "revival": curve.to_json() if curve else None})
    return result, curve


# --- analyses ----------------------------------------------------------------------------------------


def key_groups(info: CompiledProgramInfo, data: TracrDataset) -> dict[str, Bool[Tensor, "batch pos"]]:
    """Key positions holding O_PT vs O_FT (Counter: tokens a / b; Max-id: the O_PT-th / O_FT-th largest
    letter), BOS, and every other position."""
    tokens = torch.from_numpy(data.tokens)
    config = info.config
    if isinstance(config, CounterConfig):
        pt = tokens == info.input_encoding[config.operand_pt]
        ft = tokens == info.input_encoding[data.operand_ft]
    else:
        rows = data.letters.tolist()
        pt_letters = [tp.reference_max_identifier(r, config.operand_pt, config.vocab) for r in rows]
        ft_letters = [tp.reference_max_identifier(r, data.operand_ft, config.vocab) for r in rows]
        pt = tokens == torch.tensor([info.input_encoding[x] for x in pt_letters])[:, None]
        ft = tokens == torch.tensor([info.input_encoding[x] for x in ft_letters])[:, None]
    bos = torch.zeros_like(pt)
    bos[:, 0] = True
    return {"o_pt": pt, "o_ft": ft, "bos": bos, "other": ~(pt | ft | bos)}


def attention_masses(
    model: torch.nn.Module, info: CompiledProgramInfo, data: TracrDataset
) -> dict[str, list[float]]:
    """Mean attention from the answer position onto O_PT / O_FT / BOS / other keys, per layer (1 head)."""
    batch = dataset_batch(data, target="pt")
    mass = attention_mass(model, batch, query_pos="answer", key_groups=key_groups(info, data))
    return {group: [layer[0] for layer in per_layer] for group, per_layer in mass.items()}


def attention_map(
    model: torch.nn.Module, tokens: Tensor, *, layer: int
) -> Float[Tensor, "query_pos key_pos"]:
    """The one head's attention pattern of ``layer`` for a single input (the study's Fig. 10 maps)."""
    batch = Batch(
        tokens=tokens[None],
        answer_pos=torch.zeros(1, dtype=torch.long),
        answers=torch.zeros(1, dtype=torch.long),
    )
    acts = collect_activations(model, batch, hook_names=[hooks.attn_pattern(layer)], position=None)
    return acts[hooks.attn_pattern(layer)][0, 0]


def detector_activity(
    model: torch.nn.Module, info: CompiledProgramInfo, circuit: OperandCircuit, data: TracrDataset
) -> dict[str, float]:
    """Mean activation of the operand detector neuron (and its False twin) at O_PT and O_FT positions."""
    batch = dataset_batch(data, target="pt")
    name = hooks.mlp_post(circuit.detector_layer)
    acts = collect_activations(model, batch, hook_names=[name], position=None)[name]  # (example, pos, d_mlp)
    groups = key_groups(info, data)
    out = {}
    for neuron_name, neuron in (("detector", circuit.detector_neuron), ("other", circuit.other_neuron)):
        values = acts[..., neuron]
        for group in ("o_pt", "o_ft"):
            mask = groups[group]
            out[f"{neuron_name}@{group}"] = float(values[mask].mean()) if bool(mask.any()) else float("nan")
    return out


def gradient_share(model: torch.nn.Module, batch: Batch) -> dict[str, float]:
    """Share of the squared gradient norm of the answer loss per block component (attn/mlp per layer,
    embed, unembed): where plain SGD can move the model from here."""
    from interp.pruning import loss_gradients

    keys = [k for k, v in model.state_dict(keep_vars=True).items() if v.requires_grad]
    grads, _ = loss_gradients(model, batch, keys)
    total = sum(float(g.double().pow(2).sum()) for g in grads.values()) or 1.0
    share: dict[str, float] = {}
    for key, g in grads.items():
        part = key.split(".")
        group = f"{part[0]}.{part[1]}.{part[2]}" if part[0] == "blocks" else part[0]
        share[group] = share.get(group, 0.0) + float(g.double().pow(2).sum()) / total
    return share


def write_json(path: str | Path, payload: Any) -> None:
    """Pretty JSON, written atomically (NaN is written as null, never as a number)."""
    atomic_write_text(Path(path), json.dumps(_finite(payload), indent=2, sort_keys=True, default=str) + "\n")


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


# --- one fine-tuned run, analysed against its own starting point -------------------------------------------


@dataclass(frozen=True, kw_only=True)
class TracrAnalysisConfig:
    """What ``analyse_finetuned`` measures and on how much data."""

    prune_ks: tuple[int, ...] = (0, 1, 2, 3, 4, 8, 20)  # numbers of single weights pruned
    prune_level: Literal["neuron", "row", "weight"] = "weight"  # the study's Tracr figures prune weights
    score_n: int = 512  # inputs (C_Te = 0, O_PT answers) scoring grad x weight
    eval_n: int = 500  # inputs per evaluation set

    def __post_init__(self) -> None:
        if not self.prune_ks or min(self.prune_ks) < 0:
            raise ConfigError(f"prune_ks must be non-negative integers, got {self.prune_ks}")
        if self.prune_level not in ("neuron", "row", "weight"):
            raise ConfigError(f"unknown prune_level {self.prune_level!r}; use neuron, row or weight")
        if self.score_n < 1 or self.eval_n < 1:
            raise ConfigError("score_n and eval_n must be >= 1")


ANALYSIS = "analysis.json"


def analyse_finetuned(ckpt_dir: str | Path, *, config: TracrAnalysisConfig | None = None) -> dict[str, Any]:
    """Attention masses, detector activity, single-weight pruning, weight diff and patching of a fine-tuned
    model against the exact model it started from (rebuilt from its config); writes ``analysis.json``.

    Pruning scores grad x weight on the O_PT loss (C_Te = 0) and reports Acc O_PT / O_FT after removing
    the top-K weights; patching copies each block output of the start model into the fine-tuned one and
    reports how much O_PT accuracy that restores.
    """
    from interp.diffing import weight_diff
    from interp.patching import patch_across_models
    from interp.pruning import pruning_curve

    config = config or TracrAnalysisConfig()
    model, info, meta = load_tracr_model(ckpt_dir)
    if meta.get("stage") != "finetune":
        raise CheckpointError(f"{ckpt_dir} is a {meta.get('stage')!r} run; analyse a fine-tuned one")
    ft = finetune_config_from_dict(meta["stage_config"])
    seed = ft.train.seed
    start, _ = prepared_model(ft.program, noise_std=ft.noise_std, seed=seed, balance=ft.balance_mlps)
    circuit = operand_circuit(ft.program)
    program = info.config
    data = make_eval_data(program, config.eval_n, seed=seed, c_te=0, n_letters=ft.n_letters, q=ft.q)
    eval_sets = {
        s.name: s for s in tracr_eval_sets(program, config.eval_n, seed=seed, n_letters=ft.n_letters)
    }
    score = tp.make_dataset(program, config.score_n, seed=(seed, _SCORE_STREAM, 0), n_letters=ft.n_letters)
    curve = pruning_curve(
        model,
        dataset_batch(score, target="pt"),
        [eval_sets[eval_name("pt", 0)], eval_sets[eval_name("ft", 1)], eval_sets[eval_name("pt", 1)]],
        ks=config.prune_ks,
        level=config.prune_level,
    )
    diff = weight_diff(start, model)
    compiled = {k for k, v in tracr_models.load_compiled(ft.program)[0].state_dict().items() if bool(v.any())}
    by_norm = sorted(diff.matrices, key=lambda m: m.norm, reverse=True)
    # Relative change only where the compiler wrote weights: elsewhere the base is the noise alone.
    by_relative = sorted(
        (m for m in diff.matrices if m.name in compiled), key=lambda m: m.relative or 0.0, reverse=True
    )
    patch = patch_across_models(
        start, model, eval_sets[eval_name("pt", 0)], hook_names=hooks.block_outputs(model.cfg.n_layers)
    )
    example = torch.from_numpy(data.tokens[0])
    result = {
        "run": str(ckpt_dir),
        "program": ft.program,
        "lr_level": ft.lr_level,
        "c_tr": ft.c_tr,
        "seed": seed,
        "circuit": circuit.to_json(),
        "analysis_config": to_dict(config),
        "attention": {
            "layer": circuit.head_layer,
            "start": attention_masses(start, info, data),
            "finetuned": attention_masses(model, info, data),
        },
        "attention_map": {
            "letters": data.letters[0].tolist(),
            "start": attention_map(start, example, layer=circuit.head_layer).tolist(),
            "finetuned": attention_map(model, example, layer=circuit.head_layer).tolist(),
        },
        "detector": {
            "start": detector_activity(start, info, circuit, data),
            "finetuned": detector_activity(model, info, circuit, data),
        },
        "pruning": curve.to_json(),
        "weight_diff": {
            "total_relative": diff.total_relative,
            "top_norm": [_diff_row(m) for m in by_norm[:6]],
            "top_relative_compiled": [_diff_row(m) for m in by_relative[:6]],
        },
        "patching": patch.to_json(),
    }
    write_json(Path(ckpt_dir) / ANALYSIS, result)
    return result


def _diff_row(m: Any) -> dict[str, Any]:
    return {"name": m.name, "norm": m.norm, "relative": m.relative, "top_sv_share": m.top_sv_share}
