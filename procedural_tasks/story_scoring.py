"""Generation scores (protocol §7.5): the fraction of sampled stories that have the feature by a local judge.

Stories are sampled at temperature 1 with a seeded ``torch.Generator`` (``interp.generation.sample_tokens``) for
prompts that ask for the feature (held-out stories without it, with the feature added to "Features:", as the
study's ``filter-adv-Twist`` prompts); each judge's count comes with a Wilson interval.
"""

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from interp.errors import ConfigError, DataError
from interp.generation import sample_tokens
from interp.runtime import numpy_rng, torch_generator
from interp.stats import wilson_ci
from procedural_tasks.story_data import StoryDataConfig, StorySplits
from procedural_tasks.story_deletion import add_feature_label, drop_feature
from procedural_tasks.story_features import LOOSE_CLASSIFIERS, SYNTHETIC_CLASSIFIERS, has_dialogue
from procedural_tasks.story_instruct import format_instruct_prompt
from procedural_tasks.story_records import StoryRecord, check_feature
from procedural_tasks.story_tokenizer import StoryTokenizer

Judge = Callable[[str], bool]


def generation_seed(seed: int) -> int:
    """The sampling seed of model seed ``seed``: every model of a seed (pretrained, deleted, recovering) is
    scored with the same draws, so differences between them are less noisy (common random numbers)."""
    return seed * 100_003 + 17


def feature_judges(setting: str, feature: str) -> dict[str, Judge]:
    """The local judges of ``feature`` by name: exact dialogue, or the planted rule ("strict") and its looser form.

    On real stories (``hub``) no local rule judges any other feature (the study used a fine-tuned GPT-3.5): none.
    """
    check_feature(feature)
    if feature == "dialogue" or setting == "shared":
        if feature != "dialogue":
            raise ConfigError(f"only dialogue can be judged on real stories, not {feature!r}")
        return {"exact": has_dialogue}
    if setting == "hub":
        return {}
    judges = {"strict": SYNTHETIC_CLASSIFIERS[feature]}
    if feature in LOOSE_CLASSIFIERS:
        judges["loose"] = LOOSE_CLASSIFIERS[feature]
    return judges


@dataclass(frozen=True)
class JudgedCount:
    """How many of ``n`` generations a judge said have the feature, with the Wilson interval of the rate."""

    k: int
    n: int
    rate: float
    ci_low: float
    ci_high: float

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def judged_count(k: int, n: int) -> JudgedCount:
    low, high = wilson_ci(k, n)
    return JudgedCount(k=k, n=n, rate=k / n, ci_low=low, ci_high=high)


@dataclass(frozen=True)
class GenerationScore:
    """Generations for prompts that ask for ``feature``, judged by each named judge."""

    feature: str
    judges: dict[str, JudgedCount]
    texts: tuple[str, ...]  # the generated stories, in prompt order
    mean_tokens: float  # mean generated length in tokens
    ended: float  # fraction of generations that emitted EOS before max_new_tokens

    def to_json(self, *, n_texts: int = 4) -> dict:
        return {
            "feature": self.feature,
            "judges": {name: c.to_json() for name, c in self.judges.items()},
            "mean_tokens": self.mean_tokens,
            "ended": self.ended,
            "examples": list(self.texts[:n_texts]),
        }


def generation_score(
    model: torch.nn.Module,
    tokenizer: StoryTokenizer,
    prompts: Sequence[str],
    *,
    feature: str,
    judges: Mapping[str, Judge],
    max_new_tokens: int,
    seed: int,
    temperature: float = 1.0,
    batch_size: int = 128,
) -> GenerationScore:
    """Sample one story per prompt (seeded ``torch.Generator``) and count those each judge says have ``feature``
    (with no judge the generations are kept and nothing is counted)."""
    if not prompts:
        raise DataError("generation_score needs at least one prompt")
    rows = tokenizer.encode_batch(list(prompts))
    n_ctx = getattr(getattr(model, "cfg", None), "n_ctx", None)
    if n_ctx is not None:
        max_new_tokens = min(max_new_tokens, n_ctx - max(len(r) for r in rows))
    sampled = sample_tokens(
        model,
        rows,
        max_new_tokens=max_new_tokens,
        generator=torch_generator(seed),
        temperature=temperature,
        eos_id=tokenizer.eos_id,
        pad_id=tokenizer.pad_id,
        batch_size=batch_size,
    )
    texts = tuple(tokenizer.decode(s).strip() for s in sampled)
    n = len(texts)
    counts = {name: judged_count(sum(bool(judge(t)) for t in texts), n) for name, judge in judges.items()}
    ended = sum(tokenizer.eos_id in s for s in sampled) / n
    return GenerationScore(feature, counts, texts, float(np.mean([len(s) for s in sampled])), ended)


def feature_prompts(
    records: Sequence[StoryRecord], config: StoryDataConfig, n: int, *, salt: int = 7
) -> list[str]:
    """``n`` Instruct prompts (up to "Story:") that ask for the feature, from held-out stories without it.

    As the study's ``filter-adv-Twist`` test prompts: the feature is added to "Features:" of a story that lacks it.
    Records are cycled (with fresh line orders) when there are fewer than ``n``.
    """
    source = add_feature_label(drop_feature(records, config.feature), config.feature)
    if not source:
        raise DataError(f"no held-out story lacks {config.feature!r}; cannot build prompts that ask for it")
    rng = numpy_rng(config.seed, salt)
    prompts = []
    for i in range(n):
        prompt = format_instruct_prompt(source[i % len(source)], rng=rng, fields=config.fields)
        prompts.append(prompt.rstrip())
    return prompts


def score_model(
    model: torch.nn.Module,
    tokenizer: StoryTokenizer,
    data: StoryDataConfig,
    splits: StorySplits,
    *,
    n_generations: int,
    max_new_tokens: int,
    seed: int,
    temperature: float = 1.0,
) -> GenerationScore:
    """The generation score of a model on prompts from the test split that ask for the feature."""
    prompts = feature_prompts(splits.test, data, n_generations)
    return generation_score(
        model,
        tokenizer,
        prompts,
        feature=data.feature,
        judges=feature_judges(data.setting, data.feature),
        max_new_tokens=max_new_tokens,
        seed=seed,
        temperature=temperature,
    )
