"""Step time, its breakdown, peak GPU memory and projected full-run time of the study-size presets: the PCFG
``paper`` preset and the TinyStories 91M model (``gpu_study_config``), through the same code the studies run.
Writes ``benchmarks/results/bench_gpu_presets_<machine>_<date>.json`` and prints it; no asserts.

    python benchmarks/bench_gpu_presets.py [--steps 40] [--device auto] [--pcfg-preset paper] [--n-stories 20000]

Each measurement trains the real model with ``interp.training.train`` on the study's own batches (no
evaluation sets, so the step time is training alone), once on pre-made batches and once with the preset's
own data workers; data generation per batch is also timed apart because it runs on the CPU. The PCFG step is
taken apart too, each part synchronised on the GPU: data (made in the loop and copied to the device; the
study's runs make it in data workers instead), forward + backward (``batch_loss`` under the preset's
precision and compile setting), optimizer (gradient clipping and AdamW), and evaluation (one evaluation of
the study's counting sets, amortised over the steps between evaluations). Made for CUDA;
``--device cpu --pcfg-preset tiny --n-stories 0`` is a smoke run.
"""

import argparse
import dataclasses
import time
from pathlib import Path

import torch
from bench_record import RESULTS_DIR, describe_machine, write_result

from analyses.tinystories.config import gpu_study_config
from interp.evaluation import evaluate
from interp.models import build_model, n_params
from interp.models import preset as model_preset
from interp.runtime import resolve_device, set_threads
from interp.training import TrainConfig, batch_loss, compiled, make_optimizer, train, update_weights
from procedural_tasks.pcfg_protocols import SpecBatches, counting_eval_sets, pretrain_spec, study_preset
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


def _now(device: torch.device) -> float:
    """The time once the GPU's queued work is done."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def step_breakdown(model, task: PCFGTask, config: TrainConfig, eval_n: int, device: torch.device) -> dict:
    """Mean ms per step of each part of a training step (see the module docstring), over ``config.steps``
    steps after one warm-up step, and one evaluation amortised over the preset's evaluation interval."""
    optimizer = make_optimizer(model, config)
    forward = compiled(model, config.compile)
    parts = {"data": 0.0, "forward_backward": 0.0, "optimizer": 0.0}
    for step in range(config.steps + 1):
        t0 = _now(device)
        batch = task.batch(pretrain_spec(), config.batch_size, seed=2, step=step).to(device)
        t1 = _now(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.precision == "bf16"):
            loss = batch_loss(forward, batch, config.loss)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        t2 = _now(device)
        update_weights(model, optimizer, config)
        t3 = _now(device)
        if step:  # step 0 warms up
            for name, ms in zip(parts, (t1 - t0, t2 - t1, t3 - t2), strict=True):
                parts[name] += 1e3 * ms / config.steps
    eval_sets = counting_eval_sets(task, eval_n, seed=0)
    t0 = _now(device)
    for eval_set in eval_sets:
        evaluate(model, eval_set)
    evaluation = 1e3 * (_now(device) - t0)
    interval = config.eval_every if config.eval_steps is None else config.steps / len(config.eval_steps)
    parts["evaluation"] = evaluation / interval
    return {
        "ms_per_step": parts,
        "total_ms_per_step": sum(parts.values()),
        "evaluation_ms_each": evaluation,
        "evaluation_sets": [s.name for s in eval_sets],
        "steps_between_evaluations": interval,
    }


def bench_pcfg(preset: str, steps: int, device_name: str) -> dict:
    sp = study_preset(preset)
    task = PCFGTask(sp.task)
    seq_len = task.batch(pretrain_spec(), 1, 0, 0).tokens.shape[1]
    device = resolve_device(device_name)
    model = build_model(
        model_preset(sp.model).for_task(d_vocab=len(task.vocab), n_ctx=seq_len), device=device_name
    )
    pre = [task.batch(pretrain_spec(), sp.batch_size, 0, s) for s in range(steps)]
    config = sp.train_config("pretrain", lr=1e-3, device=device_name, steps=steps)
    timing = _timed_training(
        model, lambda s: pre[s % len(pre)], dataclasses.replace(config, data_workers=0), device
    )
    batch_fn = SpecBatches(task, pretrain_spec(), sp.batch_size, 1)
    data = _data_ms(batch_fn)
    # the study's own loop: batches from the preset's data workers (or made in the loop when it has none)
    with_data = _timed_training(model, batch_fn, config, device)
    per_step = with_data["s_per_step"]
    full = sp.train_config("pretrain", lr=1e-3, device=device_name)
    breakdown = step_breakdown(model, task, dataclasses.replace(full, steps=steps), sp.eval_n, device)
    return {
        "preset": preset,
        "n_params": n_params(model),
        "batch": [sp.batch_size, seq_len],
        "precision": config.precision,
        "compile": config.compile,
        "data_workers": config.data_workers,
        "train": timing,
        "train_with_data": with_data,
        "data_ms_per_batch": data,
        "breakdown": breakdown,
        "pretrain_steps": sp.pretrain_steps,
        "pretrain_hours_projected": sp.pretrain_steps * per_step / 3600,
        "pretrain_hours_projected_from_breakdown": sp.pretrain_steps * breakdown["total_ms_per_step"] / 3.6e6,
        "bound_by": "data" if with_data["s_per_step"] > 1.2 * timing["s_per_step"] else "model step",
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


def main(argv: list[str] | None = None) -> Path:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=40, help="timed training steps per measurement")
    p.add_argument("--device", default="auto")
    p.add_argument("--pcfg-preset", default="paper", help="PCFG study preset (tiny for a CPU smoke run)")
    p.add_argument(
        "--n-stories", type=int, default=20_000, help="synthetic stories for the 91M measurement (0: skip it)"
    )
    p.add_argument("--note", default="", help="recorded with the machine (e.g. what else was running)")
    p.add_argument("--out-dir", default=str(RESULTS_DIR), help="where the JSON goes")
    args = p.parse_args(argv)
    set_threads(None)
    device = resolve_device(args.device)
    record = {
        "bench": "gpu_presets",
        "machine": describe_machine(threads=torch.get_num_threads(), device=str(device), note=args.note),
        "pcfg": bench_pcfg(args.pcfg_preset, args.steps, args.device),
    }
    if args.n_stories:
        record["tinystories_91m"] = bench_story_91m(args.steps, args.device, args.n_stories)
    return write_result("bench_gpu_presets", record, Path(args.out_dir))


if __name__ == "__main__":
    main()
