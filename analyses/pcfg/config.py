"""What the PCFG study runs: the grid of priors, fine-tuning settings and controls; sizes come from the preset."""

from dataclasses import dataclass

from interp.errors import ConfigError
from interp.lr_levels import LABELLINGS, LEVELS
from procedural_tasks.pcfg_protocols import study_preset
from procedural_tasks.pcfg_tasks import PRIORS

FinetuneSetting = tuple[str, str, float]  # (prior name, lr level, c_tr)


@dataclass(frozen=True, kw_only=True)
class PCFGStudyConfig:
    """What the PCFG study runs. Sizes come from the preset; lists name the grid."""

    preset: str = "cpu"  # cpu (2-core CPU, minutes), paper (the study's sizes, GPU) or tiny (tests)
    seeds: tuple[int, ...] = (0, 1, 2)  # every model is trained once per seed
    priors: tuple[str, ...] = ("low", "medium")  # pretraining operand priors (names in PRIORS)
    control_prior: str = "only_b"  # Scr.+FT control: pretrained never asked to count a
    finetune_grid: tuple[FinetuneSetting, ...] = (
        ("low", "L", 1.0),
        ("low", "M", 0.0),
        ("low", "M", 1.0),
        ("low", "S", 1.0),
        ("medium", "M", 1.0),
    )
    reverse_from: tuple[FinetuneSetting, ...] = (("low", "M", 1.0), ("medium", "M", 1.0), ("low", "L", 1.0))
    reverse_lr_level: str = "S"  # reverse fine-tuning LR (smaller than the fine-tuning one)
    lr_labelling: str = "main_text"  # which of the study's eta labellings the levels use
    pretrain_lr: float = 1e-3  # eta_PT; the eta levels are fractions of it
    q: int = 1  # planted offset count(b) - count(a)
    threshold_frac: float = 0.9  # revived at this fraction of the pretrained model's O_PT accuracy
    analyse: bool = True  # run probes, pruning, diffing, patching and the audit
    device: str = "auto"

    def __post_init__(self) -> None:
        study_preset(self.preset)
        if not self.seeds:
            raise ConfigError("seeds is empty; give at least one, e.g. --seeds 3")
        for prior in (*self.priors, self.control_prior):
            if prior not in PRIORS:
                raise ConfigError(f"unknown prior '{prior}'; use one of {', '.join(PRIORS)}")
        for prior, level, c_tr in (*self.finetune_grid, *self.reverse_from):
            if prior not in self.priors:
                raise ConfigError(
                    f"fine-tuning setting uses prior '{prior}' which is not in priors {self.priors}"
                )
            if level not in LEVELS:
                raise ConfigError(f"unknown lr level '{level}'; use one of {', '.join(LEVELS)}")
            if not 0 <= c_tr <= 1:
                raise ConfigError(f"c_tr must be in [0, 1], got {c_tr}")
        for setting in self.reverse_from:
            if setting not in self.finetune_grid:
                raise ConfigError(f"reverse_from {setting} is not in finetune_grid; add it there too")
        if self.reverse_lr_level not in LEVELS:
            raise ConfigError(f"unknown reverse_lr_level '{self.reverse_lr_level}'")
        if self.lr_labelling not in LABELLINGS:
            raise ConfigError(f"unknown lr_labelling '{self.lr_labelling}'; use {', '.join(LABELLINGS)}")


def setting_name(setting: FinetuneSetting) -> str:
    """A readable name for a fine-tuned model, e.g. ``FT(low, eta_M, C_Tr=1)``."""
    prior, level, c_tr = setting
    return f"FT({prior}, eta_{level}, C_Tr={c_tr:g})"
