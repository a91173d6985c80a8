"""Language-modelling jobs: training cost by sequence length, and validation loss after equal steps and time.

Both models see the same packed token stream (stories tokenised with one BPE trained on the corpus, joined
and cut into fixed-length sequences) and one recipe (``interp.training``, next-token loss on every position).
"""

import dataclasses
import time
from pathlib import Path
from statistics import median
from typing import Any

import torch
import torch.nn.functional as F

from interp import fused_kernels
from interp.batches import Batch
from interp.config import from_dict
from interp.jsonio import write_json
from interp.models import ModelConfig, build_model, n_params
from interp.runtime import eval_mode, numpy_rng, set_threads
from interp.training import TrainConfig, batch_loss, make_optimizer, train
from procedural_tasks.story_generator import StoryGeneratorConfig, generate_stories
from procedural_tasks.story_loaders import load_shared_sample, shared_sample_dir
from procedural_tasks.story_tokenizer import StoryTokenizerConfig, train_tokenizer

RESULT = "result.json"
VAL_FRACTION = 0.1


def resolve_corpus(corpus: str) -> str:
    """``auto`` is the shared TinyStories sample when it is present, else the synthetic corpus."""
    if corpus == "auto":
        return "shared" if shared_sample_dir() is not None else "synthetic"
    return corpus


def token_stream(corpus: str, *, n_stories: int, vocab: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Training and validation token streams (stories joined in order, the last tenth held out) and the
    vocabulary size."""
    records = (
        load_shared_sample() if corpus == "shared" else generate_stories(n_stories, StoryGeneratorConfig())
    )
    texts = [r.story for r in records]
    tokenizer = train_tokenizer(texts, config=StoryTokenizerConfig(vocab_size=vocab))
    n_val = max(1, int(len(texts) * VAL_FRACTION))
    streams = [
        torch.tensor([t for row in tokenizer.encode_batch(part, eos=True) for t in row], dtype=torch.long)
        for part in (texts[:-n_val], texts[-n_val:])
    ]
    return streams[0], streams[1], tokenizer.vocab_size


def lm_batch(tokens: torch.Tensor) -> Batch:
    """Fixed-length sequences for the next-token loss (the answer slot is the last token)."""
    n = tokens.shape[0]
    return Batch(tokens=tokens, answer_pos=torch.full((n,), tokens.shape[1] - 2), answers=tokens[:, -1])


def chunk_batch_fn(stream: torch.Tensor, seq_len: int, batch_size: int, seed: int):
    """A pure function of the step: ``batch_size`` windows of ``seq_len`` tokens at seeded random offsets."""

    def batch_fn(step: int) -> Batch:
        starts = numpy_rng(seed, step).integers(0, len(stream) - seq_len, size=batch_size)
        return lm_batch(torch.stack([stream[s : s + seq_len] for s in starts.tolist()]))

    return batch_fn


@torch.no_grad()
def val_loss(model: torch.nn.Module, chunks: torch.Tensor) -> float:
    """Mean next-token cross-entropy over held-out sequences."""
    with eval_mode(model):
        logits = model(chunks)[:, :-1]
        return float(F.cross_entropy(logits.flatten(0, 1).float(), chunks[:, 1:].flatten()))


def job_lm(
    *,
    out_dir: Path,
    model: dict,
    seed: int,
    corpus: str,
    n_stories: int,
    vocab: int,
    seq_len: int,
    batch_size: int,
    steps: int,
    lr: float,
    evals: int,
    val_chunks: int,
    device: str,
) -> dict:
    """Train one model on the corpus; record validation loss against steps and training seconds (evaluation
    time excluded), so equal steps and equal wall time can both be read off."""
    train_stream, val_stream, d_vocab = token_stream(corpus, n_stories=n_stories, vocab=vocab)
    n_chunks = min(val_chunks, len(val_stream) // seq_len)
    val = val_stream[: n_chunks * seq_len].view(n_chunks, seq_len)
    config = dataclasses.replace(from_dict(ModelConfig, model), seed=seed).for_task(
        d_vocab=d_vocab, n_ctx=seq_len
    )
    net = build_model(config, device=device)
    every = max(1, steps // (evals - 1))
    recipe = TrainConfig(
        steps=steps, batch_size=batch_size, lr=lr, seed=seed, device=device, loss="sequence", eval_every=every
    )
    curve: list[dict[str, float]] = []
    clock = {"start": time.perf_counter(), "paused": 0.0}

    def on_eval(row: Any) -> None:
        t0 = time.perf_counter()
        seconds = t0 - clock["start"] - clock["paused"]
        curve.append({"step": row["step"], "seconds": seconds, "val_loss": val_loss(net, val.to(device))})
        clock["paused"] += time.perf_counter() - t0

    train(
        net, chunk_batch_fn(train_stream, seq_len, batch_size, seed), recipe, progress=False, on_eval=on_eval
    )
    result = {"n_params": n_params(net), "d_vocab": d_vocab, "corpus": corpus, "curve": curve}
    write_json(out_dir / RESULT, result)
    return {"val_loss": curve[-1]["val_loss"], "seconds": curve[-1]["seconds"]}


def saved_bytes(model: torch.nn.Module, tokens: torch.Tensor) -> int:
    """Bytes of the tensors a forward pass saves for backward (distinct storages): the activation memory a
    training step holds at its peak, which is what grows with the sequence length."""
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        F.cross_entropy(model(tokens).flatten(0, 1), tokens.flatten()).backward()
    model.zero_grad(set_to_none=True)
    return sum(storages.values())


def job_throughput(
    *,
    out_dir: Path,
    model: dict,
    materialise_attention: bool,
    lengths: list[int],
    batch_size: int,
    steps: int,
    vocab: int,
    device: str,
) -> dict:
    """Seconds per training step (forward, backward, AdamW; median of ``steps`` after a warm-up), tokens per
    second and activation memory of one model at each sequence length; ``materialise_attention``: with its
    attention patterns computed and kept (``interp.fused_kernels.materialise_attention``)."""
    set_threads(1)
    rows = []
    for length in lengths:
        config = from_dict(ModelConfig, model).for_task(d_vocab=vocab, n_ctx=length)
        net = build_model(config, device=device)
        if materialise_attention:
            fused_kernels.materialise_attention(net)
        optimizer = make_optimizer(net, TrainConfig(steps=1))
        tokens = torch.randint(0, vocab, (batch_size, length), generator=torch.Generator().manual_seed(0))
        batch = lm_batch(tokens).to(device)
        times = []
        for i in range(steps + 1):
            t0 = time.perf_counter()
            batch_loss(net, batch, "sequence").backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if i:
                times.append(time.perf_counter() - t0)
        seconds = median(times)
        rows.append(
            {
                "length": length,
                "seconds_per_step": seconds,
                "tokens_per_second": batch_size * length / seconds,
                "activation_mib": saved_bytes(net, batch.tokens) / 2**20,
                "n_params": n_params(net),
            }
        )
    write_json(out_dir / RESULT, {"rows": rows})
    return {"seconds": [r["seconds_per_step"] for r in rows]}
