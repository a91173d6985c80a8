"""Sweeps: grid order, content-addressed run directories, and run_jobs on tiny deterministic jobs.

The job functions below are top-level in this module, so worker processes import them by
``f"{__name__}:name"`` (the spawned workers get this process's sys.path).
"""

import dataclasses
import itertools
import json
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from interp import sweep_workers
from interp.config import to_dict
from interp.errors import ConfigError
from interp.sweep_workers import ERROR_LOG, jobs_per_gpu, visible_gpus, worker_groups
from interp.sweeps import (
    DONE,
    JOB_JSON,
    RUNNING,
    Job,
    Planner,
    critical_path,
    expand_grid,
    raise_failures,
    run_dir,
    run_jobs,
)


@dataclass(frozen=True, kw_only=True)
class PointConfig:
    seed: int
    lr: float
    tags: tuple[str, ...] = ()


def write_point(*, out_dir: Path, seed: int, scale: float) -> dict:
    """Deterministic in its kwargs; counts its own runs in runs.txt so tests can see re-runs."""
    import numpy as np
    import torch

    with open(out_dir / "runs.txt", "a") as handle:
        handle.write("run\n")
    value = float(np.random.default_rng(seed).normal(size=100).sum() * scale)
    (out_dir / "result.json").write_text(json.dumps({"seed": seed, "value": value}))
    return {"value": value, "threads": torch.get_num_threads()}


def sum_points(*, out_dir: Path, inputs: list[str]) -> float:
    """Needs its dependencies' files: fails if it runs before they are written."""
    total = sum(json.loads((Path(p) / "result.json").read_text())["value"] for p in inputs)
    (out_dir / "sum.json").write_text(json.dumps(total))
    return total


def fail(*, out_dir: Path, message: str) -> None:
    raise ValueError(message)


def die(*, out_dir: Path) -> None:
    os._exit(3)  # a worker killed mid-job (as by the OOM killer)


def die_once(*, out_dir: Path) -> str:
    """Killed (SIGKILL) mid-job on its first run, after writing a partial file; finishes on the next."""
    if not (out_dir / "partial.txt").exists():
        (out_dir / "partial.txt").write_text("half")
        os.kill(os.getpid(), signal.SIGKILL)
    return "finished"


def echo_workers(*, out_dir: Path, seed: int, workers: int = 0) -> int:
    return workers


def stamp(*, out_dir: Path) -> int:
    return time.monotonic_ns()


def _job(key: str, fn: str, out_dir: Path, deps: tuple[str, ...] = (), **kwargs) -> Job:
    return Job(key=key, fn=f"{__name__}:{fn}", out_dir=out_dir, kwargs=kwargs, deps=deps)


def _runs(out_dir: Path) -> int:
    path = Path(out_dir) / "runs.txt"
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_expand_grid_is_the_cartesian_product_with_the_first_axis_slowest():
    grid = expand_grid({"lr_level": ["M", "S"], "c_tr": [0.0, 0.5, 1.0]})
    assert grid == [
        {"lr_level": "M", "c_tr": 0.0},
        {"lr_level": "M", "c_tr": 0.5},
        {"lr_level": "M", "c_tr": 1.0},
        {"lr_level": "S", "c_tr": 0.0},
        {"lr_level": "S", "c_tr": 0.5},
        {"lr_level": "S", "c_tr": 1.0},
    ]
    assert expand_grid({}) == [{}]
    assert expand_grid({"seed": range(3)}) == [{"seed": 0}, {"seed": 1}, {"seed": 2}]


@given(
    st.dictionaries(
        st.text(min_size=1, max_size=5), st.lists(st.integers(), min_size=1, max_size=4), max_size=4
    )
)
def test_expand_grid_covers_every_combination_once(axes):
    grid = expand_grid(axes)
    assert len(grid) == int(np.prod([len(v) for v in axes.values()]))
    assert all(list(point) == list(axes) for point in grid)
    assert sorted(map(repr, (tuple(p.values()) for p in grid))) == sorted(
        map(repr, itertools.product(*axes.values()))
    )


@pytest.mark.parametrize("axes", [{"lr_level": "MS"}, {"seed": []}, {"seed": 3}])
def test_expand_grid_rejects_strings_empty_and_scalar_axes(axes):
    with pytest.raises(ConfigError, match="grid axis"):
        expand_grid(axes)


def test_run_dir_is_stable_for_equal_configs_and_distinct_otherwise(tmp_path):
    a = run_dir(tmp_path, "pretrain", PointConfig(seed=0, lr=1e-3, tags=("x",)))
    again = run_dir(tmp_path, "pretrain", PointConfig(seed=0, lr=1e-3, tags=("x",)))
    assert a == again and a.parent == tmp_path / "pretrain" and a.is_dir()
    assert run_dir(tmp_path, "pretrain", PointConfig(seed=1, lr=1e-3, tags=("x",))) != a
    assert run_dir(tmp_path, "pretrain", PointConfig(seed=0, lr=1e-4, tags=("x",))) != a
    assert run_dir(tmp_path, "finetune", PointConfig(seed=0, lr=1e-3, tags=("x",))).name == a.name
    # A config and its dict share a directory: one hashing rule.
    assert run_dir(tmp_path, "pretrain", to_dict(PointConfig(seed=0, lr=1e-3, tags=("x",)))) == a
    record = json.loads((a / JOB_JSON).read_text())
    assert record["config"] == {"seed": 0, "lr": 1e-3, "tags": ["x"]}
    assert record["stage"] == "pretrain" and record["key"] == a.name
    assert record["config_class"].endswith("PointConfig")


def test_run_dir_rejects_a_bad_stage_and_an_edited_job_json(tmp_path):
    with pytest.raises(ConfigError, match="stage"):
        run_dir(tmp_path, "a/b", PointConfig(seed=0, lr=0.1))
    path = run_dir(tmp_path, "pretrain", PointConfig(seed=0, lr=0.1))
    record = json.loads((path / JOB_JSON).read_text())
    record["config"]["lr"] = 0.2
    (path / JOB_JSON).write_text(json.dumps(record))
    with pytest.raises(ConfigError, match="different config"):
        run_dir(tmp_path, "pretrain", PointConfig(seed=0, lr=0.1))


def _plan_points(root: Path) -> Planner:
    planner = Planner(root)
    points = [planner.add("point", f"{__name__}:write_point", {"seed": i, "scale": 1.0}) for i in range(2)]
    planner.add("sum", f"{__name__}:sum_points", {"inputs": [str(d) for d in points]}, points)
    return planner


def test_planned_job_directories_do_not_depend_on_how_or_where_the_root_is(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "link").symlink_to(tmp_path, target_is_directory=True)
    spellings = (Path("runs/x"), Path("./runs/../runs/x"), tmp_path / "runs/x", tmp_path / "link/runs/x")
    keys = [[job.key for job in _plan_points(root).jobs] for root in (*spellings, tmp_path / "elsewhere")]
    assert all(k == keys[0] for k in keys) and len(set(keys[0])) == 3

    # An unfinished sweep moved to another directory finds its finished jobs there and runs only the rest.
    first = run_jobs(_plan_points(tmp_path / "a").jobs, progress=False)
    total = next(job.out_dir for job in _plan_points(tmp_path / "a").jobs if job.key.startswith("sum/"))
    (Path(total) / DONE).unlink()
    (tmp_path / "a").rename(tmp_path / "b")
    moved = run_jobs(_plan_points(tmp_path / "b").jobs, progress=False)
    assert [r.status for r in moved] == ["cached", "cached", "ok"]
    assert moved[2].value == first[2].value and str(tmp_path / "b") in moved[2].out_dir
    assert {_runs(d) for d in (tmp_path / "b" / "point").iterdir()} == {1}


def test_job_and_sweep_validation(tmp_path):
    with pytest.raises(ConfigError, match="module:function"):
        Job(key="a", fn="not a function", out_dir=tmp_path / "a")
    with pytest.raises(ConfigError, match="JSON-native"):
        Job(key="a", fn="m:f", out_dir=tmp_path / "a", kwargs={"path": tmp_path})
    with pytest.raises(ConfigError, match="itself"):
        Job(key="a", fn="m:f", out_dir=tmp_path / "a", deps=("a",))
    a = Job(key="a", fn="m:f", out_dir=tmp_path / "a", deps=("b",))
    b = Job(key="b", fn="m:f", out_dir=tmp_path / "b", deps=("a",))
    with pytest.raises(ConfigError, match="cycle"):
        run_jobs([a, b], progress=False)
    with pytest.raises(ConfigError, match="not in the sweep"):
        run_jobs([a], progress=False)
    with pytest.raises(ConfigError, match="twice"):
        run_jobs([b, Job(key="b", fn="m:f", out_dir=tmp_path / "c")], progress=False)
    with pytest.raises(ConfigError, match="share out_dir"):
        run_jobs([Job(key="x", fn="m:f", out_dir=tmp_path), Job(key="y", fn="m:f", out_dir=tmp_path)])
    with pytest.raises(ConfigError, match="executor"):
        run_jobs([], executor="slurm")


def test_run_jobs_respects_dependencies_writes_done_and_skips_finished_jobs(tmp_path):
    dirs = {k: tmp_path / k for k in ("p0", "p1", "p2", "total")}
    jobs = [
        _job(
            "total",
            "sum_points",
            dirs["total"],
            deps=("p0", "p1", "p2"),
            inputs=[str(dirs[f"p{i}"]) for i in range(3)],
        ),
        *[_job(f"p{i}", "write_point", dirs[f"p{i}"], seed=i, scale=2.0) for i in range(3)],
    ]
    results = run_jobs(jobs, workers=2, threads_per_worker=2, progress=False)
    assert [r.key for r in results] == ["total", "p0", "p1", "p2"]
    assert [r.status for r in results] == ["ok"] * 4, [r.error for r in results]
    points = [json.loads((dirs[f"p{i}"] / "result.json").read_text())["value"] for i in range(3)]
    assert results[0].value == pytest.approx(sum(points))
    assert all(r.value["threads"] == 2 for r in results[1:])
    assert all((d / DONE).is_file() for d in dirs.values())
    assert all(r.wall_s is not None and r.wall_s >= 0 for r in results)

    # Kill simulation: p1 never finished, so only p1 runs again; the others are read back from DONE.
    (dirs["p1"] / DONE).unlink()
    again = run_jobs(jobs, workers=2, progress=False)
    assert {r.key: r.status for r in again} == {"total": "cached", "p0": "cached", "p1": "ok", "p2": "cached"}
    assert [_runs(dirs[f"p{i}"]) for i in range(3)] == [1, 2, 1]
    assert [again[i].value for i in (0, 1, 3)] == [results[i].value for i in (0, 1, 3)]
    assert again[2].value["value"] == results[2].value["value"]

    # A DONE marker left by other kwargs in the same directory is an error, not a silent skip.
    with pytest.raises(ConfigError, match="different job"):
        run_jobs([_job("p0", "write_point", dirs["p0"], seed=5, scale=2.0)], progress=False)


def test_runtime_arguments_reach_the_job_but_not_its_identity(tmp_path):
    job = Job(key="j", fn=f"{__name__}:echo_workers", out_dir=tmp_path / "j", kwargs={"seed": 1})
    first = run_jobs([dataclasses.replace(job, runtime={"workers": 3})], progress=False)[0]
    assert (first.status, first.value) == ("ok", 3)
    again = run_jobs([dataclasses.replace(job, runtime={"workers": 5})], progress=False)[0]
    assert (again.status, again.value) == ("cached", 3)  # the finished job is reused, not rerun
    with pytest.raises(ConfigError, match="runtime"):
        dataclasses.replace(job, runtime={"seed": 2})  # a runtime argument cannot shadow a kwarg


def test_the_longest_chain_of_remaining_steps_starts_first(tmp_path):
    jobs = [
        Job(key="short", fn=f"{__name__}:stamp", out_dir=tmp_path / "s", steps=10),
        Job(key="head", fn=f"{__name__}:stamp", out_dir=tmp_path / "h", steps=10),
        Job(key="tail", fn=f"{__name__}:stamp", out_dir=tmp_path / "t", deps=("head",), steps=100),
        Job(key="unknown", fn=f"{__name__}:stamp", out_dir=tmp_path / "u"),
    ]
    # a job without steps counts as the longest (100); "head" leads a chain of 110
    assert critical_path(jobs) == {"short": 10, "head": 110, "tail": 100, "unknown": 100}
    assert critical_path(jobs, {"head": 1.5, "tail": 2.0})["head"] == 3.5  # given costs; absent ones are 0
    loop = [dataclasses.replace(jobs[1], deps=("tail",)), jobs[2]]
    with pytest.raises(ConfigError, match="cycle"):
        critical_path(loop)
    results = run_jobs(jobs, workers=1, progress=False)
    started = sorted(results, key=lambda r: r.value)
    assert [r.key for r in started] == ["head", "tail", "unknown", "short"]


def test_a_failing_job_skips_its_dependents_and_the_rest_still_run(tmp_path):
    jobs = [
        _job("bad", "fail", tmp_path / "bad", message="planted failure"),
        _job("after_bad", "write_point", tmp_path / "after_bad", deps=("bad",), seed=0, scale=1.0),
        _job("after_after", "write_point", tmp_path / "after_after", deps=("after_bad",), seed=0, scale=1.0),
        _job("fine", "write_point", tmp_path / "fine", seed=1, scale=1.0),
    ]
    results = {r.key: r for r in run_jobs(jobs, workers=2, progress=False)}
    assert results["bad"].status == "failed"
    assert results["bad"].error == "ValueError: planted failure"
    assert "planted failure" in results["bad"].traceback and not (tmp_path / "bad" / DONE).exists()
    assert results["after_bad"].status == "skipped" and "'bad' failed" in results["after_bad"].error
    assert (
        results["after_after"].status == "skipped" and "'after_bad' skipped" in results["after_after"].error
    )
    assert _runs(tmp_path / "after_bad") == 0
    assert results["fine"].status == "ok" and (tmp_path / "fine" / DONE).is_file()


def test_a_worker_that_dies_fails_its_job_and_the_sweep_goes_on(tmp_path):
    jobs = [
        _job("dies", "die", tmp_path / "dies"),
        _job("next", "write_point", tmp_path / "next", seed=0, scale=1.0),
    ]
    results = {r.key: r for r in run_jobs(jobs, workers=1, progress=False)}
    assert results["dies"].status == "failed" and "worker process died" in results["dies"].error
    assert results["next"].status == "ok"


def test_a_killed_job_is_rerun_alone_on_the_next_invocation_and_the_log_says_so(tmp_path, capfd):
    jobs = [
        _job("killed", "die_once", tmp_path / "killed"),
        _job("other", "write_point", tmp_path / "other", seed=0, scale=1.0),
    ]
    first = {r.key: r for r in run_jobs(jobs, workers=1, progress=False)}
    assert first["killed"].status == "failed" and first["other"].status == "ok"
    assert (tmp_path / "killed" / RUNNING).is_file() and not (tmp_path / "killed" / DONE).exists()
    capfd.readouterr()
    again = {r.key: r for r in run_jobs(jobs, workers=1, progress=True)}
    err = capfd.readouterr().err
    assert again["killed"].status == "ok" and again["killed"].value == "finished"
    assert again["other"].status == "cached" and _runs(tmp_path / "other") == 1
    assert "re-running killed: its earlier run stopped mid-job" in err
    assert "re-running other" not in err and not (tmp_path / "killed" / RUNNING).exists()


def test_a_raising_job_is_reported_with_its_log_and_the_others_finish(tmp_path, capfd):
    jobs = [
        _job("bad", "fail", tmp_path / "bad", message="planted failure"),
        _job("fine", "write_point", tmp_path / "fine", seed=1, scale=1.0),
        _job("fine2", "write_point", tmp_path / "fine2", seed=2, scale=1.0),
    ]
    results = run_jobs(jobs, workers=2, progress=True)
    log = tmp_path / "bad" / ERROR_LOG
    bad = results[0]
    assert bad.log == str(log) and "ValueError: planted failure" in log.read_text()
    assert [r.status for r in results[1:]] == ["ok", "ok"]
    assert f"(traceback in {log})" in capfd.readouterr().err
    with pytest.raises(
        ConfigError, match=f"1 job\\(s\\) failed, e.g. bad: ValueError: planted failure; see {log}"
    ):
        raise_failures(results)


def test_ray_executor_gives_the_same_files_as_the_local_pool(tmp_path):
    pytest.importorskip("ray")
    outputs = {}
    for executor in ("local", "ray"):
        root = tmp_path / executor
        jobs = [
            _job(f"p{point['seed']}", "write_point", run_dir(root, "point", point), **point)
            for point in expand_grid({"seed": [0, 1], "scale": [0.5]})
        ]
        results = run_jobs(jobs, workers=2, executor=executor, progress=False)
        assert [r.status for r in results] == ["ok", "ok"], [r.error for r in results]
        outputs[executor] = {
            str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("result.json"))
        }
    assert len(outputs["local"]) == 2 and outputs["local"] == outputs["ray"]


def visible_gpu(*, out_dir: Path, seed: int) -> str | None:
    """The GPU list this worker was pinned to."""
    return os.environ.get("CUDA_VISIBLE_DEVICES")


def test_gpu_fractions_pack_floor_one_over_f_jobs_per_gpu_and_are_validated(monkeypatch):
    assert [jobs_per_gpu(f) for f in (1, 0.5, 0.3, 0.25, 0.1)] == [1, 2, 3, 4, 10]
    assert worker_groups(2, 0.25, ["3", "5"]) == [("3", 4), ("5", 4)]
    assert worker_groups(2, 0.25, []) == [(None, 2)]  # no GPU visible: the CPU workers
    assert worker_groups(2, None, ["0"]) == [(None, 2)]
    for env, gpus in (("2,3", ["2", "3"]), ("-1", []), ("", []), ("GPU-ab12", ["GPU-ab12"])):
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", env)
        assert visible_gpus() == gpus
    for bad in (0, -0.5, 1.5, True, "0.5"):
        with pytest.raises(ConfigError, match="gpus_per_job"):
            run_jobs([], gpus_per_job=bad)
    with pytest.raises(ConfigError, match="executor 'ray'"):
        run_jobs([], ray_address="127.0.0.1:6379")


def worker_state(*, out_dir: Path, name: str) -> dict:
    """What a worker process holds when its job starts: an environment variable and its torch threads."""
    import sys

    import torch

    return {
        "env": os.environ.get(name),
        "threads": torch.get_num_threads(),
        "models": "interp.models" in sys.modules,
    }


def test_local_workers_fork_from_a_preloaded_server_and_see_the_pools_environment(tmp_path, monkeypatch):
    sweep_workers.start_worker_server()  # the server's environment predates the variable below
    monkeypatch.setenv("FTMECH_TEST_WORKER_ENV", "set after the server started")
    results = run_jobs(
        [_job("w", "worker_state", tmp_path / "w", name="FTMECH_TEST_WORKER_ENV")], progress=False
    )
    assert results[0].status == "ok", results[0].error
    state = results[0].value
    assert state["env"] == "set after the server started" and state["threads"] == 1
    if sweep_workers.worker_context().get_start_method() == "forkserver":
        assert state["models"]  # preloaded: the worker did not import torch and TransformerLens itself


def test_packed_local_workers_are_pinned_to_their_gpu_and_give_the_same_files(tmp_path, monkeypatch):
    monkeypatch.setattr(sweep_workers, "visible_gpus", lambda: ["3", "5"])
    jobs = [_job(f"g{s}", "visible_gpu", tmp_path / f"g{s}", seed=s) for s in (0, 1)]
    jobs += [_job(f"p{s}", "write_point", tmp_path / f"p{s}", seed=s, scale=1.0) for s in (0, 1)]
    results = run_jobs(jobs, workers=1, gpus_per_job=1.0, progress=False)
    assert all(r.status == "ok" for r in results), [r.error for r in results]
    assert [r.value for r in results[:2]] == ["3", "5"]  # one pool per GPU, the first job on each
    for s in (0, 1):
        (tmp_path / "here").mkdir(exist_ok=True)
        write_point(out_dir=tmp_path / "here", seed=s, scale=1.0)  # the same job in this process
        assert (tmp_path / f"p{s}" / "result.json").read_text() == (
            tmp_path / "here" / "result.json"
        ).read_text()
