"""Probing 10,000 PCFG sequences at every block output: wall time, peak RSS, and collect_activations
against ``run_with_cache(names_filter=...)`` on the same batches. Prints one JSON line; no asserts.

    python benchmarks/bench_activations.py [--n 10000] [--batch-size 256] [--probe-steps 4000] [--threads 1]

The model is the ``cpu`` preset with random weights (timing does not depend on what it learned).
"""

import argparse
import json
import platform
import resource
import time

import torch

from interp import hooks
from interp.activations import collect_activations, select_positions
from interp.batches import concat_batches
from interp.models import build_model, preset
from interp.probing import ProbeConfig, probe_layers
from interp.runtime import set_threads
from procedural_tasks.pcfg_tasks import PCFGTask, PCFGTaskConfig, SampleSpec


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@torch.no_grad()
def run_with_cache_baseline(model, batches, names):
    """The same [example, d] arrays through run_with_cache, keeping the answer position afterwards."""
    out = {name: [] for name in names}
    for batch in batches:
        _, cache = model.run_with_cache(batch.tokens, names_filter=names)
        for name in names:
            out[name].append(select_positions(cache[name], batch, "answer").cpu())
    return {name: torch.cat(v) for name, v in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--probe-steps", type=int, default=4000)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    set_threads(args.threads)

    config = PCFGTaskConfig(window=48, region=32, families=("count",))
    task = PCFGTask(config)
    t0 = time.perf_counter()
    batches = [
        task.batch(SampleSpec(), min(args.batch_size, args.n - start), 0, step)
        for step, start in enumerate(range(0, args.n, args.batch_size))
    ]
    data_s = time.perf_counter() - t0
    rss_data = peak_rss_mb()

    model = build_model(preset("cpu").for_task(d_vocab=len(task.vocab), n_ctx=config.seq_len))
    model.eval()
    names = hooks.residual_stream(model.cfg.n_layers)
    collect_activations(model, batches[0], hook_names=names)  # warm-up
    run_with_cache_baseline(model, batches[:1], names)
    rss_model = peak_rss_mb()

    # wall and CPU seconds (CPU time is less sensitive to other processes on a shared machine)
    t0, c0 = time.perf_counter(), time.process_time()
    ours = collect_activations(
        model, batches, hook_names=names, position="answer", batch_size=args.batch_size
    )
    ours_s, ours_cpu = time.perf_counter() - t0, time.process_time() - c0
    rss_ours = peak_rss_mb()

    t0, c0 = time.perf_counter(), time.process_time()
    theirs = run_with_cache_baseline(model, batches, names)
    theirs_s, theirs_cpu = time.perf_counter() - t0, time.process_time() - c0
    rss_theirs = peak_rss_mb()
    max_diff = max(float((ours[n] - theirs[n]).abs().max()) for n in names)

    # early sites only: collect_activations stops after the last block it needs
    early = names[:2]
    c0 = time.process_time()
    collect_activations(model, batches, hook_names=early, position="answer", batch_size=args.batch_size)
    early_ours_cpu = time.process_time() - c0
    c0 = time.process_time()
    run_with_cache_baseline(model, batches, early)
    early_theirs_cpu = time.process_time() - c0

    data = concat_batches(batches)
    t0 = time.perf_counter()
    result = probe_layers(
        model,
        data,
        hook_names=names,
        label="count_a",
        position="answer",
        config=ProbeConfig(steps=args.probe_steps),
    )
    probe_s = time.perf_counter() - t0

    n, d = ours.n_examples, model.cfg.d_model
    print(
        json.dumps(
            {
                "bench": "activations",
                "n_sequences": n,
                "seq_len": config.seq_len,
                "hooks": len(names),
                "d_model": d,
                "batch_size": args.batch_size,
                "threads": torch.get_num_threads(),
                "data_seconds": round(data_s, 2),
                "collect_seconds": round(ours_s, 3),
                "run_with_cache_seconds": round(theirs_s, 3),
                "speed_ratio_collect_vs_run_with_cache": round(theirs_s / ours_s, 3),
                "collect_cpu_seconds": round(ours_cpu, 3),
                "run_with_cache_cpu_seconds": round(theirs_cpu, 3),
                "cpu_ratio_collect_vs_run_with_cache": round(theirs_cpu / ours_cpu, 3),
                "early_sites": early,
                "cpu_ratio_early_sites": round(early_theirs_cpu / early_ours_cpu, 3),
                "collect_sequences_per_s": round(n / ours_s),
                "max_abs_diff": max_diff,
                "kept_mb": round(sum(t.numel() * 4 for t in ours.activations.values()) / 2**20, 2),
                "full_cache_mb_if_all_positions": round(n * config.seq_len * d * len(names) * 4 / 2**20, 1),
                "probe_seconds_all_layers_with_control": round(probe_s, 2),
                "probe_steps": args.probe_steps,
                "probe_test_accuracy": {k: round(v, 3) for k, v in result.test_accuracy.items()},
                "peak_rss_mb_after_data": round(rss_data, 1),
                "peak_rss_mb_after_model_warmup": round(rss_model, 1),
                "peak_rss_mb_after_collect": round(rss_ours, 1),
                "peak_rss_mb_after_run_with_cache": round(rss_theirs, 1),
                "peak_rss_mb_end": round(peak_rss_mb(), 1),
                "torch": torch.__version__,
                "machine": platform.machine(),
            }
        )
    )


if __name__ == "__main__":
    main()
