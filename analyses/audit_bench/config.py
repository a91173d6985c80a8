"""What the audit benchmark runs: its cases, seeds, sizes and the audit's measurement recipe per family."""

from dataclasses import dataclass

from interp.config import check_seeds, lookup
from interp.errors import ConfigError
from interp.relearning import RelearnConfig

LABELS = ("intact", "wrapped", "removed", "inconclusive")
# case -> (true label, how the truth is known)
TRACR_CASES = {
    "intact": ("intact", "constructed: the compiled Counter with independent weight noise"),
    "wrapped": (
        "wrapped",
        "constructed: the circuit untouched, a count + 1 wrapper planted in block 2's empty MLP",
    ),
    "removed": ("removed", "constructed: detector and counting head re-randomised, then trained on count(b)"),
    "never_had_it": ("removed", "constructed: random init trained on count(b) only"),
}
PCFG_CASES = {
    "intact": ("intact", "constructed: the pretrained model itself"),
    "wrapped": ("wrapped", "empirical: FT(low, eta_M, C_Tr=1), whose fast revival the study measures"),
    "never_had_it": ("removed", "constructed: pretrained never asked to count a (Scr.+FT base)"),
}


@dataclass(frozen=True, kw_only=True)
class AuditBenchConfig:
    """Seeds, sizes and relearning recipes of the benchmark (one PCFG preset names the PCFG model sizes)."""

    seeds: tuple[int, ...] = (0, 1, 2)
    tracr_cases: tuple[str, ...] = tuple(TRACR_CASES)
    pcfg_cases: tuple[str, ...] = tuple(PCFG_CASES)
    pcfg_preset: str = "cpu"
    n_eval: int = 400
    tracr_train_steps: int = 150  # fine-tuning of the removed / never-had-it Counter models
    pcfg_pretrain_steps: int | None = 500  # None: the PCFG preset's own
    tracr_relearn: RelearnConfig = RelearnConfig(steps=150, lrs=(1e-4, 1e-3), batch_size=32)
    pcfg_relearn: RelearnConfig = RelearnConfig(steps=100, lrs=(1e-4,), batch_size=32)
    device: str = "cpu"

    def __post_init__(self) -> None:
        check_seeds(self.seeds)
        for case in self.tracr_cases:
            lookup(TRACR_CASES, case, "tracr case")
        for case in self.pcfg_cases:
            lookup(PCFG_CASES, case, "pcfg case")
        if "never_had_it" in self.pcfg_cases and len(self.seeds) < 2:
            raise ConfigError(
                "the PCFG never-had-it case takes another seed's control as its reference; give >= 2 seeds"
            )
        if self.pcfg_pretrain_steps is not None and self.pcfg_pretrain_steps < 1:
            raise ConfigError(f"pcfg_pretrain_steps must be >= 1 or unset, got {self.pcfg_pretrain_steps}")
        if self.n_eval < 8:
            raise ConfigError(f"n_eval must be >= 8, got {self.n_eval}")


PRESETS = {
    "cpu": AuditBenchConfig(),
    # Seconds, for tests: the numbers mean nothing.
    "tiny": AuditBenchConfig(
        seeds=(0, 1),
        tracr_cases=("intact", "wrapped"),
        pcfg_cases=("intact", "never_had_it"),
        pcfg_preset="tiny",
        pcfg_pretrain_steps=None,
        n_eval=64,
        tracr_train_steps=3,
        tracr_relearn=RelearnConfig(steps=3, lrs=(1e-4,), batch_size=8),
        pcfg_relearn=RelearnConfig(steps=3, lrs=(1e-3,), batch_size=8),
    ),
}
