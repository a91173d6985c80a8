"""What the PCFG study runs: the grid of priors, fine-tuning settings and controls; sizes come from the preset."""

from dataclasses import dataclass
from typing import NamedTuple

from interp.config import check_seeds, lookup
from interp.errors import ConfigError
from interp.lr_levels import LABELLINGS, OURS
from interp.training import PRECISIONS
from procedural_tasks.pcfg_protocols import study_preset
from procedural_tasks.pcfg_tasks import PRIORS

FinetuneSetting = tuple[str, str, float]  # (prior name, lr level, c_tr)


class Grid(NamedTuple):
    """A named study grid: the pretraining priors, the fine-tuning settings, and those reverse fine-tuned."""

    priors: tuple[str, ...]
    finetune: tuple[FinetuneSetting, ...]
    reverse: tuple[FinetuneSetting, ...]


GRIDS: dict[str, Grid] = {
    # The cpu-sized grid: the study's eta_M and eta_S arms on the low prior, the medium prior at eta_M, and
    # our own arm at eta_PT (none of the study's settings).
    "default": Grid(
        priors=("low", "medium"),
        finetune=(
            ("low", OURS, 1.0),
            ("low", "M", 0.0),
            ("low", "M", 1.0),
            ("low", "S", 1.0),
            ("medium", "M", 1.0),
        ),
        reverse=(("low", "M", 1.0), ("medium", "M", 1.0), ("low", OURS, 1.0)),
    ),
    # The study's Fig. 5 grid: priors H/M/L x eta_M/eta_S x C_Tr {0, 0.5, 0.8, 1}, and our eta_PT arm.
    "full": Grid(
        priors=("low", "medium", "high"),
        finetune=(
            *(
                (prior, level, c)
                for prior in ("low", "medium", "high")
                for level in ("M", "S")
                for c in (0, 0.5, 0.8, 1)
            ),
            ("low", OURS, 1.0),
        ),
        reverse=(("low", "M", 1.0), ("medium", "M", 1.0), ("high", "M", 1.0), ("low", OURS, 1.0)),
    ),
}


@dataclass(frozen=True, kw_only=True)
class PCFGStudyConfig:
    """What the PCFG study runs. Sizes come from the preset; lists name the grid (``GRIDS``)."""

    preset: str = "cpu"  # cpu (2-core CPU, minutes), paper (the study's sizes, GPU) or tiny (tests)
    seeds: tuple[int, ...] = (0, 1, 2)  # every model is trained once per seed
    priors: tuple[str, ...] = GRIDS["default"].priors  # pretraining operand priors (names in PRIORS)
    control_prior: str = "only_b"  # Scr.+FT control: pretrained never asked to count a
    finetune_grid: tuple[FinetuneSetting, ...] = GRIDS["default"].finetune
    reverse_from: tuple[FinetuneSetting, ...] = GRIDS["default"].reverse
    reverse_lr_level: str = "M"  # reverse fine-tuning LR (the study's Fig. 9 uses eta_M and eta_S)
    control_reverse_factor: int = 2  # Scr.+FT relearns this many times the preset's reverse steps, so
    # speed-ups against it are measured, not lower bounds
    lr_labelling: str = "main_text"  # which of the study's eta labellings the levels use
    pretrain_lr: float = 1e-3  # eta_PT; the eta levels are fractions of it
    q: int = 1  # planted offset count(b) - count(a)
    threshold_frac: float = 0.9  # revived at this fraction of the pretrained model's O_PT accuracy
    analyse: bool = True  # run probes, pruning, diffing, patching and the audit
    device: str = "auto"
    precision: str | None = None  # fp32 or bf16 autocast; None: the preset's (paper: bf16)
    compile: bool | None = None  # torch.compile the training step; None: the preset's (paper: on)
    data_workers: int | None = None  # processes making batches ahead of each step; None: the preset's

    @classmethod
    def for_grid(cls, grid: str, **fields) -> "PCFGStudyConfig":
        """The config of a named grid (``default`` or ``full``), with ``fields`` replaced."""
        chosen = lookup(GRIDS, grid, "grid")
        return cls(priors=chosen.priors, finetune_grid=chosen.finetune, reverse_from=chosen.reverse, **fields)

    def __post_init__(self) -> None:
        study_preset(self.preset)
        levels = lookup(LABELLINGS, self.lr_labelling, "lr_labelling")
        check_seeds(self.seeds)
        for prior in (*self.priors, self.control_prior):
            if prior not in PRIORS:
                raise ConfigError(f"unknown prior '{prior}'; use one of {', '.join(PRIORS)}")
        for prior, level, c_tr in (*self.finetune_grid, *self.reverse_from):
            if prior not in self.priors:
                raise ConfigError(
                    f"fine-tuning setting uses prior '{prior}' which is not in priors {self.priors}"
                )
            if level not in levels:
                raise ConfigError(
                    f"lr level '{level}' is not defined in the {self.lr_labelling} labelling; use one of "
                    f"{', '.join(levels)}"
                )
            if not 0 <= c_tr <= 1:
                raise ConfigError(f"c_tr must be in [0, 1], got {c_tr}")
        for setting in self.reverse_from:
            if setting not in self.finetune_grid:
                raise ConfigError(f"reverse_from {setting} is not in finetune_grid; add it there too")
        if self.reverse_lr_level not in levels:
            raise ConfigError(
                f"reverse_lr_level '{self.reverse_lr_level}' is not in the {self.lr_labelling} labelling"
            )
        if self.precision is not None and self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.data_workers is not None and self.data_workers < 0:
            raise ConfigError(f"data_workers must be >= 0, got {self.data_workers}")
        if self.control_reverse_factor < 1:
            raise ConfigError(f"control_reverse_factor must be >= 1, got {self.control_reverse_factor}")


def setting_name(setting: FinetuneSetting) -> str:
    """A readable name for a fine-tuned model, e.g. ``FT(low, eta_M, C_Tr=1)``; our eta_PT arm says "ours"."""
    prior, level, c_tr = setting
    return f"FT({prior}, eta_{level}{' (ours)' if level == OURS else ''}, C_Tr={c_tr:g})"


# Every way the cpu-preset study differs from the paper: (what the study did, what we do, why). The report
# and the README show this one table.
DEVIATIONS: tuple[tuple[str, str, str], ...] = (
    (
        "minGPT, 6 blocks x 6 heads, d_model 192 (~3M parameters)",
        "3 blocks x 4 heads, d_model 64, d_mlp 256 (`paper` preset: the study's size)",
        "minutes on a 2-core CPU",
    ),
    (
        "200K pretraining steps, batch not stated; 10K fine-tuning and reverse steps at batch 96",
        "600 pretraining (2000 for the medium prior), 250 fine-tuning and 300 reverse steps at batch 32 "
        "(`paper`: 200K / 10K / 10K at 96)",
        "CPU budget; low-prior models count a at >= 99% after 500 steps (measured by the audit benchmark); the "
        "medium prior counts b at 0.44-0.53 after 600 steps, 0.77-0.90 after 1,200 and 0.945-0.957 after 1,500 (seeds 0 "
        "and 1; the strongly relevant threshold is 0.95) and >= 0.95 after 2000 (measured)",
    ),
    (
        "five task families (counting, composition, index, ...), a 250-token text, O' = 40",
        "the counting family only, a 40-token window counted over its last 32 (`paper`: all families, 250/40)",
        "the fine-tuning task is counting; fewer families learn in fewer steps",
    ),
    (
        "pretraining: next-token loss on the whole sequence",
        "answer-token loss (`paper` preset: whole-sequence next-token loss)",
        "puts every step's signal on the answer the study measures; the whole-sequence loss is untried at this size",
    ),
    (
        "priors P^L, P^M, P^H; C_Tr in {0, 0.5, 0.8, 1}",
        "P^L and P^M; C_Tr in {0, 1} (`--grid full`: P^H and C_Tr 0/0.5/0.8/1)",
        "CPU budget",
    ),
    (
        "eta_M = eta_PT/10, eta_S = eta_PT/100 (main text); eta_L/M/S = 1e-4/1e-5/1e-6 (appendix)",
        "the same two labellings (main text by default); plus our own arm at eta_PT, named ours",
        "the eta_PT arm asks whether a large LR damages the capability, as Tracr's does; it is not the study's",
    ),
    (
        "reverse fine-tuning at eta_M and eta_S, up to 10K steps",
        "at eta_M (main text, 1e-4), 300 steps; the Scr.+FT control 600 steps, Scr. 300",
        "the control needs the longer horizon for speed-ups to be measured rather than bounded",
    ),
    (
        "Scr.+FT control: pretrained with the operand prior swapped so that a is absent (inferred)",
        "pretrained with prior (0, 1, 0): only b is ever counted",
        "a model that never counts a, with the fine-tuning operand fully relevant",
    ),
    (
        "C_Te = 0 excludes chance coincidences (inferred from Tab. 5's 0.0-1.6%)",
        "both: a strict C_Te = 0 set without count(b) = count(a) + q, and the plain one with its shortcut floor",
        "plain samples meet the relation ~21% of the time, which a count(a) + 1 wrapper scores",
    ),
    (
        "no seeds or error bars reported",
        "3 seeds; every seed's value, Student-t 95% intervals, claims checked in every seed",
        "3 seeds give an interval only with a t-distribution (a bootstrap is the min-max range)",
    ),
)
