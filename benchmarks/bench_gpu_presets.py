"""Step time, peak GPU memory and projected full-run time of the study-size presets: the PCFG ``paper``
preset and the TinyStories 91M model (``gpu_study_config``), through the same code the studies run.
Prints one JSON line (and writes it to --out); no asserts.

    python benchmarks/bench_gpu_presets.py [--steps 40] [--device auto] [--out bench_gpu.json]

Each measurement trains the real model with ``interp.training.train`` on the study's own batches
(no evaluation sets, so the step time is training alone); data generation per batch is timed apart
because it runs on the CPU. Generation is timed with the study's sampler at its sizes.
"""

import argparse
import dataclasses
import json
import time

import torch

from analyses.tinystories.config import gpu_study_config
from interp.models import build_model, n_params
from interp.models import preset as model_preset
from interp.runtime import resolve_device
from interp.training import TrainConfig, train
from procedural_tasks.pcfg_protocols import pretrain_spec, study_preset
from procedural_tasks.pcfg_tasks import PCFGTask
from procedural_tasks.story_batches import encode_stories, story_batch_fn
from procedural_tasks.story_data import build_story_splits, build_story_tokenizer
from procedural_tasks.story_scoring import score_model


def _timed_training(model, batch_fn, config: TrainConfig, device: torch.device) -> dict:
    """Seconds per step after a warm-up run of a few steps, and the peak memory of the timed run."""
    train(model, batch_fn, dataclasses.replace(config, steps=3, eval_every=10**9), progress=False)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    result = train(model, batch_fn, dataclasses.replace(config, eval_every=10**9), progress=False)
    out = {"steps": config.steps, "s_per_step": result.wall_seconds / config.steps}
    if device.type == "cuda":
        out["peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return out


def _data_ms(batch_fn, n: int = 5) -> float:
    t = time.perf_counter()
    for step in range(n):
        batch_fn(step)
    return (time.perf_counter() - t) / n * 1e3


def bench_pcfg_paper(steps: int, device_name: str) -> dict:
    sp = study_preset("paper")
    task = PCFGTask(sp.task)
    seq_len = task.batch(pretrain_spec(), 1, 0, 0).tokens.shape[1]
    device = resolve_device(device_name)
    model = build_model(
        model_preset(sp.model).for_task(d_vocab=len(task.vocab), n_ctx=seq_len), device=device_name
    )
    pre = [task.batch(pretrain_spec(), sp.batch_size, 0, s) for s in range(steps)]
    config = sp.train_config("pretrain", lr=1e-3, device=device_name, steps=steps)
    timing = _timed_training(model, lambda s: pre[s % len(pre)], config, device)
    data = _data_ms(lambda s: task.batch(pretrain_spec(), sp.batch_size, 1, s))
    per_step = timing["s_per_step"] + data / 1e3  # the loop generates each batch on the CPU, then steps
    return {
        "preset": "paper",
        "n_params": n_params(model),
        "batch": [sp.batch_size, seq_len],
        "train": timing,
        "data_ms_per_batch": data,
        "pretrain_hours_projected": sp.pretrain_steps * per_step / 3600,
        "bound_by": "data generation (CPU)" if data / 1e3 > timing["s_per_step"] else "model step",
    }


def bench_story_91m(steps: int, device_name: str, n_stories: int) -> dict:
    study = gpu_study_config("synthetic", n_stories=n_stories, device=device_name)
    t = time.perf_counter()
    tokenizer = build_story_tokenizer(study.data)
    splits = build_story_splits(study.data, tokenizer)
    stories = encode_stories(tokenizer, splits.pretrain, study.data, salt=1)
    data_s = time.perf_counter() - t
    device = resolve_device(device_name)
    model_config = study.model.for_task(d_vocab=tokenizer.vocab_size, n_ctx=study.data.n_ctx)
    out: dict = {"preset": "llama_91m", "n_stories": n_stories, "data_and_tokenizer_s": data_s}
    batch_fn = story_batch_fn(stories, study.batch_size, 0)
    for precision in ("fp32", "bf16"):
        model = build_model(model_config, device=device_name)
        config = dataclasses.replace(study, precision=precision).train_config(
            "pretrain", seed=0, steps=steps, device=device_name
        )
        timing = _timed_training(model, batch_fn, config, device)
        out[precision] = {
            **timing,
            "pretrain_hours_projected": study.pretrain_steps * timing["s_per_step"] / 3600,
        }
    out["n_params"] = n_params(model)
    out["batch"] = list(batch_fn(0).tokens.shape)
    t = time.perf_counter()
    score = score_model(
        model,
        tokenizer,
        study.data,
        splits,
        n_generations=study.n_generations,
        max_new_tokens=study.max_new_tokens,
        seed=0,
    )
    out["generation"] = {
        "n": study.n_generations,
        "max_new_tokens": study.max_new_tokens,
        "seconds": time.perf_counter() - t,
        "mean_tokens": score.mean_tokens,
    }
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=40, help="timed training steps per measurement")
    p.add_argument("--device", default="auto")
    p.add_argument("--n-stories", type=int, default=20_000, help="synthetic stories for the 91M measurement")
    p.add_argument("--out", help="also write the JSON here")
    args = p.parse_args()
    device = resolve_device(args.device)
    result = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "pcfg_paper": bench_pcfg_paper(args.steps, args.device),
        "tinystories_91m": bench_story_91m(args.steps, args.device, args.n_stories),
    }
    text = json.dumps(result)
    print(text)
    if args.out:
        with open(args.out, "w") as handle:
            handle.write(text + "\n")


if __name__ == "__main__":
    main()
