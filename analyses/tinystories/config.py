"""One setting of the TinyStories study, its presets, the one training recipe of its stages, and every way the
study here differs from Jain et al.'s (``DEVIATIONS``, shown in the report).

LRs keep the study's ratios (``interp.lr_levels``, main-text labelling): eta_M = eta_PT / 10 and eta_S =
eta_PT / 100 (the study's 1e-4 and 1e-5 against 1e-3); recovery runs at eta_S (the study's 1e-5). The Table 1
columns 0 / 30 / 300 / 3000 become 0 / R/100 / R/10 / R for R recovery steps.
"""

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from interp.config import check_seeds, lookup
from interp.errors import ConfigError
from interp.lr_levels import lr_for_level
from interp.models import PRESETS as MODEL_PRESETS
from interp.models import ModelConfig
from interp.revival import log_spaced_steps
from interp.training import PRECISIONS, TrainConfig
from procedural_tasks.story_data import StoryDataConfig
from procedural_tasks.story_deletion import DeletionConfig
from procedural_tasks.story_stages import StoryDeletionConfig, StoryPretrainConfig, StoryRecoveryConfig

DELETION_KINDS = ("filter", "filter_random_labels", "filter_mix_match")
KIND_LABELS = {"filter": "F", "filter_random_labels": "F+RR", "filter_mix_match": "F+MM"}
CONTROL = "Not in PT"
PRETRAINED = "Present in PT"
LR_LEVELS = ("M", "S")  # the study's deletion and recovery LRs (interp.lr_levels, main-text labelling)
FINETUNE_EVALS = {"deletion": 4, "recovery": 8}  # log-spaced evaluations of the loss curve per stage


@dataclass(frozen=True)
class Deviation:
    """One way this study differs from Jain et al.'s TinyStories study: what they did, what we do, and why."""

    aspect: str
    study: str
    ours: str
    why: str


# Every difference from the study (protocol §7; [C] = the authors' code), shown in the report and the README.
DEVIATIONS: tuple[Deviation, ...] = (
    Deviation(
        "stories",
        "TinyStories-Instruct (GPT-written TinyStories_all_data, 50 shards)",
        "default `synthetic`: template-generated stories with planted features (not TinyStories); `shared`: a "
        "2,316-story real sample; `hub`: a local copy of TinyStories_all_data (`--setting hub --data-dir DIR`)",
        "runs offline on a CPU, and planted features can be judged exactly",
    ),
    Deviation(
        "feature labels",
        "the features each story's prompt asked GPT-4 for",
        "synthetic: the planted features; shared: quoted speech read off the text (dialogue only); hub: the "
        "prompt's features, as the study",
        "real text has no exact twist rule; only dialogue can be read off it exactly",
    ),
    Deviation(
        "feature deleted",
        "Twist",
        "twist (synthetic, hub); dialogue (shared)",
        "the shared sample labels only dialogue",
    ),
    Deviation(
        "split",
        "shard 0 test; first 80% of the other shards pretraining, last 20% fine-tuning",
        "a seeded 0.7 / 0.2 / 0.1 split of one corpus (shared 0.6 / 0.2 / 0.2); hub: the first `n_stories` "
        "labelled records",
        "one rule for every setting and corpus size",
    ),
    Deviation(
        "Instruct lines",
        "Words, Features, Summary, Sentence, shuffled",
        "cpu: Words and Features (shared: Features); gpu: all four (shared: Features)",
        "shorter texts fit the CPU context",
    ),
    Deviation(
        "sequences",
        "BOS, no EOS; stories packed into 1024-token rows",
        "BOS and EOS, one text a row of at most `n_ctx` tokens (cpu 144, hub 512; gpu 512), longer texts "
        "dropped; shared stories cut at 400 characters (cpu)",
        "a sampled story ends by itself, so the judge sees whole stories",
    ),
    Deviation(
        "tokenizer",
        "SentencePiece BPE, 8192 tokens (tok8192)",
        "our BPE trained on the setting's pretraining texts, at most 1024 (cpu) or 8192 (gpu) tokens",
        "offline; sized to the corpus",
    ),
    Deviation(
        "model",
        "91M LLaMA-2 style: dim 768, 12 layers, 12 heads",
        "cpu: ~0.26M (d_model 64, 3 blocks, 4 heads, SwiGLU 168); gpu: the 91M model",
        "the CPU study fits about 20 minutes on two cores",
    ),
    Deviation(
        "pretraining",
        "30,000 steps, batch 128 x 1024 tokens, LR 1e-3, warmup then cosine to 0",
        "cpu: 400 steps, batch 32, LR 6e-3, 10% warmup then cosine to LR/100; gpu: 30,000 steps, batch 128, "
        "LR 1e-3",
        "CPU budget; a tiny model takes a larger LR",
    ),
    Deviation(
        "deletion and recovery",
        "4000 steps each at batch 128, constant LR; deletion at 1e-4 (eta_M) and 1e-5 (eta_S), recovery at "
        "1e-5; fp16",
        "the same ratios to our eta_PT (eta_M = eta_PT/10, eta_S = eta_PT/100, recovery at eta_S); cpu: 100 "
        "steps each at batch 32, fp32; gpu: 4000 deletion and 3000 recovery steps at batch 128, bf16",
        "CPU budget; LRs keep the study's ratios",
    ),
    Deviation(
        "deletion kinds",
        "F, F+RR, F+MM",
        "cpu: F (add F+RR, F+MM with --deletion-kinds); gpu: all three (shared: no F+MM)",
        "CPU budget; the shared sample does not label foreshadowing",
    ),
    Deviation(
        "F+MM",
        "[C] `--mix_match features=Foreshadowing:Twist`, which the authors' parser turns into no swap at all, so "
        "their F+MM set was probably the F set again",
        "Foreshadowing is relabelled Twist in the instruction, as the paper describes",
        "the paper's definition; our F+MM row is not comparable with the study's",
    ),
    Deviation(
        "Table 1 columns",
        "recovery steps 0 / 30 / 270 (printed 300) / 3000",
        "0 / R/100 / R/10 / R for R recovery steps (cpu R = 100; gpu 0 / 30 / 300 / 3000)",
        "the same log spacing at any length",
    ),
    Deviation(
        "generation judge",
        "a fine-tuned GPT-3.5 classifier (92% held-out accuracy)",
        "local rules: the strict planted-twist rule (`has_twist`) primary, the loose opener rule beside it; "
        "exact dialogue rule on real text; hub twist: no local judge, so the score claims are not testable",
        "offline and exact where the form is planted; no rule judges a real twist",
    ),
    Deviation(
        "generations per score",
        "16 (one micro-batch), 350 tokens, temperature 1",
        "per seed 128 (cpu) or 256 (gpu), at most 130 (cpu) or 350 (gpu) tokens, temperature 1",
        "16 stories give a 95% interval about +-22 points wide at 50%",
    ),
    Deviation(
        "seeds and intervals",
        "one model per arm, no error bars",
        "at least 2 model seeds; every seed's value, then a Student-t 95% interval over seeds; each claim "
        "checked seed by seed",
        "between-seed variance is part of the result",
    ),
    Deviation(
        "losses",
        "loss on Twist, filter-Twist and filter-adv-Twist stories",
        "loss on held-out stories with the feature only, on the story tokens given the prompt",
        "the recovery claim needs only the feature loss",
    ),
    Deviation(
        "recovery speed",
        "read off the loss curves (30-300 steps vs a control that never gets there)",
        "steps to the pretrained model's feature loss x 1.05 at log-spaced evaluations, seed by seed against "
        "the control",
        "a criterion fixed in advance",
    ),
    Deviation(
        "probes",
        "Linear(768 -> 6) after blocks 0-10, trained 2000 steps on pretraining stories",
        "the same probe on the embedding output (B0) and every block; trained on a seeded half of the test "
        "stories, scored on the other half; 1000 steps (cpu) or 2000 (gpu)",
        "held-out accuracy on stories no model trained on",
    ),
    Deviation(
        "probe claim",
        "read off Fig. 11a",
        "per block and seed a one-sided two-proportion z-test against the control; a block passes if every "
        "seed does; Holm correction over blocks at 5%",
        "a claim that passes at any one of many blocks needs a multiple-comparison correction",
    ),
)


@dataclass(frozen=True, kw_only=True)
class TinyStoriesStudyConfig:
    """One setting of the TinyStories study: its data, model, stage lengths, LRs and evaluation sizes."""

    setting: Literal["synthetic", "shared", "hub"] = (
        "synthetic"  # synthetic (template stories, planted twist) | shared (real, dialogue) | hub (real, local)
    )
    data_dir: str | None = None  # hub: a local TinyStories_all_data folder (data*.json shards)
    feature: str = "twist"  # the deleted and recovered feature (shared: dialogue)
    seeds: tuple[int, ...] = (0, 1)  # model seeds (initialisation, batch order, generation draws)
    model: ModelConfig = dataclasses.replace(
        MODEL_PRESETS["llama_cpu"], d_model=64, n_layers=3, n_heads=4, d_mlp=168
    )  # LLaMA-style architecture; d_vocab and n_ctx come from the tokenizer and data
    n_stories: int = 6000  # synthetic corpus size (shared: the whole sample)
    fields: tuple[str, ...] = ("words", "features")  # Instruct lines (the study uses all four)
    max_story_chars: int | None = 400  # shared: stories cut at a sentence boundary (labels recomputed after)
    n_ctx: int = 144  # tokens per text at most
    vocab_size: int = 1024  # tokenizer vocabulary bound
    split: tuple[float, float, float] = (0.7, 0.2, 0.1)  # pretrain / finetune / test fractions
    data_seed: int = 0  # one corpus and tokenizer per setting, shared by all model seeds
    batch_size: int = 32  # sequences per step in every stage
    pretrain_steps: int = 400
    pretrain_lr: float = 6e-3  # eta_PT; warmup then cosine (the study's 1e-3 for 91M)
    warmup_frac: float = 0.1  # pretraining warmup fraction
    deletion_kinds: tuple[str, ...] = (
        "filter",
    )  # F; add filter_random_labels (F+RR), filter_mix_match (F+MM)
    lr_levels: tuple[str, ...] = ("M", "S")  # deletion LRs eta_M = eta_PT/10, eta_S = eta_PT/100
    deletion_steps: int = 100  # constant LR, no warmup (study: 4000)
    recovery_steps: int = 100  # R, the 3000-analogue; a multiple of 100 (columns 0, R/100, R/10, R)
    recovery_lr_level: str = "S"  # recovery LR level (study: 1e-5 = eta_S)
    n_generations: int = 128  # generations per score point and seed (the study used 16)
    max_new_tokens: int = 130  # sampled tokens per story at most (clamped to n_ctx)
    eval_n: int = 128  # held-out feature stories for the loss
    probe_steps: int = 1000  # probe optimiser steps (study: 2000 at batch 128)
    probe_test_frac: float = 0.5  # held-out fraction of the probe stories (the test split)
    loss_tolerance: float = (
        0.05  # recovered (loss) when the feature loss <= pretrained loss x (1 + tolerance)
    )
    score_threshold_frac: float = 0.9  # recovered (score) when the score >= this x the pretrained model's
    precision: str = "fp32"  # fp32, or bf16 autocast for GPUs (gpu_study_config)
    data_workers: int = 0  # processes making training batches ahead of each step (the batches are the same)
    device: str = "auto"

    def __post_init__(self) -> None:
        _ = self.data  # validates setting, feature and the data sizes
        check_seeds(self.seeds, least=2)
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision {self.precision!r} must be one of {', '.join(PRECISIONS)}")
        if self.data_workers < 0:
            raise ConfigError(f"data_workers must be >= 0, got {self.data_workers}")
        bad = [k for k in self.deletion_kinds if k not in DELETION_KINDS]
        if bad or not self.deletion_kinds:
            raise ConfigError(
                f"deletion_kinds {self.deletion_kinds} must be a non-empty subset of {DELETION_KINDS}"
            )
        if self.setting == "shared" and "filter_mix_match" in self.deletion_kinds:
            raise ConfigError("F+MM relabels foreshadowing, which the shared sample does not label; drop it")
        if not self.lr_levels or any(lvl not in LR_LEVELS for lvl in self.lr_levels):
            raise ConfigError(f"lr_levels {self.lr_levels} must be a non-empty subset of {LR_LEVELS}")
        if self.recovery_lr_level not in LR_LEVELS:
            raise ConfigError(f"recovery_lr_level {self.recovery_lr_level!r} must be M or S")
        if self.recovery_steps < 100 or self.recovery_steps % 100:
            raise ConfigError(
                f"recovery_steps {self.recovery_steps} must be a positive multiple of 100, e.g. 100"
            )
        for name in (
            "pretrain_steps",
            "deletion_steps",
            "batch_size",
            "n_generations",
            "eval_n",
            "probe_steps",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 < self.pretrain_lr < 1:
            raise ConfigError(f"pretrain_lr {self.pretrain_lr} must be in (0, 1), e.g. 6e-3")
        if not 0 <= self.warmup_frac < 1 or not 0 < self.probe_test_frac < 1:
            raise ConfigError("warmup_frac must be in [0, 1) and probe_test_frac in (0, 1)")
        if self.loss_tolerance < 0 or not 0 < self.score_threshold_frac <= 1:
            raise ConfigError("loss_tolerance must be >= 0 and score_threshold_frac in (0, 1]")

    @property
    def data(self) -> StoryDataConfig:
        """The corpus: this config's fields of the same names, seeded with ``data_seed``."""
        fields = dataclasses.fields(StoryDataConfig)
        return StoryDataConfig(
            **{f.name: getattr(self, f.name) for f in fields if f.name != "seed"}, seed=self.data_seed
        )

    @property
    def name(self) -> str:
        return f"{self.setting}-{self.feature}"

    def lr(self, level: str) -> float:
        """eta_``level`` against this setting's pretraining LR."""
        return lr_for_level(level, self.pretrain_lr)

    @property
    def score_steps(self) -> tuple[int, ...]:
        """The Table 1 columns: 0, R/100, R/10, R (the study's 0 / 30 / 300 / 3000)."""
        return score_steps(self.recovery_steps)

    def train_config(
        self,
        stage: str,
        *,
        seed: int,
        lr: float | None = None,
        steps: int | None = None,
        batch_size: int | None = None,
        device: str | None = None,
    ) -> TrainConfig:
        """The training recipe of a stage (the only place it is written): AdamW with weight decay 0.1 and betas
        (0.9, 0.95) on the story tokens. Pretraining warms up for ``warmup_frac`` then decays by cosine and is
        evaluated four times; deletion and recovery run at a constant LR and are evaluated at log-spaced steps.

        ``lr`` defaults to eta_PT for pretraining and to eta at ``recovery_lr_level`` for recovery; deletion
        needs it. ``steps``, ``batch_size`` and ``device`` default to this setting's.
        """
        stage_steps = {
            "pretrain": self.pretrain_steps,
            "deletion": self.deletion_steps,
            "recovery": self.recovery_steps,
        }
        default_steps = lookup(stage_steps, stage, "stage")
        steps = default_steps if steps is None else steps
        if lr is None:
            if stage == "deletion":
                raise ConfigError("a deletion stage needs its LR, e.g. lr=config.lr('M')")
            lr = self.pretrain_lr if stage == "pretrain" else self.lr(self.recovery_lr_level)
        common: dict[str, Any] = {
            "steps": steps,
            "batch_size": batch_size or self.batch_size,
            "lr": lr,
            "weight_decay": 0.1,
            "betas": (0.9, 0.95),
            "loss": "sequence",
            "seed": seed,
            "device": device or self.device,
            "precision": self.precision,
        }
        if stage == "pretrain":
            return TrainConfig(**common, warmup_frac=self.warmup_frac, eval_every=max(1, steps // 4))
        evals = tuple(log_spaced_steps(steps, FINETUNE_EVALS[stage]))
        return TrainConfig(**common, schedule="constant", warmup_frac=0.0, eval_steps=evals)

    def pretrain_stage(self, seed: int, *, with_feature: bool = True, **train: Any) -> StoryPretrainConfig:
        """Pretraining of model ``seed``, with the feature or without it (the never-had-it control);
        ``train`` overrides the recipe (``train_config``)."""
        return StoryPretrainConfig(
            data=self.data,
            model=dataclasses.replace(self.model, seed=seed),
            train=self.train_config("pretrain", seed=seed, **train),
            with_feature=with_feature,
            eval_n=self.eval_n,
        )

    def deletion_stage(
        self, kind: str, seed: int, *, lr_level: str | None, lr: float | None = None, **train: Any
    ) -> StoryDeletionConfig:
        """Deletion fine-tuning of kind ``kind`` at ``lr``, by default eta at ``lr_level`` (None: ``lr`` was
        given as a number); ``train`` overrides the rest of the recipe."""
        lr = self.lr(lr_level) if lr is None else lr
        return StoryDeletionConfig(
            deletion=DeletionConfig(kind=kind, feature=self.feature, seed=seed),
            train=self.train_config("deletion", seed=seed, lr=lr, **train),
            lr_level=lr_level,
            eval_n=self.eval_n,
        )

    def recovery_stage(
        self, seed: int, *, n_generations: int | None = None, **train: Any
    ) -> StoryRecoveryConfig:
        """Recovery fine-tuning, scored at the Table 1 columns of its length; ``train`` overrides the recipe."""
        recipe = self.train_config("recovery", seed=seed, **train)
        return StoryRecoveryConfig(
            train=recipe,
            score_steps=score_steps(recipe.steps),
            n_generations=self.n_generations if n_generations is None else n_generations,
            max_new_tokens=self.max_new_tokens,
            eval_n=self.eval_n,
        )


def score_steps(steps: int) -> tuple[int, ...]:
    """The generation score's steps in a recovery of ``steps`` steps: 0, steps/100, steps/10 and the end."""
    return tuple(sorted({0, max(1, steps // 100), max(1, steps // 10), steps}))


def deletion_name(kind: str, level: str) -> str:
    """The study's row name, e.g. ``F (eta_M)``."""
    return f"{KIND_LABELS[kind]} (eta_{level})"


def cpu_study_config(setting: str = "synthetic", **overrides: Any) -> TinyStoriesStudyConfig:
    """The CPU-scale study of one setting (synthetic twist or shared-sample dialogue): a LLaMA-style model of
    about 0.26M parameters (``llama_cpu`` shrunk to d_model 64, 3 blocks, SwiGLU hidden 168)."""
    if setting == "synthetic":
        base = TinyStoriesStudyConfig(setting="synthetic", feature="twist", split=(0.7, 0.2, 0.1))
    elif setting == "shared":
        base = TinyStoriesStudyConfig(
            setting="shared", feature="dialogue", split=(0.6, 0.2, 0.2), fields=("features",)
        )
    elif setting == "hub":
        base = TinyStoriesStudyConfig(
            setting="hub", data_dir=overrides.pop("data_dir", None), max_story_chars=None, n_ctx=512
        )
    else:
        raise ConfigError(f"setting {setting!r} is unknown; use synthetic, shared or hub")
    return dataclasses.replace(base, **overrides)


def gpu_study_config(setting: str = "synthetic", **overrides: Any) -> TinyStoriesStudyConfig:
    """The study's sizes (protocol §7.2-7.4) with the 91M ``llama_91m`` model, for a GPU."""
    base = cpu_study_config(setting, data_dir=overrides.pop("data_dir", None))
    sizes: dict[str, Any] = {
        "model": MODEL_PRESETS["llama_91m"],
        "n_stories": 200_000,
        "fields": ("words", "features", "summary", "sentence") if setting != "shared" else base.fields,
        "max_story_chars": None,
        "n_ctx": 512,
        "vocab_size": 8192,
        "batch_size": 128,
        "pretrain_steps": 30_000,
        "pretrain_lr": 1e-3,
        "deletion_kinds": DELETION_KINDS if setting != "shared" else ("filter", "filter_random_labels"),
        "deletion_steps": 4000,
        "recovery_steps": 3000,
        "n_generations": 256,
        "max_new_tokens": 350,
        "eval_n": 512,
        "precision": "bf16",
        "data_workers": 4,
        "probe_steps": 2000,
        "device": "cuda",
    }
    return dataclasses.replace(base, **{**sizes, **overrides})


PRESETS = {"cpu": cpu_study_config, "gpu": gpu_study_config}


def preset_config(preset: str, setting: str = "synthetic", **overrides: Any) -> TinyStoriesStudyConfig:
    """The named preset (``cpu`` or ``gpu``) of one setting."""
    return lookup(PRESETS, preset, "preset")(setting, **overrides)
