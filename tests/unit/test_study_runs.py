"""Study runs (``interp.study_runs``) and their plans (``interp.sweep_plan``) on tiny deterministic jobs, and
the checks a sweep makes before it starts (Ray addresses)."""

import argparse
import dataclasses
import json
import socket
from pathlib import Path

import pytest

from interp.arguments import ArgParser, ray_address
from interp.errors import ConfigError
from interp.study_runs import StudySweep, SweepOptions, run_study_sweep, study_flags
from interp.sweep_plan import plan_sweep
from interp.sweep_workers import check_ray_address
from interp.sweeps import DONE, Job, run_dir
from tests.unit.test_sweeps import _job


def test_ray_addresses_are_checked_before_anything_runs(monkeypatch):
    for good in ("auto", "127.0.0.1:6379", "head-node:6379", "ray://head:10001", "[::1]:6379"):
        assert ray_address(good) == good
    for bad in ("local", "head", "head:", ":6379", "head:0", "head:65536", "ray://head", "head:port"):
        with pytest.raises(argparse.ArgumentTypeError, match="auto, HOST:PORT or ray://HOST:PORT"):
            ray_address(bad)
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        for listening in (f"127.0.0.1:{port}", f"ray://127.0.0.1:{port}", "auto", None):
            check_ray_address(listening)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with pytest.raises(ConfigError, match=f"nothing answers at the Ray address 127.0.0.1:{port}"):
        check_ray_address(f"127.0.0.1:{port}")  # the server is closed now
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{port}")
    with pytest.raises(ConfigError, match=f"nothing answers at the Ray address 127.0.0.1:{port}"):
        check_ray_address(None)
    monkeypatch.setenv("RAY_ADDRESS", "head")
    with pytest.raises(ConfigError, match="the Ray address 'head' is not auto, HOST:PORT or ray://HOST:PORT"):
        check_ray_address(None)


def _planned_jobs(root: Path) -> list[Job]:
    """Three independent jobs of 1000 steps, one of 500 after them, and one without a step count."""
    jobs = [Job(key=f"train/{k}", fn="m:f", out_dir=root / k, steps=1000) for k in "abc"]
    deps = tuple(j.key for j in jobs)
    return [
        *jobs,
        Job(key="tune/d", fn="m:f", out_dir=root / "d", deps=deps, steps=500),
        Job(key="analysis/e", fn="m:f", out_dir=root / "e", deps=("tune/d",)),
    ]


def test_the_plan_is_the_list_schedule_of_steps_times_ms_per_step(tmp_path):
    jobs = _planned_jobs(tmp_path)
    two = plan_sweep(jobs, slots=2, ms_per_step=10)  # a job of 1000 steps takes 10 s
    assert [(s.stage, s.jobs, s.steps, s.step_counts) for s in two.stages] == [
        ("train", 3, 3000, (1000,)),
        ("tune", 1, 500, (500,)),
        ("analysis", 1, 0, ()),
    ]
    assert two.projected_jobs == 4 and two.projected_steps == 3500
    assert two.serial_h * 3600 == pytest.approx(35)
    assert two.wall_h * 3600 == pytest.approx(25)  # a, b; then c; then d
    assert two.critical_path_h * 3600 == pytest.approx(15)
    assert plan_sweep(jobs, slots=3, ms_per_step=10).wall_h * 3600 == pytest.approx(15)
    text = two.to_text()
    assert "3,500 steps = 0.01 h" in text and "not projected: 1 job(s)" in text
    unmeasured = plan_sweep(jobs, slots=2).to_text()  # nothing ran and no rate given: no 0.00 h projection
    assert "projection: none yet" in unmeasured and "0.00 h" not in unmeasured
    for bad in ({"slots": 0}, {"slots": 1, "ms_per_step": 0.0}, {"slots": 1, "ms_per_step": float("nan")}):
        with pytest.raises(ConfigError):
            plan_sweep(jobs, **bad)


def test_the_plan_reads_each_stages_rate_off_its_finished_jobs(tmp_path):
    jobs = _planned_jobs(tmp_path)
    for job in jobs[:2]:  # a and b finished, in 20 s each: 20 ms per step
        Path(job.out_dir).mkdir()
        (Path(job.out_dir) / DONE).write_text(json.dumps({**job.to_json(), "wall_s": 20.0, "value": None}))
    plan = plan_sweep(jobs, slots=1)
    train = plan.stages[0]
    assert (train.finished, train.measured_steps, train.measured_ms_per_step) == (2, 2000, pytest.approx(20))
    assert plan.projected_jobs == 3  # tune has no finished job, so no rate: it is left out
    assert plan.wall_h * 3600 == pytest.approx(60) and plan.remaining_wall_h * 3600 == pytest.approx(20)


def test_a_planned_study_runs_nothing_and_a_later_run_continues_its_directory(tmp_path, capsys):
    out = tmp_path / "study"
    points = [{"seed": s, "scale": 1.0} for s in (0, 1)]

    def plan() -> list[Job]:
        return [
            _job(f"point/{p['seed']}", "write_point", run_dir(out / "runs", "point", p), **p) for p in points
        ]

    def sweep() -> StudySweep:
        return StudySweep(
            "toy",
            {"points": points},
            plan=plan,
            jobs=lambda jobs: [dataclasses.replace(j, steps=100) for j in jobs],
            summarise=lambda jobs, results, wall: {"values": [r.value["value"] for r in results]},
            report=lambda summary, path: path.write_text("report"),
        )

    args = ArgParser()
    study_flags(args, default_out=str(out))
    options = SweepOptions.from_args(
        args.parse_args(["--plan", "--ms-per-step", "5", "--gpus-per-job", "0.5"])
    )
    with pytest.raises(SystemExit) as stop:
        run_study_sweep(sweep(), out, options)
    assert stop.value.code == 0
    assert "200 steps = 0.00 h" in capsys.readouterr().out
    assert json.loads((out / "plan.json").read_text())["slots"] == 2  # planned for one GPU, 2 jobs on it
    assert not list(out.rglob(DONE)) and not (out / "results.json").exists()
    summary = run_study_sweep(sweep(), out, SweepOptions(workers=1, progress=False))
    assert len(summary["values"]) == 2 and json.loads((out / "sweep.json").read_text())["workers"] == 1
    with pytest.raises(ConfigError, match="--executor ray"):
        SweepOptions(ray_address="127.0.0.1:1")
    with pytest.raises(ConfigError, match="--plan"):
        SweepOptions(ms_per_step=5.0)


def test_a_study_that_keeps_its_failures_records_them_and_still_fails(tmp_path):
    out = tmp_path / "study"

    def plan() -> list[Job]:
        return [
            _job("good", "write_point", out / "good", seed=0, scale=1.0),
            _job("bad", "fail", out / "bad", message="boom"),
        ]

    sweep = StudySweep(
        "toy",
        {"n": 2},
        plan=plan,
        jobs=lambda jobs: jobs,
        summarise=lambda jobs, results, wall: {"failed": [r.key for r in results if not r.ok]},
        report=lambda summary, path: path.write_text("report"),
        keep_failures=True,
    )
    for _ in range(2):  # the next run retries the failed job, and fails again
        with pytest.raises(ConfigError, match="1 job\\(s\\) failed, e.g. bad: ValueError: boom"):
            run_study_sweep(sweep, out, SweepOptions(workers=1, progress=False))
        assert json.loads((out / "results.json").read_text()) == {"failed": ["bad"]}
        assert (out / "report.html").read_text() == "report"
        assert json.loads((out / "ftmech_run.json").read_text())["status"] == "running"
