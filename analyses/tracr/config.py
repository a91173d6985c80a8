"""What the Tracr study runs: the fine-tuning grid over programs x eta x C_Tr x seeds, its sizes, the longer
Counter arm and the reverse fine-tuning arm; ``PRESETS`` names the study's sizes."""

from dataclasses import dataclass

from interp.errors import ConfigError
from procedural_tasks.tracr_finetuning import finetune_lr
from procedural_tasks.tracr_preparation import STUDY_NOISE_STD
from procedural_tasks.tracr_programs import program_config


@dataclass(frozen=True, kw_only=True)
class TracrStudyConfig:
    """What the Tracr study runs: the grid, its sizes, and the reverse fine-tuning arm."""

    programs: tuple[str, ...] = ("counter", "max_identifier")  # compiled programs to fine-tune
    lr_levels: tuple[str, ...] = ("L", "M", "S", "VS")  # eta levels (1e-1 .. 1e-4)
    c_trs: tuple[float, ...] = (0.0, 1.0)  # C_Tr values of the fine-tuning data
    seeds: tuple[int, ...] = (0, 1, 2)  # each seed drives weight noise, data and evaluation sets
    counter_steps: int = 200  # SGD steps per Counter fine-tuning run (paper: 10K)
    max_identifier_steps: int = 300  # SGD steps per Max-identifier run (paper: 10K)
    counter_letters: int = 20  # letters per Counter input (compiled for up to 45)
    noise_std: float = STUDY_NOISE_STD  # weight noise before fine-tuning (paper: 1e-3; see noise_sweep)
    balance_mlps: bool = True  # function-preserving rescaling of ReLU neurons before the noise
    grad_clip: float | None = 1.0  # global gradient-norm clip; None: plain SGD (runs may diverge)
    eval_n: int = 500  # inputs per evaluation set
    q: int = 1  # planted offset r(x, O_FT) - r(x, O_PT)
    reverse_after: tuple[str, ...] = ("M", "L", "S")  # eta levels of the Counter runs reverse fine-tuned
    # (the paper's arms are M and L; S is added because at CPU scale the C_Tr = 1 wrapper forms at eta_S)
    reverse_c_tr: float = 1.0  # ... at this C_Tr
    reverse_lr_level: str = "VS"  # reverse fine-tuning LR (paper: eta_VS = 1e-4)
    reverse_steps: int = 200  # reverse fine-tuning steps (evaluated at log-spaced steps)
    reverse_threshold: float = 0.9  # revived when Acc O_PT at C_Te = 0 reaches this
    long_steps: int | None = 1000  # a longer Counter arm (None: off): eta_L with C_Tr = 0 needs more steps
    long_settings: tuple[tuple[str, float], ...] = (
        ("L", 0.0),
        ("L", 1.0),
        ("M", 0.0),
        ("M", 1.0),
    )  # (eta, C_Tr)
    long_seeds: tuple[int, ...] = (0,)  # seeds of the long arm (each also reverse fine-tuned)
    analyse: bool = True  # attention, detector, pruning, weight diff and patching per run
    prune_ks: tuple[int, ...] = (0, 1, 2, 3, 4, 8, 20)  # single weights pruned
    score_n: int = 512  # inputs scoring grad x weight
    noise_sweep: tuple[float, ...] = (
        0.0,
        1e-5,
        1e-4,
        3e-4,
        1e-3,
    )  # noise stds checked on the compiled models

    def __post_init__(self) -> None:
        for program in self.programs:
            program_config(program)
        for level in (*self.lr_levels, *self.reverse_after, self.reverse_lr_level):
            finetune_lr(level)
        if not self.seeds or not self.lr_levels or not self.c_trs or not self.programs:
            raise ConfigError("programs, lr_levels, c_trs and seeds must each name at least one value")
        if any(not 0 <= c <= 1 for c in (*self.c_trs, self.reverse_c_tr)):
            raise ConfigError(f"C_Tr values must be in [0, 1], got {self.c_trs} / {self.reverse_c_tr}")
        if self.reverse_after and ("counter" not in self.programs or self.reverse_c_tr not in self.c_trs):
            raise ConfigError("reverse_after needs 'counter' in programs and reverse_c_tr in c_trs")
        if any(level not in self.lr_levels for level in self.reverse_after):
            raise ConfigError(f"reverse_after {self.reverse_after} must be among lr_levels {self.lr_levels}")
        if self.long_steps is not None and self.long_settings and "counter" not in self.programs:
            raise ConfigError("long_steps runs Counter; add 'counter' to programs or set long_steps to None")
        for level, c_tr in self.long_settings:
            finetune_lr(level)
            if not 0 <= c_tr <= 1:
                raise ConfigError(f"long_settings C_Tr {c_tr} must be in [0, 1]")
        if self.long_steps is not None and self.long_steps < 1:
            raise ConfigError(f"long_steps must be >= 1 or None, got {self.long_steps}")
        for name in ("counter_steps", "max_identifier_steps", "reverse_steps", "eval_n", "score_n"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")

    def steps_for(self, program: str) -> int:
        return self.counter_steps if program == "counter" else self.max_identifier_steps

    def n_letters_for(self, program: str) -> int | None:
        return self.counter_letters if program == "counter" else None


PRESETS: dict[str, TracrStudyConfig] = {  # resolved by name with interp.config.lookup
    "cpu": TracrStudyConfig(),
    # Seconds: for tests and smoke runs; numbers mean nothing.
    "tiny": TracrStudyConfig(
        programs=("counter",),
        lr_levels=("M", "VS"),
        seeds=(0, 1),
        counter_steps=3,
        counter_letters=6,
        eval_n=24,
        reverse_after=("M",),
        reverse_steps=3,
        long_steps=4,
        long_settings=(("L", 0.0),),
        prune_ks=(0, 1, 2),
        score_n=16,
        noise_sweep=(0.0, 1e-4),
    ),
}


CONTROL = "Scr.+FT control"  # the reverse fine-tuning arm that starts from the compiled program for O_FT
