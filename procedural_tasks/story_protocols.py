"""The study's TinyStories protocols as runnable stages (protocol §7): pretraining, deletion, recovery, scoring.

Context: a model pretrained on Instruct stories with a feature (e.g. twist) is fine-tuned so that it stops writing
the feature when asked (deletion: filtering, F+RR, F+MM), then fine-tuned again on stories that have it
(recovery, the study's reverse fine-tuning). If deletion only wrapped the capability, recovery is much faster than
for a control pretrained on the corpus without the feature and fine-tuned with the identical recipe.

Data. Two settings share every function here:

- ``synthetic``: `story_generator` stories with planted features, judged exactly by their rules (offline default);
- ``shared``: the 2,316-story sample at ``../shared/data/tinystories``, where only dialogue is labelled (exactly, by
  `story_features.has_dialogue`). Its stories are cut at a sentence boundary to ``max_story_chars`` and labelled
  *after* the cut, so a label always describes the text the model sees.

A fixed data seed makes one corpus per setting; model seeds vary initialisation and batch order. The corpus is
split into pretraining, fine-tuning (deletion and recovery sets are built from it) and test parts (loss sets,
generation prompts, probe data). Texts are Instruct-formatted once per record (seeded line order), encoded as
``<bos> text <eos>`` and texts longer than ``n_ctx`` tokens are dropped. Unlike the study (no EOS) we append EOS so a
sampled story ends by itself and the judge sees whole stories.

Metrics:
- ``story_loss``: mean next-token cross-entropy over the story tokens (after "Story:") and the EOS, given the
  prompt, on held-out stories with the feature (the study's "loss on Twist stories", restricted to the story).
- ``generation_score``: the fraction of sampled stories (temperature 1, seeded ``torch.Generator``) that have the
  feature by a local judge, for prompts that ask for it (held-out stories without it, with the feature added to
  "Features:", as the study's ``filter-adv-Twist`` prompts), with a Wilson interval.

Sampling uses a key/value-cached decoder read from the model's weights for LLaMA-style bridges (``CachedDecoder``;
the unit tests check its logits against the bridge's forward) and falls back to full re-computation with the
model's own forward for anything else.
"""

import dataclasses
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

from interp import hooks
from interp.atomic_files import atomic_write_text
from interp.batches import Batch
from interp.checkpoints import load_checkpoint, save_checkpoint
from interp.config import from_dict, to_dict
from interp.errors import CheckpointError, ConfigError, DataError, OfflineError
from interp.models import ModelConfig, build_model
from interp.probing import ProbeConfig, ProbeLayersResult, probe_layers
from interp.runtime import numpy_rng, torch_generator
from interp.stats import wilson_ci
from interp.training import TrainConfig, TrainResult, train
from procedural_tasks.story_features import (
    LOOSE_CLASSIFIERS,
    SYNTHETIC_CLASSIFIERS,
    has_dialogue,
    label_exact_features,
    sentences,
)
from procedural_tasks.story_generator import StoryGeneratorConfig, generate_stories
from procedural_tasks.story_tokenizer import StoryTokenizer, StoryTokenizerConfig, train_tokenizer
from procedural_tasks.tinystories import (
    FEATURES,
    INSTRUCT_FIELDS,
    DeletionConfig,
    StoryRecord,
    add_feature_label,
    build_deletion_set,
    check_feature,
    drop_feature,
    format_instruct,
    format_instruct_prompt,
    hub_offline,
    keep_feature,
    load_shared_sample,
)

TASK_NAME = "tinystories"
TOKENIZER_FILE = "tokenizer.json"
STORY_MARKER = "Story:"
SETTINGS = ("synthetic", "shared")
PROBE_POSITION = "mean_last_10"

Setting = Literal["synthetic", "shared"]


# ----------------------------------------------------------------------------------------------------------------
# Data


@dataclass(frozen=True, kw_only=True)
class StoryDataConfig:
    """Which corpus, how it is formatted, tokenized and split. One config gives one corpus (seeded)."""

    setting: Setting = (
        "synthetic"  # synthetic (planted features) | shared (the 2,316-story sample; dialogue only)
    )
    feature: str = "twist"  # the feature to delete and recover (shared: only dialogue is labelled)
    n_stories: int = 6000  # synthetic: stories generated (shared: all of the sample is used)
    fields: tuple[str, ...] = ("words", "features")  # Instruct lines (the study uses all four)
    max_story_chars: int | None = 600  # shared: cut stories at a sentence boundary to this length; None: keep
    n_ctx: int = 160  # tokens per text at most (<bos> text <eos>); longer texts are dropped
    vocab_size: int = 1024  # tokenizer vocabulary bound
    split: tuple[float, float, float] = (0.7, 0.2, 0.1)  # pretrain / finetune / test fractions of the corpus
    seed: int = 0  # corpus, split and formatting

    def __post_init__(self) -> None:
        if self.setting not in SETTINGS:
            raise ConfigError(f"setting {self.setting!r} is unknown; use synthetic or shared")
        check_feature(self.feature)
        if self.setting == "shared" and self.feature != "dialogue":
            raise ConfigError(
                f"feature {self.feature!r} is not labelled in the shared sample (only dialogue is); "
                "use feature=dialogue or setting=synthetic"
            )
        if self.n_stories < 20:
            raise ConfigError(f"n_stories {self.n_stories} is too small to split; e.g. n_stories=6000")
        bad = [f for f in self.fields if f not in INSTRUCT_FIELDS]
        if bad or "features" not in self.fields:
            raise ConfigError(
                f"fields {self.fields} must include 'features' and be a subset of {INSTRUCT_FIELDS}"
            )
        if self.max_story_chars is not None and self.max_story_chars < 50:
            raise ConfigError(f"max_story_chars {self.max_story_chars} is too short; e.g. 600 or None")
        if self.n_ctx < 16:
            raise ConfigError(f"n_ctx {self.n_ctx} is too short for a story; e.g. n_ctx=160")
        StoryTokenizerConfig(vocab_size=self.vocab_size)
        if len(self.split) != 3 or any(f <= 0 for f in self.split) or not math.isclose(sum(self.split), 1.0):
            raise ConfigError(
                f"split {self.split} must be three positive fractions summing to 1, e.g. 0.7,0.2,0.1"
            )

    @property
    def labelled_features(self) -> tuple[str, ...]:
        """Features labelled on every record of this setting (the probe targets)."""
        return FEATURES if self.setting == "synthetic" else ("dialogue",)


@dataclass(frozen=True)
class StorySplits:
    """The corpus of one StoryDataConfig, split three ways (records keep their true labels)."""

    pretrain: list[StoryRecord]
    finetune: list[StoryRecord]
    test: list[StoryRecord]
    n_dropped: int  # records dropped because their text did not fit n_ctx (0 before tokenization)

    def to_json(self) -> dict:
        def count(records: list[StoryRecord]) -> dict:
            known = records[0].known_features if records else ()
            return {"n": len(records), **{f: sum(f in r.features for r in records) for f in known}}

        return {
            "pretrain": count(self.pretrain),
            "finetune": count(self.finetune),
            "test": count(self.test),
            "n_dropped": self.n_dropped,
        }


def cut_story(text: str, max_chars: int) -> str:
    """The longest prefix of whole sentences within ``max_chars`` (the first sentence if it alone is longer)."""
    if len(text) <= max_chars:
        return text
    out = ""
    for sentence in sentences(text):
        candidate = f"{out} {sentence}" if out else sentence
        if len(candidate) > max_chars:
            break
        out = candidate
    return out or sentences(text)[0]


def load_story_corpus(config: StoryDataConfig) -> list[StoryRecord]:
    """All records of the setting, labelled; the shared sample raises DataError when it is absent."""
    if config.setting == "synthetic":
        return generate_stories(config.n_stories, StoryGeneratorConfig(seed=config.seed))
    records = load_shared_sample()
    if config.max_story_chars is not None:
        records = [dataclasses.replace(r, story=cut_story(r.story, config.max_story_chars)) for r in records]
    return label_exact_features(records)


def split_records(records: Sequence[StoryRecord], config: StoryDataConfig) -> StorySplits:
    """A seeded three-way split of ``records`` by ``config.split``."""
    order = numpy_rng(config.seed, 11).permutation(len(records))
    n_pt = int(round(config.split[0] * len(records)))
    n_ft = int(round(config.split[1] * len(records)))
    pick = [records[i] for i in order]
    return StorySplits(pick[:n_pt], pick[n_pt : n_pt + n_ft], pick[n_pt + n_ft :], 0)


def instruct_texts(records: Sequence[StoryRecord], config: StoryDataConfig, *, salt: int) -> list[str]:
    """Each record's Instruct text, formatted once with a Generator seeded by (data seed, salt)."""
    rng = numpy_rng(config.seed, salt)
    return [format_instruct(r, rng=rng, fields=config.fields) for r in records]


def build_story_tokenizer(config: StoryDataConfig) -> StoryTokenizer:
    """A BPE tokenizer trained on the Instruct texts of the pretraining split (the feature included)."""
    splits = split_records(load_story_corpus(config), config)
    texts = instruct_texts(splits.pretrain, config, salt=1)
    return train_tokenizer(texts, config=StoryTokenizerConfig(vocab_size=config.vocab_size))


def build_story_splits(config: StoryDataConfig, tokenizer: StoryTokenizer) -> StorySplits:
    """The split corpus, keeping only records whose Instruct text fits ``n_ctx`` tokens."""
    splits = split_records(load_story_corpus(config), config)
    parts, dropped = [], 0
    for salt, records in enumerate((splits.pretrain, splits.finetune, splits.test), start=1):
        rows = tokenizer.encode_batch(instruct_texts(records, config, salt=salt), eos=True)
        kept = [r for r, row in zip(records, rows, strict=True) if len(row) <= config.n_ctx]
        dropped += len(records) - len(kept)
        parts.append(kept)
    if not parts[2] or not parts[1]:
        raise DataError(f"no test or fine-tuning story fits n_ctx {config.n_ctx}; raise n_ctx")
    return StorySplits(parts[0], parts[1], parts[2], dropped)


@dataclass(frozen=True)
class EncodedStories:
    """Token rows (<bos> text <eos>) and where each story starts (the first token after "Story:")."""

    rows: list[list[int]]
    story_start: list[int]

    def __len__(self) -> int:
        return len(self.rows)


def encode_stories(
    tokenizer: StoryTokenizer, records: Sequence[StoryRecord], config: StoryDataConfig, *, salt: int
) -> EncodedStories:
    """Format and encode records; DataError if one does not fit ``n_ctx``."""
    texts = instruct_texts(records, config, salt=salt)
    rows = tokenizer.encode_batch(texts, eos=True)
    prompts = tokenizer.encode_batch([t[: t.index(STORY_MARKER) + len(STORY_MARKER)] for t in texts])
    for row in rows:
        if len(row) > config.n_ctx:
            raise DataError(f"a story has {len(row)} tokens, more than n_ctx {config.n_ctx}; raise n_ctx")
    return EncodedStories(rows, [len(p) for p in prompts])


def story_batch(
    rows: Sequence[Sequence[int]], *, story_start: Sequence[int] | None = None, pad_id: int = 0
) -> Batch:
    """Right-padded token rows with a next-token loss mask.

    ``loss_mask[i, t]`` is True when token ``t + 1`` of row ``i`` is a real token (and, with ``story_start``, part
    of the story or its EOS): the engine's ``loss="sequence"`` then trains on exactly those predictions.
    """
    if not rows or any(len(r) < 2 for r in rows):
        raise DataError("story_batch needs rows of at least two tokens (<bos> and one more)")
    width = max(len(r) for r in rows)
    tokens = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.bool)
    for i, row in enumerate(rows):
        tokens[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        first = 0 if story_start is None else max(0, story_start[i] - 1)
        mask[i, first : len(row) - 1] = True
    lengths = torch.tensor([len(r) for r in rows])
    return Batch(
        tokens=tokens,
        answer_pos=lengths - 2,
        answers=tokens[torch.arange(len(rows)), lengths - 1],
        loss_mask=mask,
    )


def story_batch_fn(stories: EncodedStories, batch_size: int, seed: int) -> Callable[[int], Batch]:
    """A pure function of the step: ``batch_size`` stories drawn without replacement by ``numpy_rng(seed, step)``."""
    if len(stories) == 0:
        raise DataError("the training set is empty; check the deletion protocol and the feature")

    def batch_fn(step: int) -> Batch:
        rng = numpy_rng(seed, step)
        idx = rng.choice(len(stories), size=batch_size, replace=batch_size > len(stories))
        return story_batch([stories.rows[i] for i in idx])

    return batch_fn


@torch.no_grad()
def story_loss(model: torch.nn.Module, stories: EncodedStories, *, batch_size: int = 64) -> float:
    """Mean cross-entropy per story token (story and EOS, given the prompt) over ``stories``."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    order = sorted(range(len(stories)), key=lambda i: len(stories.rows[i]))
    try:
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            batch = story_batch(
                [stories.rows[i] for i in idx], story_start=[stories.story_start[i] for i in idx]
            )
            tokens, mask = batch.tokens.to(device), batch.loss_mask.to(device)[:, :-1]
            logits = model(tokens)[:, :-1]
            total += float(F.cross_entropy(logits[mask].float(), tokens[:, 1:][mask], reduction="sum"))
            count += int(mask.sum())
    finally:
        model.train(was_training)
    if count == 0:
        raise DataError("story_loss got no story tokens")
    return total / count


# ----------------------------------------------------------------------------------------------------------------
# Sampling


class CachedDecoder:
    """A key/value-cached forward pass of a LLaMA-style TransformerBridge, read from its weights (sampling only).

    Rows may be left-padded: ``valid`` marks real tokens, positions count real tokens only, and every query may
    attend to itself so padded rows stay finite. ``supports`` says which bridges it reproduces.
    """

    def __init__(self, model: torch.nn.Module) -> None:
        if not self.supports(model):
            raise ConfigError(
                "CachedDecoder needs a LLaMA-style bridge (RMSNorm, rotary, SwiGLU); use sample_tokens"
            )
        cfg = model.cfg
        self.w = {k: v.detach() for k, v in model.state_dict().items()}
        self.n_layers, self.n_heads, self.d_head, self.eps = cfg.n_layers, cfg.n_heads, cfg.d_head, cfg.eps
        device = self.w["embed.weight"].device
        inv_freq = 1.0 / (float(cfg.rotary_base) ** (torch.arange(0, cfg.d_head, 2).float() / cfg.d_head))
        freqs = torch.outer(torch.arange(cfg.n_ctx).float(), inv_freq)
        self.cos = freqs.cos().repeat_interleave(2, dim=-1).to(device)
        self.sin = freqs.sin().repeat_interleave(2, dim=-1).to(device)
        self.n_ctx = cfg.n_ctx
        self.cache: list[tuple[Tensor, Tensor]] = []
        self.valid: Tensor | None = None
        self.next_pos: Tensor | None = None

    @staticmethod
    def supports(model: torch.nn.Module) -> bool:
        cfg = getattr(model, "cfg", None)
        if cfg is None or not hasattr(model, "state_dict"):
            return False
        names = set(model.state_dict())
        return (
            str(getattr(cfg, "normalization_type", "")).upper() == "RMS"
            and getattr(cfg, "positional_embedding_type", None) == "rotary"
            and bool(getattr(cfg, "gated_mlp", False))
            and getattr(cfg, "act_fn", None) in ("silu", "swish")
            and getattr(cfg, "rotary_dim", None) in (None, cfg.d_head)
            and not isinstance(getattr(cfg, "rope_scaling", None), dict)
            and getattr(cfg, "n_key_value_heads", None) in (None, cfg.n_heads)
            and float(getattr(cfg, "attn_scores_soft_cap", -1.0)) <= 0
            and float(getattr(cfg, "output_logits_soft_cap", -1.0)) <= 0
            and not (getattr(cfg, "use_attn_scale", False) and float(getattr(cfg, "attn_scale", -1.0)) > 0)
            and {"embed.weight", "ln_final.weight", "unembed.weight", "blocks.0.mlp.gate.weight"} <= names
        )

    def _rms(self, x: Tensor, weight: Tensor) -> Tensor:
        return weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))

    def _rope(self, x: Tensor, pos: Tensor) -> Tensor:
        cos, sin = self.cos[pos].unsqueeze(1), self.sin[pos].unsqueeze(1)  # (batch, 1, pos, d_head)
        rotated = torch.stack((-x[..., 1::2], x[..., 0::2]), dim=-1).flatten(-2)
        return x * cos + rotated * sin

    def _linear(self, x: Tensor, name: str) -> Tensor:
        return F.linear(x, self.w[f"{name}.weight"], self.w.get(f"{name}.bias"))

    def forward(self, tokens: Int[Tensor, "batch pos"], valid: Tensor) -> Float[Tensor, "batch pos d_vocab"]:
        """Logits of ``tokens`` appended to the cache (the first call fills it with the prompt)."""
        batch, n_new = tokens.shape
        if self.valid is None:
            self.valid = valid
            pos = (valid.long().cumsum(1) - 1).clamp_min(0)
        else:
            self.valid = torch.cat([self.valid, valid], dim=1)
            pos = self.next_pos.unsqueeze(1) + torch.arange(n_new, device=tokens.device)
        self.next_pos = pos[:, -1] + 1
        if int(self.next_pos.max()) > self.n_ctx:
            raise DataError(f"sampling ran past n_ctx {self.n_ctx}; lower max_new_tokens")
        total = self.valid.shape[1]
        query_index = torch.arange(total - n_new, total, device=tokens.device)
        key_index = torch.arange(total, device=tokens.device)
        allowed = (key_index[None, :] <= query_index[:, None])[None] & self.valid[:, None, :]
        allowed = allowed | (key_index[None, :] == query_index[:, None])[None]
        mask = allowed[:, None]  # (batch, 1, query_pos, key_pos)
        x = self.w["embed.weight"][tokens]
        for layer in range(self.n_layers):
            p = f"blocks.{layer}"
            h = self._rms(x, self.w[f"{p}.ln1.weight"])
            q, k, v = (
                self._linear(h, f"{p}.attn.{n}").view(batch, n_new, self.n_heads, self.d_head).transpose(1, 2)
                for n in ("q", "k", "v")
            )
            q, k = self._rope(q, pos), self._rope(k, pos)
            if len(self.cache) > layer:
                k = torch.cat([self.cache[layer][0], k], dim=2)
                v = torch.cat([self.cache[layer][1], v], dim=2)
                self.cache[layer] = (k, v)
            else:
                self.cache.append((k, v))
            scores = (q @ k.transpose(-2, -1)) / math.sqrt(self.d_head)
            pattern = scores.masked_fill(~mask, float("-inf")).softmax(-1)
            z = (pattern @ v).transpose(1, 2).reshape(batch, n_new, -1)
            x = x + self._linear(z, f"{p}.attn.o")
            h = self._rms(x, self.w[f"{p}.ln2.weight"])
            gated = F.silu(self._linear(h, f"{p}.mlp.gate")) * self._linear(h, f"{p}.mlp.in")
            x = x + self._linear(gated, f"{p}.mlp.out")
        return self._linear(self._rms(x, self.w["ln_final.weight"]), "unembed")


def _left_pad(prompts: Sequence[Sequence[int]], pad_id: int) -> tuple[Tensor, Tensor]:
    width = max(len(p) for p in prompts)
    tokens = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    valid = torch.zeros((len(prompts), width), dtype=torch.bool)
    for i, p in enumerate(prompts):
        tokens[i, width - len(p) :] = torch.tensor(list(p), dtype=torch.long)
        valid[i, width - len(p) :] = True
    return tokens, valid


def _sample_next(logits: Tensor, temperature: float, generator: torch.Generator) -> Tensor:
    if temperature == 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    return torch.multinomial(probs.cpu(), 1, generator=generator).squeeze(1).to(logits.device)


@torch.no_grad()
def sample_tokens(
    model: torch.nn.Module,
    prompts: Sequence[Sequence[int]],
    *,
    max_new_tokens: int,
    generator: torch.Generator,
    temperature: float = 1.0,
    eos_id: int | None = None,
    pad_id: int = 0,
    batch_size: int = 128,
) -> list[list[int]]:
    """Sampled continuations of token ``prompts`` (without the prompt), each cut after its first EOS.

    Draws come only from ``generator`` (a CPU ``torch.Generator``): the same generator state, prompts and batch
    size give the same tokens. LLaMA-style bridges use ``CachedDecoder``; other models are re-run on the whole
    sequence at each step, in groups of equal prompt length (no padding).
    """
    if max_new_tokens < 1:
        raise ConfigError(f"max_new_tokens {max_new_tokens} must be >= 1")
    if temperature < 0:
        raise ConfigError(f"temperature {temperature} must be >= 0 (0 = greedy)")
    if any(len(p) == 0 for p in prompts):
        raise DataError("every prompt needs at least one token (e.g. <bos>)")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out: list[list[int]] = [[] for _ in prompts]
    cached = CachedDecoder.supports(model)
    if cached:
        groups = [
            list(range(s, min(s + batch_size, len(prompts)))) for s in range(0, len(prompts), batch_size)
        ]
    else:
        by_len: dict[int, list[int]] = {}
        for i, p in enumerate(prompts):
            by_len.setdefault(len(p), []).append(i)
        groups = [
            g[s : s + batch_size] for _, g in sorted(by_len.items()) for s in range(0, len(g), batch_size)
        ]
    try:
        for idx in groups:
            tokens, valid = _left_pad([prompts[i] for i in idx], pad_id)
            tokens, valid = tokens.to(device), valid.to(device)
            finished = torch.zeros(len(idx), dtype=torch.bool, device=device)
            decoder = CachedDecoder(model) if cached else None
            logits = decoder.forward(tokens, valid) if decoder else model(tokens)
            new = []
            for _ in range(max_new_tokens):
                nxt = _sample_next(logits[:, -1], temperature, generator)
                nxt = torch.where(finished, torch.full_like(nxt, pad_id), nxt)
                new.append(nxt)
                if eos_id is not None:
                    finished |= nxt == eos_id
                if bool(finished.all()) or len(new) == max_new_tokens:
                    break
                step = nxt.unsqueeze(1)
                if decoder:
                    logits = decoder.forward(step, torch.ones_like(step, dtype=torch.bool))
                else:
                    tokens = torch.cat([tokens, step], dim=1)
                    logits = model(tokens)
            sampled = torch.stack(new, dim=1).cpu().tolist()
            for row, i in zip(sampled, idx, strict=True):
                if eos_id is not None and eos_id in row:
                    row = row[: row.index(eos_id) + 1]
                out[i] = row
    finally:
        model.train(was_training)
    return out


Judge = Callable[[str], bool]


def feature_judges(setting: str, feature: str) -> dict[str, Judge]:
    """The local judges of ``feature`` by name: exact dialogue, or the planted rule ("strict") and its looser form."""
    check_feature(feature)
    if feature == "dialogue" or setting == "shared":
        if feature != "dialogue":
            raise ConfigError(f"only dialogue can be judged on real stories, not {feature!r}")
        return {"exact": has_dialogue}
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
    """Sample one story per prompt (seeded ``torch.Generator``) and count those each judge says have ``feature``."""
    if not prompts:
        raise DataError("generation_score needs at least one prompt")
    if not judges:
        raise ConfigError("generation_score needs at least one judge")
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


# ----------------------------------------------------------------------------------------------------------------
# Probe data (protocol §5.2)


def probe_batch(
    tokenizer: StoryTokenizer,
    records: Sequence[StoryRecord],
    features: Sequence[str],
    *,
    n_ctx: int,
    seed: int = 0,
) -> Batch:
    """Stories without instructions, as the study's probe input: ``<bos> story``, left-filled to one length.

    Rows are left-filled with the tail of other stories' tokens (the study pads with "story text from other batch
    items"), so all rows end at the last position and ``mean_last_10`` averages each story's own last 10 tokens.
    Stories longer than ``n_ctx`` keep their first ``n_ctx`` tokens. ``labels["features"]`` is [example,
    n_features] in {0, 1}, in the order of ``features``.
    """
    if not records:
        raise DataError("probe_batch needs at least one story")
    rows = [r[:n_ctx] for r in tokenizer.encode_batch([r.story for r in records])]
    width = max(len(r) for r in rows)
    if width < 10:
        raise DataError(f"probe stories have at most {width} tokens; mean_last_10 needs 10")
    filler = [t for r in rows for t in r[1:]]
    order = numpy_rng(seed, 5).integers(0, max(1, len(filler)), size=len(rows))
    tokens = torch.empty((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        need = width - len(row)
        start = int(order[i])
        fill = (filler[start:] + filler[:start])[:need] if need else []
        fill = fill + [tokenizer.pad_id] * (need - len(fill))
        tokens[i] = torch.tensor(fill + row, dtype=torch.long)
    labels = torch.tensor([[int(f in r.features) for f in features] for r in records], dtype=torch.long)
    return Batch(
        tokens=tokens,
        answer_pos=torch.full((len(rows),), width - 1, dtype=torch.long),
        answers=tokens[:, -1].clone(),
        labels={"features": labels},
    )


def study_probe_config(*, steps: int = 2000, seed: int = 0) -> ProbeConfig:
    """The study's TinyStories probe: bias-free linear layer, multi-label BCE, AdamW LR 1e-3 constant, wd 0.1."""
    return ProbeConfig(
        steps=steps,
        lr=1e-3,
        weight_decay=0.1,
        decay_at=(),
        batch_size=128,
        multilabel=True,
        bias=False,
        seed=seed,
    )


def feature_probes(
    model: torch.nn.Module, batch: Batch, *, config: ProbeConfig | None = None
) -> ProbeLayersResult:
    """A probe per residual-stream site (embedding output B0, then each block) on the mean of the last 10 positions."""
    return probe_layers(
        model,
        batch,
        hook_names=hooks.residual_stream(model.cfg.n_layers),
        label="features",
        position=PROBE_POSITION,
        config=config or study_probe_config(),
        batch_size=64,
    )


# ----------------------------------------------------------------------------------------------------------------
# Checkpoints with their tokenizer


def write_json(path: str | Path, payload: Any) -> None:
    atomic_write_text(Path(path), json.dumps(payload, indent=2, sort_keys=True, default=str))


def save_story_checkpoint(
    out_dir: str | Path,
    model: torch.nn.Module,
    model_config: ModelConfig,
    tokenizer: StoryTokenizer,
    metadata: Mapping[str, Any],
) -> Path:
    """The model checkpoint plus ``tokenizer.json`` beside it; metadata names the tokenizer file."""
    out = Path(out_dir)
    tokenizer.save(out / TOKENIZER_FILE)
    return save_checkpoint(
        out, model, model_config, {**metadata, "task": TASK_NAME, "tokenizer": TOKENIZER_FILE}
    )


@dataclass(frozen=True)
class StoryCheckpoint:
    """A loaded story model with its tokenizer, data config and metadata."""

    model: torch.nn.Module
    model_config: ModelConfig
    tokenizer: StoryTokenizer
    data: StoryDataConfig
    metadata: dict[str, Any]


def load_story_checkpoint(ckpt_dir: str | Path, *, device: str = "cpu") -> StoryCheckpoint:
    """A story checkpoint's model, tokenizer and data config; CheckpointError if it is not one."""
    model, info = load_checkpoint(ckpt_dir, device=device)
    meta = info.metadata
    if meta.get("task") != TASK_NAME:
        raise CheckpointError(f"{ckpt_dir} is not a TinyStories checkpoint (task {meta.get('task')!r})")
    tokenizer = StoryTokenizer.load(Path(ckpt_dir) / meta.get("tokenizer", TOKENIZER_FILE))
    if tokenizer.vocab_size > info.model_config.d_vocab:
        raise CheckpointError(
            f"{ckpt_dir}: tokenizer has {tokenizer.vocab_size} tokens but the model d_vocab is "
            f"{info.model_config.d_vocab}; the tokenizer.json does not belong to this model"
        )
    data = from_dict(StoryDataConfig, meta["data"])
    return StoryCheckpoint(model, info.model_config, tokenizer, data, meta)


# ----------------------------------------------------------------------------------------------------------------
# Stages


@dataclass(frozen=True, kw_only=True)
class StoryPretrainConfig:
    """Pretraining on Instruct stories; ``with_feature=False`` is the never-had-it control (Not-in-PT)."""

    data: StoryDataConfig
    model: ModelConfig  # architecture; d_vocab and n_ctx are filled from the tokenizer and data
    train: TrainConfig  # loss is forced to "sequence"
    with_feature: bool = True  # False: the feature's stories are filtered out of the pretraining split
    eval_n: int = 256  # held-out feature stories for the loss


@dataclass(frozen=True, kw_only=True)
class StoryDeletionConfig:
    """Deletion fine-tuning (protocol §7.3) on the fine-tuning split; constant LR in the study."""

    deletion: (
        DeletionConfig  # kind: filter (F), filter_random_labels (F+RR), filter_mix_match (F+MM), refusal
    )
    train: TrainConfig
    lr_level: str | None = None  # "M" or "S": the study's eta_M / eta_S, for the record
    eval_n: int = 256

    def __post_init__(self) -> None:
        if self.deletion.kind == "recovery":
            raise ConfigError("deletion kind 'recovery' keeps the feature; use run_story_recovery instead")
        if self.lr_level is not None and self.lr_level not in ("L", "M", "S", "VS"):
            raise ConfigError(f"lr_level {self.lr_level!r} is unknown; use M or S")


@dataclass(frozen=True, kw_only=True)
class StoryRecoveryConfig:
    """Recovery (the study's reverse fine-tuning) on fine-tuning stories that have the feature."""

    train: TrainConfig  # give eval_steps (log-spaced) for the loss curve
    score_steps: tuple[int, ...] = (0,)  # steps at which the generation score is measured (Table 1 columns)
    n_generations: int = 128  # sampled stories per score
    max_new_tokens: int = 128
    temperature: float = 1.0
    eval_n: int = 256

    def __post_init__(self) -> None:
        if any(s < 0 or s > self.train.steps for s in self.score_steps):
            raise ConfigError(f"score_steps {self.score_steps} must lie in [0, steps={self.train.steps}]")
        if self.n_generations < 1:
            raise ConfigError(f"n_generations {self.n_generations} must be >= 1, e.g. 128")
        if self.max_new_tokens < 1 or self.temperature < 0:
            raise ConfigError("max_new_tokens must be >= 1 and temperature >= 0")


def _story_train_config(train_config: TrainConfig) -> TrainConfig:
    return dataclasses.replace(train_config, loss="sequence")


def _feature_eval(
    data: StoryDataConfig, tokenizer: StoryTokenizer, splits: StorySplits, n: int
) -> EncodedStories:
    records = keep_feature(splits.test, data.feature)[:n]
    if not records:
        raise DataError(f"the test split has no story with {data.feature!r}")
    return encode_stories(tokenizer, records, data, salt=21)


def _train_with_loss(
    model: torch.nn.Module,
    stories: EncodedStories,
    train_config: TrainConfig,
    eval_stories: EncodedStories,
    out: Path,
    *,
    extra: Callable[[int], dict] | None = None,
) -> tuple[TrainResult, list[dict]]:
    """Train on ``stories``; at each evaluation record the feature-story loss (and ``extra(step)``)."""
    curve: list[dict] = []

    def on_eval(row: Mapping[str, Any]) -> None:
        point = {"step": row["step"], "feature_loss": story_loss(model, eval_stories)}
        if extra is not None:
            point.update(extra(row["step"]))
        curve.append(point)

    config = _story_train_config(train_config)
    result = train(
        model,
        story_batch_fn(stories, config.batch_size, config.seed),
        config,
        out_dir=out,
        progress=False,
        on_eval=on_eval,
    )
    return result, curve


def run_story_pretrain(
    config: StoryPretrainConfig, out_dir: str | Path, *, tokenizer: StoryTokenizer | None = None
) -> dict:
    """Pretrain a story model (with or without the feature) from scratch; save it with its tokenizer."""
    out = Path(out_dir)
    tokenizer = tokenizer or build_story_tokenizer(config.data)
    splits = build_story_splits(config.data, tokenizer)
    records = splits.pretrain if config.with_feature else drop_feature(splits.pretrain, config.data.feature)
    stories = encode_stories(tokenizer, records, config.data, salt=1)
    model_config = config.model.for_task(d_vocab=tokenizer.vocab_size, n_ctx=config.data.n_ctx)
    model = build_model(model_config, device=config.train.device)
    eval_stories = _feature_eval(config.data, tokenizer, splits, config.eval_n)
    result, curve = _train_with_loss(model, stories, config.train, eval_stories, out)
    summary = {
        "stage": "pretrain",
        "with_feature": config.with_feature,
        "n_train": len(stories),
        "splits": splits.to_json(),
        "loss_curve": curve,
        "final_train_loss": result.history[-1]["train_loss"],
        "wall_seconds": result.wall_seconds,
    }
    meta = {"data": to_dict(config.data), "stage": "pretrain", "stage_config": to_dict(config), **summary}
    save_story_checkpoint(out, model, model_config, tokenizer, meta)
    write_json(out / "stage.json", summary)
    return summary


def run_story_deletion(config: StoryDeletionConfig, base_dir: str | Path, out_dir: str | Path) -> dict:
    """Fine-tune ``base_dir``'s model on a deletion set of its own fine-tuning split; save it."""
    base = load_story_checkpoint(base_dir, device=config.train.device)
    data = base.data
    if config.deletion.feature != data.feature:
        raise ConfigError(
            f"deletion feature {config.deletion.feature!r} differs from the data's {data.feature!r}"
        )
    splits = build_story_splits(data, base.tokenizer)
    records = build_deletion_set(splits.finetune, config.deletion)
    stories = encode_stories(base.tokenizer, records, data, salt=2)
    eval_stories = _feature_eval(data, base.tokenizer, splits, config.eval_n)
    result, curve = _train_with_loss(base.model, stories, config.train, eval_stories, Path(out_dir))
    summary = {
        "stage": "deletion",
        "dataset": config.deletion.name,
        "lr": config.train.lr,
        "lr_level": config.lr_level,
        "n_train": len(stories),
        "loss_curve": curve,
        "wall_seconds": result.wall_seconds,
    }
    meta = {
        "data": to_dict(data),
        "stage": "deletion",
        "stage_config": to_dict(config),
        "base": str(base_dir),
    }
    save_story_checkpoint(out_dir, base.model, base.model_config, base.tokenizer, {**meta, **summary})
    write_json(Path(out_dir) / "stage.json", summary)
    return summary


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


def run_story_recovery(config: StoryRecoveryConfig, start_dir: str | Path, out_dir: str | Path) -> dict:
    """Train ``start_dir``'s model on fine-tuning stories with the feature; record loss and generation scores.

    Writes ``recovery.json`` (loss curve, scores at ``score_steps``, the generations) and the final checkpoint.
    The generation seed depends only on the train seed, so every start and step is scored with the same draws
    (common random numbers make differences between models less noisy).
    """
    start = load_story_checkpoint(start_dir, device=config.train.device)
    data, tokenizer = start.data, start.tokenizer
    splits = build_story_splits(data, tokenizer)
    stories = encode_stories(tokenizer, keep_feature(splits.finetune, data.feature), data, salt=2)
    eval_stories = _feature_eval(data, tokenizer, splits, config.eval_n)
    eval_steps = tuple(sorted(set(config.train.eval_steps or ()) | set(config.score_steps)))
    train_config = dataclasses.replace(config.train, eval_steps=eval_steps)
    generations: dict[str, list[str]] = {}

    def extra(step: int) -> dict:
        if step not in config.score_steps:
            return {}
        score = score_model(
            start.model,
            tokenizer,
            data,
            splits,
            n_generations=config.n_generations,
            max_new_tokens=config.max_new_tokens,
            seed=config.train.seed * 100_003 + 17,
            temperature=config.temperature,
        )
        generations[str(step)] = list(score.texts)
        return {"score": score.to_json()}

    result, curve = _train_with_loss(
        start.model, stories, train_config, eval_stories, Path(out_dir), extra=extra
    )
    summary = {
        "stage": "recovery",
        "start": str(start_dir),
        "start_stage": start.metadata.get("stage"),
        "lr": config.train.lr,
        "n_train": len(stories),
        "loss_curve": [{k: v for k, v in p.items() if k != "score"} for p in curve],
        "scores": {str(p["step"]): p["score"] for p in curve if "score" in p},
        "wall_seconds": result.wall_seconds,
    }
    write_json(Path(out_dir) / "recovery.json", summary)
    write_json(Path(out_dir) / "generations.json", generations)
    meta = {
        "data": to_dict(data),
        "stage": "recovery",
        "stage_config": to_dict(config),
        "start": str(start_dir),
    }
    save_story_checkpoint(out_dir, start.model, start.model_config, tokenizer, meta)
    return summary


# ----------------------------------------------------------------------------------------------------------------
# Hub models


HUB_STORY_MODELS = ("roneneldan/TinyStories-1M", "roneneldan/TinyStories-33M")


def load_hub_story_model(name: str = "roneneldan/TinyStories-1M", *, device: str = "cpu") -> torch.nn.Module:
    """A TinyStories model from the Hugging Face hub as a TransformerBridge (``boot_transformers``).

    With HF_HUB_OFFLINE=1 (or TRANSFORMERS_OFFLINE=1) and the model not in the local cache, raises OfflineError at
    once instead of waiting on the network; a failed download is an OfflineError too.
    """
    if hub_offline():
        try:
            from huggingface_hub import try_to_load_from_cache
        except ImportError as err:
            raise OfflineError(f"{name} needs huggingface_hub and a network; use a local checkpoint") from err
        cached = try_to_load_from_cache(name, "config.json")
        if not isinstance(cached, str):
            raise OfflineError(
                f"{name} is not in the Hugging Face cache and HF_HUB_OFFLINE is set; "
                "unset it with a network, or train a local model with `ftmech tinystories pretrain`"
            )
    import transformer_lens.model_bridge.sources.transformers  # noqa: F401  (attaches boot_transformers)
    from transformer_lens.model_bridge import TransformerBridge

    try:
        return TransformerBridge.boot_transformers(name, device=device)
    except OSError as err:
        raise OfflineError(
            f"could not download {name} ({err.__class__.__name__}); check the network or the model name"
        ) from err
