"""Sampling from the models ``interp.models`` builds, with a key/value cache where the architecture allows it.

``sample_tokens`` draws continuations of token prompts. For LLaMA-style TransformerBridges (RMSNorm, rotary
positions, gated SiLU MLP) it runs ``CachedDecoder``: the model's own forward pass, read from its weights (names
from ``interp.weights``), with the keys and values of earlier positions kept, so each new token costs one position
rather than the whole sequence. Every other model is re-run on the whole sequence at each step with its own
forward. ``tests/unit/test_generation.py`` checks the cached logits against the bridge's forward at every step.
"""

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

from interp import weights
from interp.errors import ConfigError, DataError
from interp.runtime import eval_mode


class CachedDecoder:
    """A key/value-cached forward pass of a LLaMA-style TransformerBridge, read from its weights (sampling only).

    Rows may be left-padded: ``valid`` marks real tokens, positions count real tokens only, and every query may
    attend to itself so padded rows stay finite. ``supports`` says which bridges it reproduces; any other model
    is a ``ConfigError`` here (``sample_tokens`` falls back to the model's own forward for them).
    """

    def __init__(self, model: torch.nn.Module) -> None:
        if not self.supports(model):
            raise ConfigError(
                "CachedDecoder needs a LLaMA-style bridge (RMSNorm, rotary, SwiGLU); use sample_tokens"
            )
        cfg = model.cfg
        self.w = {k: v.detach() for k, v in model.state_dict().items()}
        self.n_layers, self.n_heads, self.d_head, self.eps = cfg.n_layers, cfg.n_heads, cfg.d_head, cfg.eps
        device = self.w[weights.EMBED].device
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
        """Whether ``model`` is a bridge whose forward this decoder reproduces exactly."""
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
            and {weights.EMBED, weights.LN_FINAL, weights.UNEMBED, weights.mlp(0, "gate")} <= names
        )

    def _rms(self, x: Tensor, weight: Tensor) -> Tensor:
        return weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))

    def _rope(self, x: Tensor, pos: Tensor) -> Tensor:
        cos, sin = self.cos[pos].unsqueeze(1), self.sin[pos].unsqueeze(1)  # (batch, 1, pos, d_head)
        rotated = torch.stack((-x[..., 1::2], x[..., 0::2]), dim=-1).flatten(-2)
        return x * cos + rotated * sin

    def _linear(self, x: Tensor, weight: str) -> Tensor:
        """``x @ W.T + b`` for the weight named ``weight`` and its bias, where the model has one."""
        return F.linear(x, self.w[weight], self.w.get(weight.removesuffix("weight") + "bias"))

    def _mask(self, valid: Tensor, n_new: int) -> Tensor:
        """Which cached keys each of the ``n_new`` queries may attend to: (batch, 1, query_pos, key_pos)."""
        self.valid = valid if self.valid is None else torch.cat([self.valid, valid], dim=1)
        total = self.valid.shape[1]
        query_index = torch.arange(total - n_new, total, device=valid.device)
        key_index = torch.arange(total, device=valid.device)
        allowed = (key_index[None, :] <= query_index[:, None])[None] & self.valid[:, None, :]
        allowed = allowed | (key_index[None, :] == query_index[:, None])[None]
        return allowed[:, None]

    def _attention(self, layer: int, h: Tensor, pos: Tensor, mask: Tensor) -> Tensor:
        batch, n_new, _ = h.shape
        q, k, v = (
            self._linear(h, weights.attn(layer, n))
            .view(batch, n_new, self.n_heads, self.d_head)
            .transpose(1, 2)
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
        return self._linear(z, weights.attn(layer, "o"))

    def forward(self, tokens: Int[Tensor, "batch pos"], valid: Tensor) -> Float[Tensor, "batch pos d_vocab"]:
        """Logits of ``tokens`` appended to the cache (the first call fills it with the prompt)."""
        n_new = tokens.shape[1]
        if self.valid is None:
            pos = (valid.long().cumsum(1) - 1).clamp_min(0)
        else:
            pos = self.next_pos.unsqueeze(1) + torch.arange(n_new, device=tokens.device)
        self.next_pos = pos[:, -1] + 1
        if int(self.next_pos.max()) > self.n_ctx:
            raise DataError(f"sampling ran past n_ctx {self.n_ctx}; lower max_new_tokens")
        mask = self._mask(valid, n_new)
        x = self.w[weights.EMBED][tokens]
        for layer in range(self.n_layers):
            x = x + self._attention(layer, self._rms(x, self.w[weights.norm(layer, "ln1")]), pos, mask)
            h = self._rms(x, self.w[weights.norm(layer, "ln2")])
            gated = F.silu(self._linear(h, weights.mlp(layer, "gate"))) * self._linear(
                h, weights.mlp(layer, "in")
            )
            x = x + self._linear(gated, weights.mlp(layer, "out"))
        return self._linear(self._rms(x, self.w[weights.LN_FINAL]), weights.UNEMBED)


def left_pad(prompts: Sequence[Sequence[int]], pad_id: int) -> tuple[Tensor, Tensor]:
    """Prompts left-padded with ``pad_id`` to one width, and the mask of their real tokens."""
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


def _groups(prompts: Sequence[Sequence[int]], batch_size: int, cached: bool) -> list[list[int]]:
    """Prompt indices per forward batch: in order for the cache (it handles padding), else by equal length."""
    if cached:
        return [list(range(s, min(s + batch_size, len(prompts)))) for s in range(0, len(prompts), batch_size)]
    by_len: dict[int, list[int]] = {}
    for i, p in enumerate(prompts):
        by_len.setdefault(len(p), []).append(i)
    return [g[s : s + batch_size] for _, g in sorted(by_len.items()) for s in range(0, len(g), batch_size)]


def _sample_group(
    model: torch.nn.Module,
    prompts: Sequence[Sequence[int]],
    *,
    cached: bool,
    max_new_tokens: int,
    generator: torch.Generator,
    temperature: float,
    eos_id: int | None,
    pad_id: int,
) -> list[list[int]]:
    """One batch of sampled continuations (finished rows continue with ``pad_id``)."""
    device = next(model.parameters()).device
    tokens, valid = left_pad(prompts, pad_id)
    tokens, valid = tokens.to(device), valid.to(device)
    finished = torch.zeros(len(prompts), dtype=torch.bool, device=device)
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
    return torch.stack(new, dim=1).cpu().tolist()


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
    size give the same tokens; ``temperature=0`` is greedy decoding. LLaMA-style bridges use ``CachedDecoder``;
    other models are re-run on the whole sequence at each step, in groups of equal prompt length (no padding).
    """
    if max_new_tokens < 1:
        raise ConfigError(f"max_new_tokens {max_new_tokens} must be >= 1")
    if temperature < 0:
        raise ConfigError(f"temperature {temperature} must be >= 0 (0 = greedy)")
    if any(len(p) == 0 for p in prompts):
        raise DataError("every prompt needs at least one token (e.g. <bos>)")
    out: list[list[int]] = [[] for _ in prompts]
    cached = CachedDecoder.supports(model)
    with eval_mode(model):
        for idx in _groups(prompts, batch_size, cached):
            sampled = _sample_group(
                model,
                [prompts[i] for i in idx],
                cached=cached,
                max_new_tokens=max_new_tokens,
                generator=generator,
                temperature=temperature,
                eos_id=eos_id,
                pad_id=pad_id,
            )
            for row, i in zip(sampled, idx, strict=True):
                if eos_id is not None and eos_id in row:
                    row = row[: row.index(eos_id) + 1]
                out[i] = row
    return out
