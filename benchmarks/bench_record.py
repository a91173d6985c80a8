"""What every benchmark records beside its numbers: the machine it ran on, and where its JSON goes
(``benchmarks/results/<bench>_<machine>_<date>.json``)."""

import datetime
import itertools
import json
import os
import platform
import re
from pathlib import Path
from typing import Any

import torch

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (the platform's processor string elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (a busy machine slows every figure)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def describe_machine(*, threads: int, device: str, note: str = "") -> dict[str, Any]:
    """The machine, the software and the settings a benchmark's numbers depend on."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    machine = {
        "cpu": cpu_model(),
        "cores_usable": cores,
        "cores_total": os.cpu_count(),
        "device": device,
        "gpu": torch.cuda.get_device_name(device) if device.startswith("cuda") else None,
        "threads": threads,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),  # the SIMD level torch's kernels use
        "cpu_native_bf16": bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()),  # AVX512-BF16/AMX: fast bf16
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_at_start": load_average(),
        "note": note,
    }
    try:
        import transformers

        machine["transformers"] = transformers.__version__
    except ImportError:
        machine["transformers"] = None
    return machine


def machine_slug(machine: dict[str, Any]) -> str:
    """A file-name-safe name of the machine: its GPU, or its CPU model and usable core count."""
    name = machine["gpu"] or f"{machine['cpu']}-{machine['cores_usable']}core"
    name = re.sub(r"\((R|TM)\)|CPU|@.*?GHz|Processor", "", name, flags=re.IGNORECASE)
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def write_result(bench: str, record: dict[str, Any], out_dir: Path = RESULTS_DIR) -> Path:
    """Write ``record`` as ``<out_dir>/<bench>_<machine>_<date>.json`` (``..._<date>-2.json`` and so on when an
    earlier result of that day is there: a result is never overwritten) and print it as one JSON line."""
    stem = f"{bench}_{machine_slug(record['machine'])}_{datetime.date.today().isoformat()}"
    path = Path(out_dir) / f"{stem}.json"
    for n in itertools.count(2):
        if not path.exists():
            break
        path = Path(out_dir) / f"{stem}-{n}.json"
    record = {**record, "machine": {**record["machine"], "load_average_at_end": load_average()}}
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(record, indent=2, allow_nan=False)
    path.write_text(text + "\n")
    print(json.dumps({"written": str(path), **record}, allow_nan=False))
    return path
