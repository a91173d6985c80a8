"""Training throughput of the TransformerLens model against a plain-PyTorch model of the same shape,
measured in the same process, and the PCFG generator's samples/s. Prints one JSON line.

    python benchmarks/bench_training.py [--steps 60] [--batch-size 32] [--threads 1]
"""

import argparse
import json
import math
import time

import torch
import torch.nn.functional as F
from torch import nn

from interp.models import ModelConfig, build_model, preset
from interp.runtime import numpy_rng, set_threads
from procedural_tasks.pcfg_protocols import study_preset
from procedural_tasks.pcfg_tasks import PCFGTask, SampleSpec


class PlainBlock(nn.Module):
    """Pre-LN block: causal self-attention and a GELU MLP, as in the TL-native model.

    ``sdpa`` uses PyTorch's fused attention kernel; otherwise attention is written out (scores, mask,
    softmax, weighted sum) as nanoGPT's fallback and the TL-native model do.
    """

    def __init__(self, cfg: ModelConfig, sdpa: bool) -> None:
        super().__init__()
        self.sdpa = sdpa
        self.n_heads, self.d_head = cfg.n_heads, cfg.head_dim
        self.ln1, self.ln2 = nn.LayerNorm(cfg.d_model), nn.LayerNorm(cfg.d_model)
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.n_heads * cfg.head_dim)
        self.out = nn.Linear(cfg.n_heads * cfg.head_dim, cfg.d_model)
        self.fc_in, self.fc_out = nn.Linear(cfg.d_model, cfg.d_mlp), nn.Linear(cfg.d_mlp, cfg.d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, self.n_heads, self.d_head).unbind(2)
        att = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True
        )
        x = x + self.out(att.transpose(1, 2).reshape(b, t, -1))
        return x + self.fc_out(F.gelu(self.fc_in(self.ln2(x)), approximate="tanh"))


class PlainGPT(nn.Module):
    def __init__(self, cfg: ModelConfig, *, sdpa: bool) -> None:
        super().__init__()
        self.embed, self.pos = nn.Embedding(cfg.d_vocab, cfg.d_model), nn.Embedding(cfg.n_ctx, cfg.d_model)
        self.blocks = nn.ModuleList(PlainBlock(cfg, sdpa) for _ in range(cfg.n_layers))
        self.ln_f, self.head = nn.LayerNorm(cfg.d_model), nn.Linear(cfg.d_model, cfg.d_vocab, bias=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens) + self.pos(torch.arange(tokens.shape[1], device=tokens.device))
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))


def time_training(model: nn.Module, batches: list, steps: int) -> float:
    """Seconds per optimizer step (answer-only loss), after two warm-up steps."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def step(batch) -> None:
        logits = model(batch.tokens)[torch.arange(len(batch)), batch.answer_pos]
        loss = F.cross_entropy(logits, batch.answers)
        opt.zero_grad()
        loss.backward()
        opt.step()

    for batch in batches[:2]:
        step(batch)
    t0 = time.perf_counter()
    for i in range(steps):
        step(batches[i % len(batches)])
    return (time.perf_counter() - t0) / steps


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--preset", default="cpu")
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=3, help="alternating timing rounds; the median is reported")
    args = p.parse_args()
    set_threads(args.threads)
    sp = study_preset(args.preset)
    task = PCFGTask(sp.task)
    cfg = preset(sp.model).for_task(d_vocab=len(task.vocab), n_ctx=sp.task.seq_len)

    t0 = time.perf_counter()
    n_gen = 0
    rng = numpy_rng(0)
    while time.perf_counter() - t0 < 3.0:
        task.samples(SampleSpec(), 64, rng)
        n_gen += 64
    gen_rate = n_gen / (time.perf_counter() - t0)
    corr = SampleSpec(family="count", operand="b", c=1.0)
    task.acceptance(corr)  # the one-off label-distribution table, excluded from the rate
    t0 = time.perf_counter()
    task.batch(corr, 256, seed=0, step=0)
    corr_rate = 256 / (time.perf_counter() - t0)

    batches = [task.batch(SampleSpec(), args.batch_size, seed=0, step=i) for i in range(8)]
    tl_model = build_model(cfg)
    plain, fused = PlainGPT(cfg, sdpa=False), PlainGPT(cfg, sdpa=True)
    assert sum(p.numel() for p in plain.parameters()) == sum(p.numel() for p in tl_model.parameters())
    models = {"tl": tl_model, "native": tl_model.original_model, "plain": plain, "fused": fused}
    times: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(args.rounds):
        for name, model in models.items():
            times[name].append(time_training(model, batches, args.steps))
    tl, native, pl, fu = (sorted(v)[len(v) // 2] for v in times.values())
    tokens = args.batch_size * sp.task.seq_len
    print(
        json.dumps(
            {
                "preset": args.preset,
                "threads": args.threads,
                "batch_size": args.batch_size,
                "seq_len": sp.task.seq_len,
                "params": sum(p.numel() for p in tl_model.parameters()),
                "transformer_lens_tokens_per_s": round(tokens / tl),
                "plain_torch_tokens_per_s": round(tokens / pl),
                "tl_over_plain_time_ratio": round(tl / pl, 3),
                "tl_step_ms": round(1000 * tl, 1),
                "tl_native_module_step_ms": round(1000 * native, 1),
                "plain_sdpa_step_ms": round(1000 * fu, 1),
                "tl_over_plain_sdpa_time_ratio": round(tl / fu, 3),
                "plain_step_ms": round(1000 * pl, 1),
                "pcfg_samples_per_s": round(gen_rate),
                "pcfg_correlated_samples_per_s": round(corr_rate),
                "data_batches_per_s": math.floor(gen_rate / args.batch_size),
                "tl_steps_per_s": round(1 / tl, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
