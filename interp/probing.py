"""Linear probes on frozen activations, with the controls that make their accuracy mean something.

Method (study App. D, protocol §5): a linear layer reads a label (e.g. the count of O_PT) from one
hook's activation at one position, trained with AdamW for 4K iterations at LR 1e-3, decayed x0.1 at
50%, 75% and 87.5% of the iterations. Multi-label probes (the TinyStories features, mean of the last
10 positions) use the same layer with BCE-with-logits and per-feature accuracy (logit > 0). A
scikit-learn ``LogisticRegression`` backend is offered as a check on the optimiser.

A probe's held-out accuracy alone says little; ``probe_layers`` reports it beside:
- the majority-class floor of the test split;
- a control task (Hewitt & Liang 2019): every distinct input type (by default the true label value,
  or another label named by ``control_key``) is mapped to a random label drawn from the empirical
  label distribution; selectivity = task accuracy - control accuracy. When the label is a 1-D ordinal
  feature, a linear probe cannot fit the shuffled classes and selectivity is high; when each label has
  its own direction, the control is as easy as the task and selectivity is near 0.
- floor and ceiling models: ``compare_probes`` probes several models on the same data and split, e.g.
  ``{"finetuned": ft, "pretrained": pt, "random_init": build_model(dataclasses.replace(cfg, seed=1))}``.
"""

import math
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

from interp.activations import Data, Position, check_position, collect_activations
from interp.config import to_dict
from interp.errors import ConfigError, DataError
from interp.runtime import numpy_rng, torch_generator


@dataclass(frozen=True, kw_only=True)
class ProbeConfig:
    """How a probe is trained and evaluated; defaults are the study's PCFG probe."""

    backend: Literal["torch", "sklearn"] = "torch"  # AdamW linear layer, or sklearn LogisticRegression
    steps: int = 4000  # optimizer steps (torch backend)
    lr: float = 1e-3  # AdamW peak learning rate
    weight_decay: float = 0.01  # AdamW decoupled weight decay
    decay_at: tuple[float, ...] = (0.5, 0.75, 0.875)  # fractions of steps where the LR is multiplied...
    decay_factor: float = 0.1  # ... by this factor (step decay)
    batch_size: int = 256  # examples per step (full batch when the train split is smaller)
    multilabel: bool = False  # labels are [example, n_features] in {0, 1}: BCE, per-feature accuracy
    n_classes: int | None = None  # output width; None: max label + 1 (the study uses the vocabulary size)
    bias: bool = True  # probe has a bias (the TinyStories probe has none)
    standardize: bool = False  # z-score features with the train split's mean and std
    c: float = 1.0  # inverse L2 strength (sklearn backend)
    max_iter: int = 2000  # solver iterations (sklearn backend)
    test_frac: float = 0.2  # held-out fraction of the examples
    seed: int = 0  # split, minibatches and control labels

    def __post_init__(self) -> None:
        if self.backend not in ("torch", "sklearn"):
            raise ConfigError(f"unknown probe backend '{self.backend}'; use torch or sklearn")
        for name in ("steps", "batch_size", "max_iter"):
            if getattr(self, name) < 1:
                raise ConfigError(f"probe {name} must be >= 1, got {getattr(self, name)}")
        for name in ("lr", "c"):
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                raise ConfigError(f"probe {name} must be a positive number, got {value}")
        if self.weight_decay < 0:
            raise ConfigError(f"probe weight_decay must be >= 0, got {self.weight_decay}")
        if any(not 0 < f < 1 for f in self.decay_at):
            raise ConfigError(f"decay_at {self.decay_at} must be fractions in (0, 1), e.g. 0.5,0.75,0.875")
        if not 0 < self.decay_factor <= 1:
            raise ConfigError(f"decay_factor must be in (0, 1], got {self.decay_factor}")
        if self.n_classes is not None and self.n_classes < 2:
            raise ConfigError(f"n_classes must be >= 2 or unset, got {self.n_classes}")
        if not 0 < self.test_frac < 1:
            raise ConfigError(f"test_frac must be in (0, 1), got {self.test_frac}; e.g. 0.2")

    def lr_at(self, step: int) -> float:
        """Step-decay schedule: lr x decay_factor for each ``decay_at`` fraction already passed."""
        passed = sum(step >= f * self.steps for f in self.decay_at)
        return self.lr * self.decay_factor**passed


@dataclass(frozen=True)
class ProbeResult:
    """Accuracy of one trained probe on its train and held-out splits, beside the majority floor.

    For multi-label probes the accuracies are means over features; ``feature_accuracy`` has each one.
    ``weight`` [n_out, d] and ``bias`` [n_out] act on the (standardised, if configured) features.
    """

    train_accuracy: float
    test_accuracy: float
    majority_floor: float
    n_train: int
    n_test: int
    n_classes: int
    final_loss: float
    feature_accuracy: tuple[float, ...] | None = None
    weight: Tensor | None = field(default=None, repr=False, compare=False)
    bias: Tensor | None = field(default=None, repr=False, compare=False)

    def to_json(self) -> dict:
        return {
            "train_accuracy": self.train_accuracy,
            "test_accuracy": self.test_accuracy,
            "majority_floor": self.majority_floor,
            "n_train": self.n_train,
            "n_test": self.n_test,
            "n_classes": self.n_classes,
            "final_loss": self.final_loss,
            "feature_accuracy": None if self.feature_accuracy is None else list(self.feature_accuracy),
        }


def split_indices(n: int, test_frac: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded train/test split of ``range(n)`` (at least one example on each side)."""
    if n < 2:
        raise DataError(f"a probe needs at least 2 examples to split, got {n}")
    perm = numpy_rng(seed, 1).permutation(n)
    n_test = min(n - 1, max(1, round(n * test_frac)))
    return perm[n_test:], perm[:n_test]


def control_labels(types: Tensor, labels: Tensor, *, seed: int = 0) -> Tensor:
    """Hewitt & Liang control task: each distinct ``types`` row gets a label drawn from ``labels``.

    Draws come from the empirical label distribution, so several types can share a label (a bijective
    relabelling would be exactly as linearly decodable as the task itself). The control's majority
    floor can differ from the task's; both are reported.
    """
    if types.shape[0] != labels.shape[0]:
        raise DataError(f"{types.shape[0]} input types for {labels.shape[0]} labels")
    _, inverse = torch.unique(types, dim=0, return_inverse=True)
    draw = numpy_rng(seed, 2).integers(0, labels.shape[0], size=int(inverse.max()) + 1)
    return labels[torch.from_numpy(draw)][inverse]


def _majority_floor(train: Tensor, test: Tensor, multilabel: bool) -> float:
    if multilabel:
        majority = (train.float().mean(0) >= 0.5).float()
        return float((test.float() == majority).float().mean())
    values, counts = torch.unique(train, return_counts=True)
    return float((test == values[counts.argmax()]).float().mean())


def _accuracy(logits: Tensor, labels: Tensor, multilabel: bool) -> tuple[float, Tensor | None]:
    if multilabel:
        per_feature = ((logits > 0).float() == labels.float()).float().mean(0)
        return float(per_feature.mean()), per_feature
    return float((logits.argmax(-1) == labels).float().mean()), None


def _fit_torch(
    x: Float[Tensor, "probe n d"], y: Tensor, n_out: int, config: ProbeConfig
) -> tuple[Tensor, Tensor, Tensor]:
    """Train P independent linear probes at once (one per leading index).

    The loss is the sum of each probe's mean loss and AdamW acts element-wise, so every probe follows
    exactly the updates it would get alone (same minibatches); batching only saves Python overhead.
    """
    n_probes, n, d = x.shape
    weight = torch.zeros(n_probes, n_out, d, requires_grad=True)
    bias = torch.zeros(n_probes, 1, n_out, requires_grad=config.bias)
    params = [weight, bias] if config.bias else [weight]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    gen = torch_generator(config.seed)
    order, cursor = torch.randperm(n, generator=gen), 0
    losses = torch.zeros(n_probes)
    for step in range(config.steps):
        if n <= config.batch_size:
            xb, yb = x, y
        else:
            if cursor + config.batch_size > n:
                order, cursor = torch.randperm(n, generator=gen), 0
            idx = order[cursor : cursor + config.batch_size]
            cursor += config.batch_size
            xb, yb = x[:, idx], y[:, idx]
        for group in optimizer.param_groups:
            group["lr"] = config.lr_at(step)
        logits = torch.baddbmm(bias, xb, weight.transpose(1, 2))  # (probe, batch, n_out)
        if config.multilabel:
            per = F.binary_cross_entropy_with_logits(logits, yb.float(), reduction="none").mean((1, 2))
        else:
            per = F.cross_entropy(logits.transpose(1, 2), yb, reduction="none").mean(1)
        optimizer.zero_grad(set_to_none=True)
        per.sum().backward()
        optimizer.step()
        losses = per.detach()
    return weight.detach(), bias.detach().squeeze(1), losses


def _fit_sklearn(x: Tensor, y: Tensor, n_out: int, config: ProbeConfig) -> tuple[Tensor, Tensor, float]:
    from sklearn.linear_model import LogisticRegression

    xs, d = x.numpy().astype(np.float64), x.shape[1]
    weight, bias = np.zeros((n_out, d)), np.zeros(n_out)
    columns = [y[:, j].numpy() for j in range(n_out)] if config.multilabel else [y.numpy()]
    for j, target in enumerate(columns):
        classes = np.unique(target)
        if len(classes) == 1:  # constant label: a bias-only predictor
            if config.multilabel:
                bias[j] = 10.0 if classes[0] == 1 else -10.0
            else:
                bias[:] = -10.0
                bias[int(classes[0])] = 10.0
            continue
        clf = LogisticRegression(
            C=config.c, max_iter=config.max_iter, fit_intercept=config.bias, random_state=config.seed
        )
        clf.fit(xs, target)
        if config.multilabel:
            weight[j], bias[j] = clf.coef_[0], clf.intercept_[0]
        elif len(classes) == 2:
            bias[:] = -1e4
            bias[classes[0]] = 0.0
            weight[classes[1]], bias[classes[1]] = clf.coef_[0], clf.intercept_[0]
        else:
            bias[:] = -1e4
            weight[classes], bias[classes] = clf.coef_, clf.intercept_
    w, b = torch.from_numpy(weight).float(), torch.from_numpy(bias).float()
    logits = x @ w.T + b
    if config.multilabel:
        loss = F.binary_cross_entropy_with_logits(logits, y.float())
    else:
        loss = F.cross_entropy(logits, y)
    return w, b, float(loss)


def _check_labels(labels: Tensor, n: int, config: ProbeConfig) -> tuple[Tensor, int]:
    """Labels as a CPU long tensor and the probe's output width."""
    if labels.shape[0] != n:
        raise DataError(f"{n} feature rows for {labels.shape[0]} labels")
    y = labels.detach().long().cpu()
    if config.multilabel:
        if y.ndim != 2:
            raise DataError(
                "multilabel probes need labels of shape [example, n_features]; set multilabel=False"
            )
        if bool(((y != 0) & (y != 1)).any()):
            raise DataError("multilabel probe labels must be 0 or 1")
        return y, y.shape[1]
    if y.ndim != 1:
        raise DataError(f"labels must be [example] class ids, got shape {tuple(y.shape)}; or set multilabel")
    if bool((y < 0).any()):
        raise DataError(f"probe labels must be class ids >= 0, got {int(y.min())}")
    n_out = max(2, config.n_classes or int(y.max()) + 1)
    if int(y.max()) >= n_out:
        raise DataError(f"label {int(y.max())} does not fit n_classes {n_out}; raise n_classes")
    return y, n_out


def _split_features(
    features: Tensor, config: ProbeConfig, train_idx: np.ndarray, test_idx: np.ndarray
) -> tuple[Tensor, Tensor]:
    if features.ndim != 2:
        raise DataError(f"probe features must be [example, d], got shape {tuple(features.shape)}")
    x = features.detach().float().cpu()
    if not bool(torch.isfinite(x).all()):
        raise DataError("probe features contain NaN or inf")
    x_train, x_test = x[train_idx], x[test_idx]
    if config.standardize:
        mean, std = x_train.mean(0), x_train.std(0).clamp_min(1e-6)
        x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    return x_train, x_test


def _result(
    x_train: Tensor,
    x_test: Tensor,
    y_train: Tensor,
    y_test: Tensor,
    fit: tuple[Tensor, Tensor, float],
    config: ProbeConfig,
) -> ProbeResult:
    weight, bias, loss = fit
    with torch.no_grad():
        train_acc, _ = _accuracy(x_train @ weight.T + bias, y_train, config.multilabel)
        test_acc, per_feature = _accuracy(x_test @ weight.T + bias, y_test, config.multilabel)
    return ProbeResult(
        train_accuracy=train_acc,
        test_accuracy=test_acc,
        majority_floor=_majority_floor(y_train, y_test, config.multilabel),
        n_train=x_train.shape[0],
        n_test=x_test.shape[0],
        n_classes=weight.shape[0],
        final_loss=float(loss),
        feature_accuracy=None if per_feature is None else tuple(float(v) for v in per_feature),
        weight=weight,
        bias=bias,
    )


def _train_many(
    features: list[Tensor], labels: list[Tensor], n_out: int, config: ProbeConfig
) -> list[ProbeResult]:
    """Train one probe per (features, labels) pair on the same seeded split."""
    n = features[0].shape[0]
    train_idx, test_idx = split_indices(n, config.test_frac, config.seed)
    splits = [_split_features(f, config, train_idx, test_idx) for f in features]
    if config.backend == "sklearn":
        fits = [
            _fit_sklearn(xtr, y[train_idx], n_out, config) for (xtr, _), y in zip(splits, labels, strict=True)
        ]
    else:
        d = max(xtr.shape[1] for xtr, _ in splits)
        x = torch.stack([F.pad(xtr, (0, d - xtr.shape[1])) for xtr, _ in splits])
        y = torch.stack([lab[train_idx] for lab in labels])
        weight, bias, losses = _fit_torch(x, y, n_out, config)
        fits = [
            (weight[i, :, : xtr.shape[1]], bias[i], float(losses[i])) for i, (xtr, _) in enumerate(splits)
        ]
    return [
        _result(xtr, xte, y[train_idx], y[test_idx], fit, config)
        for (xtr, xte), y, fit in zip(splits, labels, fits, strict=True)
    ]


def train_probe(
    features: Float[Tensor, "example d"],
    labels: Int[Tensor, " example"] | Int[Tensor, "example n_features"],
    *,
    config: ProbeConfig | None = None,
) -> ProbeResult:
    """Fit a linear probe on a seeded train split of ``features`` and score it on the held-out rest."""
    config = config or ProbeConfig()
    y, n_out = _check_labels(labels, features.shape[0], config)
    return _train_many([features], [y], n_out, config)[0]


@dataclass(frozen=True)
class ProbeLayersResult:
    """One probe per hook name on the same examples and split, with its control task."""

    label: str
    position: Position
    config: ProbeConfig
    task: dict[str, ProbeResult]
    control: dict[str, ProbeResult] | None = None

    @property
    def test_accuracy(self) -> dict[str, float]:
        return {name: r.test_accuracy for name, r in self.task.items()}

    @property
    def selectivity(self) -> dict[str, float] | None:
        """Task minus control accuracy per hook (None without a control task)."""
        if self.control is None:
            return None
        return {name: r.test_accuracy - self.control[name].test_accuracy for name, r in self.task.items()}

    def best(self) -> tuple[str, float]:
        """The hook name with the highest held-out accuracy, and that accuracy."""
        name = max(self.task, key=lambda n: self.task[n].test_accuracy)
        return name, self.task[name].test_accuracy

    def to_json(self) -> dict:
        selectivity = self.selectivity
        rows = []
        for name, result in self.task.items():
            row = {"hook": name, **result.to_json()}
            if self.control is not None and selectivity is not None:
                row["control_accuracy"] = self.control[name].test_accuracy
                row["selectivity"] = selectivity[name]
            rows.append(row)
        return {
            "label": self.label,
            "position": self.position,
            "config": to_dict(self.config),
            "layers": rows,
        }


def _labels_of(acts, label: str) -> Tensor:
    if label == "answers":
        return acts.answers
    if label not in acts.labels:
        raise DataError(f"the data has no label '{label}'; it has {sorted(acts.labels) + ['answers']}")
    return acts.labels[label]


def probe_layers(
    model: torch.nn.Module,
    data: Data,
    *,
    hook_names: Iterable[str],
    label: str,
    position: Position = "answer",
    config: ProbeConfig | None = None,
    control: bool = True,
    control_key: str | None = None,
    batch_size: int = 256,
) -> ProbeLayersResult:
    """Held-out probe accuracy of ``label`` at each hook (same split), and the control task's.

    ``label`` names an entry of ``Batch.labels`` (or ``"answers"``). ``control_key`` names the label
    that defines input types for the control task (default: ``label`` itself).
    """
    config = config or ProbeConfig()
    check_position(position)
    acts = collect_activations(model, data, hook_names=hook_names, position=position, batch_size=batch_size)
    labels, n_out = _check_labels(_labels_of(acts, label), acts.n_examples, config)
    names = list(acts.activations)
    features = [acts[name] for name in names]
    for name, f in zip(names, features, strict=True):
        if f.ndim != 2:
            raise DataError(f"'{name}' gives activations of shape {tuple(f.shape)}; probes need [example, d]")
    label_sets = [labels] * len(names)
    if control:
        types = labels if control_key is None else _labels_of(acts, control_key)
        controls = control_labels(types, labels, seed=config.seed)
        features, label_sets = features + features, label_sets + [controls] * len(names)
    results = _train_many(features, label_sets, n_out, config)
    task = dict(zip(names, results[: len(names)], strict=True))
    ctrl = dict(zip(names, results[len(names) :], strict=True)) if control else None
    result = ProbeLayersResult(label, position, config, task, ctrl)
    best_name, best_acc = result.best()
    if best_acc <= task[best_name].majority_floor + 0.01:
        warnings.warn(
            f"probe for '{label}' is at its majority floor ({best_acc:.3f}) at every hook",
            stacklevel=2,
        )
    return result


@dataclass(frozen=True)
class ProbeComparison:
    """``probe_layers`` on several models (e.g. fine-tuned, pretrained ceiling, random-init floor)."""

    results: dict[str, ProbeLayersResult]

    def to_json(self) -> dict:
        return {name: r.to_json() for name, r in self.results.items()}


def compare_probes(
    models: Mapping[str, torch.nn.Module], data: Data, *, hook_names: Iterable[str], **options: Any
) -> ProbeComparison:
    """Probe each named model on the same data, split and config (floors and ceilings side by side).

    ``options`` are ``probe_layers``'s: ``label`` and, optionally, position, config, control and control_key.
    """
    if not models:
        raise DataError("compare_probes needs at least one model")
    names = list(hook_names)
    data = list(data) if not hasattr(data, "tokens") and not hasattr(data, "batch") else data
    return ProbeComparison(
        {key: probe_layers(model, data, hook_names=names, **options) for key, model in models.items()}
    )
