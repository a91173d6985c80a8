"""Learning-rate levels (eta_L, eta_M, eta_S, eta_VS) relative to a reference LR, under named labellings.

The study names fine-tuning LRs relative to the pretraining LR eta_PT, in two ways (protocol §3.4): its main
text defines only eta_M = eta_PT/10 and eta_S = eta_PT/100; its appendix tables and figures use eta_L =
eta_PT/10, eta_M = eta_PT/100 and eta_S = eta_PT/1000 (so the main text's eta_M is the appendix's eta_L). A
level under a labelling is ``reference_lr / divisor``. ``PT``, fine-tuning at eta_PT itself, is none of the
study's settings: it is ours, valid under every labelling and named as ours wherever it is reported.
Compiled (Tracr) models were never pretrained; their study LRs 1e-1 .. 1e-4 are the appendix labelling's
L .. VS against ``COMPILED_REFERENCE_LR``.
"""

from pathlib import Path

from interp.checkpoints import read_checkpoint_info
from interp.errors import ConfigError

OURS = "PT"  # fine-tuning at the pretraining LR: our arm, not the study's
LEVELS = (OURS, "L", "M", "S", "VS")
LABELLINGS: dict[str, dict[str, float]] = {
    "main_text": {OURS: 1.0, "M": 10.0, "S": 100.0},
    "appendix": {OURS: 1.0, "L": 10.0, "M": 100.0, "S": 1000.0, "VS": 10000.0},
}
COMPILED_REFERENCE_LR = 1.0
COMPILED_LEVELS = ("L", "M", "S", "VS")  # the Tracr study's 1e-1 .. 1e-4


def lr_for_level(level: str, reference_lr: float, labelling: str = "main_text") -> float:
    """The LR that ``labelling`` calls eta_``level`` for a model pretrained at ``reference_lr``."""
    if labelling not in LABELLINGS:
        raise ConfigError(f"unknown LR labelling '{labelling}'; use one of {', '.join(LABELLINGS)}")
    levels = LABELLINGS[labelling]
    if level not in levels:
        raise ConfigError(
            f"LR level '{level}' is not defined in the {labelling} labelling; use one of {', '.join(levels)}"
        )
    return reference_lr / levels[level]


def checkpoint_pretrain_lr(ckpt_dir: str | Path) -> float:
    """The peak LR the model behind ``ckpt_dir`` was pretrained with, following ``base`` links back to the
    pretraining stage; a clear ``ConfigError`` when no such record exists."""
    seen: set[str] = set()
    current = str(ckpt_dir)
    while current not in seen:
        seen.add(current)
        meta = read_checkpoint_info(current).metadata
        if meta.get("stage") == "pretrain":
            try:
                return float(meta["stage_config"]["train"]["lr"])
            except (KeyError, TypeError, ValueError):
                break
        if not isinstance(meta.get("base"), str):
            break
        current = meta["base"]
    raise ConfigError(f"{ckpt_dir} records no pretraining LR (no 'pretrain' stage behind it); pass --lr")
