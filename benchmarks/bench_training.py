"""One training step of the TransformerLens model against its peers, all measured in this one process: Hugging
Face ``transformers`` GPT-2 of the same shape (SDPA and eager attention, built from a local GPT2Config, nothing
downloaded), plain PyTorch with SDPA, TransformerLens's stock native model (Python LayerNorm and masked_fill
attention, which ``interp.fused_kernels`` replaces with fused kernels where unhooked), the TransformerLens model
under bf16 autocast (fast where the CPU has native bf16, which the machine record says), and the machine's own fp32
matmul rate, so that every figure is also a % of what a matmul reaches here; and the PCFG generator's batches/s
against the training steps/s. Writes ``benchmarks/results/bench_training_<machine>_<date>.json`` (the machine
described in it) and prints it.

    python benchmarks/bench_training.py [--preset cpu] [--batch-size 32] [--steps 20] [--rounds 5] [--threads 1]
                                        [--loss sequence|answer] [--note "machine shared with ..."]

A step is forward + backward + the training engine's update (gradient clipping, fused AdamW) on the next-token loss
over the whole sequence, so every position's logits get a gradient (``--loss answer``: on the answer token, as the
PCFG study trains). Each model's ``ms_per_step`` is the median over rounds; ``paired_time_vs_transformer_lens`` the
median over rounds of its time over the TransformerLens model's in the same round, which a machine whose speed
drifts between rounds moves less. FLOPs per step = tokens x (6 N + 12 n_layers d_model seq_len), tokens = batch x
seq_len: 6 N for the weight matmuls (N: attention, MLP and unembedding weights; 2 N forward, 4 N backward) and 12
n_layers d_model seq_len for the attention scores and their weighted sum (PaLM's count, the masked half included).
Layer norms, activations, softmax and the optimizer are not counted: they are the memory-bound rest. The matmul rate
is 2 n^3 over the time of an n x n fp32 matmul.

Fairness: every model is warmed up first, then each round times ``--steps`` steps of every model in turn and one
matmul measurement, and the median over rounds is reported with its range; a busy machine slows them alike.
"""

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from bench_record import RESULTS_DIR, describe_machine, write_result
from torch import nn
from transformer_lens.model_bridge import TransformerBridge

from interp.batches import Batch
from interp.config import to_dict
from interp.models import ModelConfig, bridge_config, build_model, preset
from interp.runtime import resolve_device, set_threads
from interp.training import LOSSES, TrainConfig, batch_loss, make_optimizer, update_weights
from procedural_tasks.pcfg_protocols import pretrain_spec, study_preset
from procedural_tasks.pcfg_tasks import PCFGTask

FLOP_FORMULA = "tokens x (6 N + 12 n_layers d_model seq_len); N = attention, MLP and unembedding weights"


class PlainBlock(nn.Module):
    """Pre-LN block: causal self-attention through PyTorch's fused SDPA kernel and a GELU MLP."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
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
        )  # (batch, head, pos, d_head)
        x = x + self.out(att.transpose(1, 2).reshape(b, t, -1))
        return x + self.fc_out(F.gelu(self.fc_in(self.ln2(x)), approximate="tanh"))


class PlainGPT(nn.Module):
    """The TransformerLens model's architecture in plain PyTorch (learned positions, untied unembedding)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.embed, self.pos = nn.Embedding(cfg.d_vocab, cfg.d_model), nn.Embedding(cfg.n_ctx, cfg.d_model)
        self.blocks = nn.ModuleList(PlainBlock(cfg) for _ in range(cfg.n_layers))
        self.ln_f, self.head = nn.LayerNorm(cfg.d_model), nn.Linear(cfg.d_model, cfg.d_vocab)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens) + self.pos(torch.arange(tokens.shape[1], device=tokens.device))
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))


class HFLogits(nn.Module):
    """A Hugging Face GPT-2 of ``cfg``'s shape whose forward returns the logits, as the others' do."""

    def __init__(self, cfg: ModelConfig, attention: str) -> None:
        super().__init__()
        from transformers import GPT2Config, GPT2LMHeadModel

        config = GPT2Config(
            vocab_size=cfg.d_vocab,
            n_positions=cfg.n_ctx,
            n_embd=cfg.d_model,
            n_layer=cfg.n_layers,
            n_head=cfg.n_heads,
            n_inner=cfg.d_mlp,
            activation_function=cfg.act_fn,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            bos_token_id=None,
            eos_token_id=None,
            attn_implementation=attention,
        )
        self.model = GPT2LMHeadModel(config)
        self.attention = self.model.config._attn_implementation

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=tokens, use_cache=False).logits


MODELS: dict[str, Callable[[ModelConfig, str], nn.Module]] = {
    "transformer_lens": lambda cfg, device: build_model(cfg, device=device),
    "transformer_lens_bf16": lambda cfg, device: build_model(cfg, device=device),
    # TransformerLens's own LayerNorm and attention, which interp.fused_kernels replaces where unhooked
    "transformer_lens_stock": lambda cfg, device: TransformerBridge.boot_native(
        bridge_config(cfg), device=resolve_device(device)
    ),
    "hf_gpt2_sdpa": lambda cfg, device: HFLogits(cfg, "sdpa").to(device),
    "hf_gpt2_eager": lambda cfg, device: HFLogits(cfg, "eager").to(device),
    "plain_torch_sdpa": lambda cfg, device: PlainGPT(cfg).to(device),
}


def flops_per_step(cfg: ModelConfig, batch: int, seq_len: int) -> float:
    """Training FLOPs of one step by ``FLOP_FORMULA``."""
    width = cfg.n_heads * cfg.head_dim
    n_matmul = (
        cfg.n_layers * (4 * cfg.d_model * width + 2 * cfg.d_model * cfg.d_mlp) + cfg.d_model * cfg.d_vocab
    )
    return batch * seq_len * (6 * n_matmul + 12 * cfg.n_layers * width * seq_len)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


BF16 = ("transformer_lens_bf16",)  # trained under bf16 autocast, as ``--precision bf16`` trains


class Trainer:
    """One model stepping on a fixed list of PCFG batches with the training engine's update (``make_optimizer``'s
    AdamW and ``update_weights``' gradient clipping, as every study trains): the next-token loss at every position
    (``sequence``) or the study's loss on the answer token alone (``answer``)."""

    def __init__(
        self,
        model: nn.Module,
        batches: list[Batch],
        device: torch.device,
        bf16: bool = False,
        loss: str = "sequence",
    ) -> None:
        self.model, self.batches, self.device, self.bf16 = model.train(), batches, device, bf16
        self.recipe = TrainConfig(steps=1)
        self.opt = make_optimizer(model, self.recipe)
        self.loss = loss
        self.done = 0

    def step(self) -> None:
        batch = self.batches[self.done % len(self.batches)]
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            loss = batch_loss(self.model, batch, self.loss)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        update_weights(self.model, self.opt, self.recipe)
        self.done += 1

    def seconds_per_step(self, steps: int) -> float:
        _sync(self.device)
        t0 = time.perf_counter()
        for _ in range(steps):
            self.step()
        _sync(self.device)
        return (time.perf_counter() - t0) / steps


def matmul_gflops(n: int, device: torch.device, seconds: float) -> float:
    """fp32 GFLOP/s of an n x n matmul repeated for about ``seconds``."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    a @ b
    _sync(device)
    count, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        count += 1
    _sync(device)
    return 2 * n**3 * count / (time.perf_counter() - t0) / 1e9


def data_rate(task: PCFGTask, batch_size: int, seconds: float) -> dict:
    """The PCFG generator making the study's pretraining batches, one after another, for about ``seconds``."""
    count, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds or count == 0:
        task.batch(pretrain_spec(), batch_size, seed=0, step=count)
        count += 1
    per_batch = (time.perf_counter() - t0) / count
    return {"batches": count, "ms_per_batch": 1000 * per_batch, "samples_per_s": batch_size / per_batch}


def _summary(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "rounds": values}


def main(argv: list[str] | None = None) -> Path:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", default="cpu", help="PCFG study preset: the model's shape and the data")
    p.add_argument("--batch-size", type=int, help="sequences per step (default: the preset's)")
    p.add_argument("--steps", type=int, default=20, help="timed steps per model per round")
    p.add_argument(
        "--rounds", type=int, default=5, help="rounds of every model in turn; the median is reported"
    )
    p.add_argument("--warmup", type=int, default=3, help="untimed steps per model first")
    p.add_argument(
        "--loss",
        choices=LOSSES,
        default="sequence",
        help="next-token loss at every position, or answer-token",
    )
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.add_argument("--matmul-n", type=int, default=1024, help="size of the square matmul measuring the rate")
    p.add_argument("--matmul-seconds", type=float, default=1.0, help="seconds per matmul measurement")
    p.add_argument("--data-seconds", type=float, default=3.0, help="seconds of PCFG batch generation")
    p.add_argument("--note", default="", help="recorded with the machine (e.g. what else was running)")
    p.add_argument("--out-dir", default=str(RESULTS_DIR), help="where the JSON goes")
    args = p.parse_args(argv)
    set_threads(args.threads)
    device = resolve_device(args.device)
    machine = describe_machine(threads=args.threads, device=str(device), note=args.note)
    sp = study_preset(args.preset)
    batch_size = args.batch_size or sp.batch_size
    task = PCFGTask(sp.task)
    batches = [task.batch(pretrain_spec(), batch_size, seed=0, step=i).to(device) for i in range(4)]
    seq_len = batches[0].tokens.shape[1]
    cfg = preset(sp.model).for_task(d_vocab=len(task.vocab), n_ctx=seq_len)

    trainers = {}
    for name, make in MODELS.items():
        torch.manual_seed(0)
        trainers[name] = Trainer(make(cfg, str(device)), batches, device, bf16=name in BF16, loss=args.loss)
        for _ in range(args.warmup):
            trainers[name].step()
    times: dict[str, list[float]] = {name: [] for name in trainers}
    matmul: list[float] = []
    for _ in range(args.rounds):
        for name, trainer in trainers.items():
            times[name].append(trainer.seconds_per_step(args.steps))
        matmul.append(matmul_gflops(args.matmul_n, device, args.matmul_seconds))
    data = data_rate(task, batch_size, args.data_seconds)

    flops, tokens, peak = (
        flops_per_step(cfg, batch_size, seq_len),
        batch_size * seq_len,
        statistics.median(matmul),
    )
    tl_s = statistics.median(times["transformer_lens"])
    models = {}
    for name, trainer in trainers.items():
        s = statistics.median(times[name])
        models[name] = {
            "params": sum(q.numel() for q in trainer.model.parameters()),
            "ms_per_step": _summary([1000 * t for t in times[name]]),
            "tokens_per_s": tokens / s,
            "gflop_per_s": flops / s / 1e9,
            "pct_of_matmul_rate": 100 * flops / s / 1e9 / peak,
            "time_vs_transformer_lens": s / tl_s,
            "paired_time_vs_transformer_lens": statistics.median(
                t / tl for t, tl in zip(times[name], times["transformer_lens"], strict=True)
            ),
            **({"attention": trainer.model.attention} if isinstance(trainer.model, HFLogits) else {}),
            "precision": "bf16 autocast" if trainer.bf16 else "fp32",
        }
    data["batches_per_s"] = 1000 / data["ms_per_batch"]
    data["transformer_lens_steps_per_s"] = 1 / tl_s
    data["data_time_over_step_time"] = data["ms_per_batch"] / (1000 * tl_s)
    record = {
        "bench": "training",
        "machine": machine,
        "settings": {
            "preset": args.preset,
            "model": to_dict(cfg),
            "batch_size": batch_size,
            "seq_len": seq_len,
            "tokens_per_step": tokens,
            "steps_per_round": args.steps,
            "rounds": args.rounds,
            "warmup_steps": args.warmup,
            "step": "forward + backward + gradient clipping + fused AdamW (interp.training's update), "
            + ("next-token loss over the whole sequence" if args.loss == "sequence" else "answer-token loss"),
            "loss": args.loss,
            "flop_formula": FLOP_FORMULA,
            "gflop_per_step": flops / 1e9,
        },
        "matmul": {"n": args.matmul_n, "dtype": "float32", "gflop_per_s": _summary(matmul)},
        "models": models,
        "pcfg_data": data,
    }
    return write_result("bench_training", record, Path(args.out_dir))


if __name__ == "__main__":
    main()
