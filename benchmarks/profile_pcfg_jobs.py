"""Where a finished PCFG study's CPU went: one job of each kind (job function and step count) re-run under
cProfile into a scratch directory, its time split into training steps, training data, evaluation during
training, final and audit evaluations, probes, pruning, patching, diffing, checkpoints and the rest; each kind's
shares are applied to the CPU-seconds the study's own jobs of that kind took (their ``DONE`` records) and summed.
Writes ``benchmarks/results/profile_pcfg_jobs_<machine>_<date>.json`` and prints it.

    python benchmarks/profile_pcfg_jobs.py runs/pcfg [--note "machine shared with ..."]

cProfile's overhead falls on Python calls, so Python-heavy parts (the grammar sampler, module dispatch) come out
somewhat larger than they are against the torch kernels: the shares are an attribution, not a second timing.
"""

import argparse
import cProfile
import importlib
import json
import pstats
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_record import RESULTS_DIR, describe_machine, write_result

from interp.runtime import set_threads

# category -> the functions (file suffix, name) whose cumulative time is that category; none calls another
CATEGORIES: dict[str, tuple[tuple[str, str], ...]] = {
    "training steps": (("interp/training.py", "_optimizer_step"),),
    "training data": (("interp/prefetch.py", "batches"),),
    "evaluation during training": (("interp/training.py", "__call__"),),
    "probes": (("interp/probing.py", "probe_layers"),),
    "pruning": (("interp/audit_evidence.py", "_pruning"), ("analyses/pcfg/analysis.py", "_pruning")),
    "patching": (("interp/patching.py", "patch_across_models"),),
    "diffing": (("interp/diffing.py", "attention_diff"), ("interp/diffing.py", "weight_diff")),
    "checkpoints": (
        ("interp/checkpoints.py", "load_checkpoint"),
        ("interp/checkpoints.py", "save_checkpoint"),
        ("interp/training.py", "save_resume_state"),
    ),
}
EVALUATE = ("interp/evaluation.py", "evaluate")
# evaluate() called from these files is already inside a category above
EVALUATE_COUNTED = ("interp/training.py", "interp/pruning.py")
FINAL = "final and audit evaluations"


def _matches(func: tuple[str, int, str], where: tuple[str, str]) -> bool:
    return func[0].endswith(where[0]) and func[2] == where[1]


def _split(stats: pstats.Stats, total: float) -> dict[str, float]:
    """Seconds per category of one profiled job (``other``: the rest of ``total``)."""
    table = stats.stats  # type: ignore[attr-defined]  # {func: (cc, nc, tt, ct, callers)}
    out = {
        name: sum(ct for func, (_, _, _, ct, _) in table.items() if any(_matches(func, w) for w in where))
        for name, where in CATEGORIES.items()
    }
    out[FINAL] = sum(
        caller_ct
        for func, (_, _, _, _, callers) in table.items()
        if _matches(func, EVALUATE)
        for caller, (_, _, _, caller_ct) in callers.items()
        if not caller[0].endswith(EVALUATE_COUNTED)
    )
    out["other"] = max(0.0, total - sum(out.values()))
    return out


def _rebase(value: Any, old: str, new: str) -> Any:
    """``value`` with paths under the study's directory as the study named it moved under ``new``."""
    if isinstance(value, str) and value.startswith(old):
        return new + value[len(old) :]
    if isinstance(value, dict):
        return {k: _rebase(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [_rebase(v, old, new) for v in value]
    return value


def _done_records(root: Path) -> list[dict]:
    records = [json.loads(p.read_text()) for p in sorted(root.glob("runs/*/*/DONE"))]
    if not records:
        raise SystemExit(
            f"no finished jobs under {root}/runs; run `ftmech reproduce pcfg --out {root}` first"
        )
    return records


def _kind(record: dict) -> str:
    name = record["fn"].split(":")[1]
    return f"{name} ({record['steps']} steps)" if record.get("steps") else name


def profile_job(record: dict, root: Path, scratch: Path) -> tuple[float, dict[str, float]]:
    """Re-run one finished job under cProfile into ``scratch``: its seconds and their split."""
    module, name = record["fn"].split(":")
    fn = getattr(importlib.import_module(module), name)
    old = record["out_dir"][: -len(record["key"])]
    kwargs = _rebase(record["kwargs"], old, f"{root}/runs/")
    profiler = cProfile.Profile()
    start = time.perf_counter()
    profiler.runcall(fn, out_dir=scratch, **kwargs)
    total = time.perf_counter() - start
    return total, _split(pstats.Stats(profiler), total)


def main(argv: list[str] | None = None) -> Path:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run", help="a finished PCFG study's --out directory")
    p.add_argument("--note", default="", help="recorded with the machine (e.g. what else was running)")
    p.add_argument("--out-dir", default=str(RESULTS_DIR), help="where the JSON goes")
    args = p.parse_args(argv)
    set_threads(1)
    root = Path(args.run)
    machine = describe_machine(threads=1, device="cpu", note=args.note)
    kinds: dict[str, list[dict]] = {}
    for record in _done_records(root):
        kinds.setdefault(_kind(record), []).append(record)
    per_kind, whole = {}, dict.fromkeys([*CATEGORIES, FINAL, "other"], 0.0)
    for kind, records in sorted(kinds.items()):
        median = statistics.median_low(r["wall_s"] for r in records)
        chosen = next(r for r in records if r["wall_s"] == median)
        with tempfile.TemporaryDirectory() as scratch:
            seconds, split = profile_job(chosen, root, Path(scratch) / "job")
        measured = sum(r["wall_s"] for r in records)
        per_kind[kind] = {
            "jobs": len(records),
            "measured_cpu_s": measured,
            "profiled_job": chosen["key"],
            "profiled_s": seconds,
            "profiled_split_s": split,
        }
        for category, s in split.items():
            whole[category] += measured * s / seconds
    total = sum(whole.values())
    record = {
        "bench": "profile_pcfg_jobs",
        "machine": machine,
        "run": str(root),
        "kinds": per_kind,
        "study": {
            "measured_cpu_s": total,
            "cpu_s": whole,
            "percent": {k: 100 * v / total for k, v in whole.items()},
        },
    }
    return write_result("profile_pcfg_jobs", record, Path(args.out_dir))


if __name__ == "__main__":
    main()
