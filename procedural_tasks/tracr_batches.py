"""The compiled programs' data as ``Batch``/``EvalSet``: Tab. 3's evaluation sets (Acc O_PT and Acc O_FT at
C_Te = 1 and 0) and the fine-tuning batches with the spurious correlation.

Every set is drawn from its own numpy seed stream, ``(seed, stream, index)``, so a run's training batches,
evaluation sets and pruning-score inputs never overlap and never depend on each other's sizes.
"""

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from interp.batches import Batch, EvalSet
from interp.errors import ConfigError
from procedural_tasks.tracr_programs import (
    CounterConfig,
    ProgramConfig,
    output_encoding_for,
    reference_counter,
    reference_max_identifier,
)
from procedural_tasks.tracr_sampling import TracrDataset, make_dataset

_TRAIN_STREAM, _EVAL_STREAM, _SCORE_STREAM = 1, 2, 3  # numpy seed streams: (seed, stream, index)

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
        values = [reference_counter(row, config.operand_pt) + data.q for row in data.letters.tolist()]
        table = output_encoding_for(config)
        return torch.tensor([table.get(v, -1) for v in values], dtype=torch.long)
    index = {letter: i for i, letter in enumerate(config.vocab)}
    table = output_encoding_for(config)
    out = []
    for row in data.letters.tolist():
        i = index[reference_max_identifier(row, config.operand_pt, config.vocab)] + data.q
        out.append(table[config.vocab[i]] if 0 <= i < len(config.vocab) else -1)
    return torch.tensor(out, dtype=torch.long)


def make_eval_data(
    config: ProgramConfig, n: int, *, seed: int, c_te: int, n_letters: int | None = None, q: int = 1
) -> TracrDataset:
    """The evaluation inputs with C_Te = ``c_te`` (0 or 1) of run seed ``seed``."""
    return make_dataset(
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


@dataclass(frozen=True)
class TracrBatches:
    """``step -> Batch``: fresh samples per step, a fraction ``c_tr`` drawn under the correlation; a dataclass,
    so it pickles for the training engine's data workers."""

    config: ProgramConfig
    target: Target
    batch_size: int
    seed: int
    c_tr: float
    n_letters: int | None = None
    q: int = 1

    def __call__(self, step: int) -> Batch:
        data = make_dataset(
            self.config,
            self.batch_size,
            seed=(self.seed, _TRAIN_STREAM, step),
            n_letters=self.n_letters,
            c_tr=self.c_tr,
            q=self.q,
        )
        return dataset_batch(data, target=self.target)


def training_batch_fn(
    config: ProgramConfig,
    *,
    target: Target,
    batch_size: int,
    seed: int,
    c_tr: float,
    n_letters: int | None = None,
    q: int = 1,
) -> TracrBatches:
    """``step -> Batch``: fresh samples per step, a fraction ``c_tr`` drawn under the correlation."""
    return TracrBatches(config, target, batch_size, seed, c_tr, n_letters, q)


def make_score_data(
    config: ProgramConfig, n: int, *, seed: int, n_letters: int | None = None
) -> TracrDataset:
    """The inputs (C_Te = 0) that score weights for pruning in run seed ``seed``."""
    return make_dataset(config, n, seed=(seed, _SCORE_STREAM, 0), n_letters=n_letters)
