"""The benchmarks at tiny sizes: each writes its JSON under the given directory, with the machine described and
every measured number positive and finite, and figures that agree with each other (no timings are asserted)."""

import json
import math
import re
import shutil
from pathlib import Path

import pytest

from analyses.pcfg.cli import main as pcfg_main
from tests.conftest import tiny_pcfg_study_file

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture
def benchmarks(monkeypatch):
    """The benchmark scripts importable as modules (they import their sibling ``bench_record``)."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import bench_gpu_presets
    import bench_training

    return bench_training, bench_gpu_presets


@pytest.fixture
def profile_pcfg_jobs(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import profile_pcfg_jobs

    return profile_pcfg_jobs


def _numbers(value, where: str = ""):
    """Every number in a JSON value, with its path."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _numbers(item, f"{where}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _numbers(item, f"{where}[{i}]")
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        yield where, value


def _check_machine(record: dict, path: Path, bench: str) -> None:
    machine = record["machine"]
    assert machine["cpu"] and machine["cores_usable"] >= 1 and machine["torch"] and machine["threads"] >= 1
    assert re.fullmatch(rf"{bench}_[a-z0-9-]+_\d{{4}}-\d{{2}}-\d{{2}}\.json", path.name), path.name


def test_bench_training_compares_every_model_in_one_json(benchmarks, tmp_path):
    bench_training, _ = benchmarks
    argv = ["--preset", "tiny", "--steps", "2", "--rounds", "2", "--warmup", "1", "--matmul-n", "64"]
    argv += [
        "--matmul-seconds",
        "0.05",
        "--data-seconds",
        "0.05",
        "--note",
        "test",
        "--out-dir",
        str(tmp_path),
    ]
    path = bench_training.main(argv)
    record = json.loads(path.read_text())
    _check_machine(record, path, "bench_training")
    assert record["machine"]["note"] == "test" and record["machine"]["threads"] == 1
    models = record["models"]
    peers = {"transformer_lens", "transformer_lens_stock", "hf_gpt2_sdpa", "hf_gpt2_eager"}
    peers |= {"plain_torch_sdpa"}
    assert set(models) == peers | {"transformer_lens_bf16"}
    assert (models["hf_gpt2_sdpa"]["attention"], models["hf_gpt2_eager"]["attention"]) == ("sdpa", "eager")
    assert {n: m["precision"] for n, m in models.items()} == {n: "fp32" for n in peers} | {
        "transformer_lens_bf16": "bf16 autocast"
    }
    assert isinstance(record["machine"]["cpu_native_bf16"], bool)
    for where, value in _numbers({k: record[k] for k in ("models", "matmul", "pcfg_data", "settings")}):
        assert math.isfinite(value) and value >= 0, where
    assert models["transformer_lens"]["paired_time_vs_transformer_lens"] == 1.0
    assert record["settings"]["loss"] == "sequence"
    answer = json.loads(bench_training.main([*argv, "--loss", "answer"]).read_text())
    assert answer["settings"]["loss"] == "answer" and "answer-token" in answer["settings"]["step"]
    settings, matmul = record["settings"], record["matmul"]["gflop_per_s"]["median"]
    assert settings["gflop_per_step"] > 0 and matmul > 0
    for name, model in models.items():
        step_s = model["ms_per_step"]["median"] / 1000
        assert len(model["ms_per_step"]["rounds"]) == 2 and model["ms_per_step"]["min"] > 0, name
        assert model["tokens_per_s"] * step_s == pytest.approx(settings["tokens_per_step"])
        assert model["gflop_per_s"] * step_s == pytest.approx(settings["gflop_per_step"])
        assert model["pct_of_matmul_rate"] == pytest.approx(100 * model["gflop_per_s"] / matmul)
    assert models["transformer_lens"]["time_vs_transformer_lens"] == 1
    data = record["pcfg_data"]
    assert data["samples_per_s"] > 0 and data["batches"] >= 1
    assert data["batches_per_s"] * data["ms_per_batch"] == pytest.approx(1000)


def test_bench_gpu_presets_breaks_the_step_down_on_a_cpu_smoke_run(benchmarks, tmp_path):
    _, bench_gpu_presets = benchmarks
    path = bench_gpu_presets.main(
        [
            "--device",
            "cpu",
            "--pcfg-preset",
            "tiny",
            "--n-stories",
            "0",
            "--steps",
            "2",
            "--out-dir",
            str(tmp_path),
        ]
    )
    record = json.loads(path.read_text())
    _check_machine(record, path, "bench_gpu_presets")
    pcfg = record["pcfg"]
    parts = pcfg["breakdown"]["ms_per_step"]
    assert set(parts) == {"data", "forward_backward", "optimizer", "evaluation"}
    assert all(math.isfinite(ms) and ms > 0 for ms in parts.values()), parts
    assert pcfg["breakdown"]["total_ms_per_step"] == pytest.approx(sum(parts.values()))
    assert pcfg["pretrain_hours_projected"] > 0 and "tinystories_91m" not in record


def test_a_result_is_never_overwritten(benchmarks, tmp_path):
    import bench_record

    machine = bench_record.describe_machine(threads=1, device="cpu")
    first = bench_record.write_result("bench_x", {"machine": machine, "value": 1}, tmp_path)
    second = bench_record.write_result("bench_x", {"machine": machine, "value": 2}, tmp_path)
    assert second.name == first.name.replace(".json", "-2.json")
    assert json.loads(first.read_text())["value"] == 1 and json.loads(second.read_text())["value"] == 2


def test_profile_splits_every_kind_of_job_of_a_moved_study_and_leaves_it_untouched(
    profile_pcfg_jobs, tmp_path
):
    first = tmp_path / "first"
    pcfg_main(
        ["--config", tiny_pcfg_study_file(tmp_path), "--out", str(first), "--workers", "1", "--no-progress"]
    )
    moved = tmp_path / "moved"
    shutil.move(first, moved)  # the jobs' recorded paths name a directory that is gone
    before = sorted((p, p.stat().st_mtime_ns) for p in moved.rglob("*"))

    path = profile_pcfg_jobs.main([str(moved), "--out-dir", str(tmp_path / "out")])
    record = json.loads(path.read_text())
    _check_machine(record, path, "profile_pcfg_jobs")
    assert sorted((p, p.stat().st_mtime_ns) for p in moved.rglob("*")) == before
    done = [json.loads(p.read_text()) for p in moved.glob("runs/*/*/DONE")]
    kinds = record["kinds"]
    assert set(kinds) == {profile_pcfg_jobs._kind(r) for r in done}
    assert sum(k["jobs"] for k in kinds.values()) == len(done) == 8
    for name, kind in kinds.items():
        split = kind["profiled_split_s"]
        assert all(v >= 0 for v in split.values()), name
        assert sum(split.values()) == pytest.approx(kind["profiled_s"], rel=1e-6), name
    by_fn = {name.split(" ")[0]: kind["profiled_split_s"] for name, kind in kinds.items()}
    assert by_fn["job_pretrain"]["training steps"] > 0 and by_fn["job_pretrain"]["checkpoints"] > 0
    assert by_fn["job_finetune"]["evaluation during training"] > 0
    assert by_fn["job_finetune"]["final and audit evaluations"] > 0
    assert by_fn["job_probes"]["probes"] > 0 and by_fn["job_probes"]["training steps"] == 0
    assert by_fn["job_model_analysis"]["pruning"] > 0 and by_fn["job_model_analysis"]["patching"] > 0
    study = record["study"]
    assert study["measured_cpu_s"] == pytest.approx(sum(r["wall_s"] for r in done))
    assert sum(study["cpu_s"].values()) == pytest.approx(study["measured_cpu_s"])
    assert sum(study["percent"].values()) == pytest.approx(100)
