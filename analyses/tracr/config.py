"""What the Tracr study runs: the fine-tuning grid over programs x eta x C_Tr x seeds, its sizes, the longer
Counter arm and the reverse fine-tuning arm; ``PRESETS`` names the study's sizes. ``DEVIATIONS`` lists every
way the runs differ from the paper, the one source of the report's and the README's deviations table."""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from interp.config import check_seeds
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
        check_seeds(self.seeds)
        check_seeds(self.long_seeds, least=0)
        if not self.lr_levels or not self.c_trs or not self.programs:
            raise ConfigError("programs, lr_levels and c_trs must each name at least one value")
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


@dataclass(frozen=True)
class Deviation:
    """One way our Tracr runs differ from the paper: what the study did, what we do, and why.

    ``ours`` may name study-config fields in braces (``{counter_steps}``), filled from the run's config.
    """

    topic: str
    study: str
    ours: str
    why: str


DEVIATIONS: tuple[Deviation, ...] = (
    Deviation(
        "weight noise",
        "N(0, 0.001) on every compiled weight (App. C.1; std or variance not said)",
        "N(0, std^2), std = {noise_std}, on every weight",
        "measured on the shipped weights (seeds 0-2, 500 inputs each): std 1e-3 leaves the balanced Counter "
        "at 0-21% count-a accuracy (20 or 45 letters) and Max-identifier at 16-38%, 3e-4 at 3-85% and "
        "86-97%; 1e-4 is the largest std tried that keeps both at 100%",
    ),
    Deviation(
        "MLP rebalancing",
        "none",
        "{balance_mlps}: each ReLU neuron rescaled to equal input and output norms before the noise "
        "(the same function)",
        "our Counter is compiled exact to 45 letters, so block 1's MLP has activations up to ~8,500 and "
        "N(0, 1e-5) noise already collapses it to a nearly constant answer (3-23% correct); balanced, the largest weight is 111 "
        "(from 8,648)",
    ),
    Deviation(
        "SelectorWidth exactness L",
        "not said (tracr's default is 100)",
        "L = 4(N+1)(N+2) = 8,648 for N = 45 letters",
        "with L = 100 the compiled Counter miscounts from about 10 occurrences on (11 a's counted as 10)",
    ),
    Deviation(
        "gradient clipping",
        "none mentioned",
        "global gradient norm clipped at {grad_clip}",
        "measured (seed 0, Counter): without it the loss of every eta_L and eta_M run turns NaN within 3-7 "
        "steps (eta_S runs survive); a diverged run is counted, not hidden",
    ),
    Deviation(
        "fine-tuning steps",
        "10K iterations, 2K of them linear warmup",
        "Counter {counter_steps}, Max-identifier {max_identifier_steps}, warmup the first 20%; a longer "
        "Counter arm of {long_steps} steps at (eta, C_Tr) {long_settings}, seeds {long_seeds}",
        "CPU budget; at eta_S / eta_VS the C_Tr = 1 wrapper forms within ~80 steps; eta_L with C_Tr = 0 "
        "counts b at 97% only by step 400 (seed 0)",
    ),
    Deviation(
        "reverse fine-tuning",
        "10K iterations at eta_VS after eta_M and eta_L fine-tuning; no revival threshold",
        "{reverse_steps} steps at eta_{reverse_lr_level} after the eta {reverse_after} runs with "
        "C_Tr = {reverse_c_tr}; revived once Acc O_PT (C_Te = 0) >= {reverse_threshold}",
        "CPU budget; eta_S is added because at this scale the C_Tr = 1 wrapper forms at eta_S",
    ),
    Deviation(
        "Scr.+FT control",
        "a model pretrained to count b, fine-tuned to count a",
        "the compiled Counter for b (the operand detector's two input columns swapped), balanced and "
        "noised like the fine-tuned runs",
        "compiled models have no pretraining; the exact edit is a model that counts b and never counted a",
    ),
    Deviation(
        "Counter input length",
        "~45 tokens (the attention-map figures)",
        "{counter_letters} letters after BOS (compiled and tested exact up to 45)",
        "CPU budget: a run's cost grows with the input length",
    ),
    Deviation(
        "C_Tr values",
        "{0, 0.2, 0.5, 0.6, 0.8, 0.9, 1}",
        "{{{c_trs}}}",
        "CPU budget; the wrapper claims and Tab. 3's key cells are at 0 and 1",
    ),
    Deviation(
        "C_Te = 0 sets",
        "not said; Tab. 3's wrapper cells (0.2-2.2%) suggest samples meeting the correlation are left out",
        "plain uniform samples, some of which meet the correlation by chance; each set reports the "
        "wrapper's accuracy (the shortcut floor) and the wrapper claim is judged against it",
        "a strict set is not built for Tracr; the floor keeps a wrapper recognisable",
    ),
    Deviation(
        "seeds and intervals",
        "one run per cell, no error bars",
        "seeds {seeds}: every seed's value and a Student-t 95% CI of the mean; every claim checked per seed",
        "the study reports no spread",
    ),
    Deviation(
        "SGD momentum and weight decay",
        "SGD with momentum, value not said; weight decay not said",
        "momentum 0.9, no weight decay (ours)",
        "the common default",
    ),
    Deviation(
        "loss position",
        "not said",
        "cross-entropy on the answer at the last letter only (ours)",
        "the compiled programs answer at every position; the last letter has seen the whole input",
    ),
    Deviation(
        "planted offset q and Max-identifier O_FT",
        "not said for Tracr",
        "q = {q}; Max-identifier O_FT is the 6th largest (O_PT + 1)",
        "the PCFG's q; with q = 1 this is the paper's 'a+1' example",
    ),
    Deviation(
        "correlated samples",
        "construction not said",
        "drawn uniformly among the inputs with r(x, O_FT) - r(x, O_PT) = q",
        "keeps every other feature of a sample uniform given the constraint",
    ),
    Deviation(
        "evaluation size",
        "not said",
        "{eval_n} inputs per evaluation set and seed; pruning scored on {score_n} inputs",
        "at 500 inputs an accuracy's Wilson 95% CI is at most +-4.4 points",
    ),
)
AS_IN_STUDY = (
    "batch 96; SGD with momentum; linear warmup over 20% of the steps, then cosine to 1e-2 x the peak LR",
    "LRs eta_L/M/S/VS = 1e-1/1e-2/1e-3/1e-4",
    "3 single-head blocks with 2-layer ReLU MLPs and no normalisation",
    "single-step pruning of individual weights by grad x weight on the count-a loss (App. D, Alg. 3)",
    "Counter letters: the first nine, drawn with replacement; Max-identifier: 10 of 26 letters, "
    "without replacement",
)


def _show(value: Any) -> str:
    """A config value as the deviations table prints it."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if value is None:
        return "none"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | tuple):
        items = [
            f"({' '.join(_show(v) for v in item)})" if isinstance(item, list | tuple) else _show(item)
            for item in value
        ]
        return ", ".join(items) or "none"
    return str(value)


def deviation_rows(config: Mapping[str, Any]) -> list[tuple[str, str, str, str]]:
    """``DEVIATIONS`` as (topic, study, ours, why), ``ours`` filled from a study config as a dict (``to_dict``
    of a ``TracrStudyConfig``, or results.json's ``config``)."""
    values = {key: _show(value) for key, value in config.items()}
    return [(d.topic, d.study, d.ours.format_map(values), d.why) for d in DEVIATIONS]


def deviations_markdown(config: Mapping[str, Any]) -> str:
    """The deviations table in Markdown, as the README shows it for the ``cpu`` preset."""
    lines = ["| Tracr | the study | ours | why |", "|---|---|---|---|"]
    for row in deviation_rows(config):
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")
    return "\n".join(lines)
