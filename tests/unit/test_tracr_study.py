"""The Tracr study slice: Table 3 of a tiny study in results.json and its report, the deviations table,
presets, and the command line (``ftmech tracr finetune|analyse|compile`` through ``add_commands``;
``ftmech reproduce tracr`` through ``main``).
"""

import json
from pathlib import Path

import numpy as np
import pytest

from analyses.cli import main as cli_main
from analyses.tracr.cli import add_commands, main
from analyses.tracr.config import PRESETS, TracrStudyConfig, deviations_markdown
from analyses.tracr.jobs import build_jobs, job_finetune
from analyses.tracr.report import write_study_report
from analyses.tracr.results import CELLS, summarise
from interp.arguments import ArgParser
from interp.config import to_dict
from interp.errors import ConfigError
from interp.jsonio import read_json, write_json
from interp.reports import read_report_data
from interp.stats import t_interval
from interp.sweeps import JobResult

# --- the Table-3 summary ----------------------------------------------------------------------------------


def test_table3_cells_in_results_json_are_the_runs_final_accuracies(tmp_path):
    config = TracrStudyConfig(
        programs=("counter",),
        lr_levels=("M",),
        c_trs=(1.0,),
        seeds=(0, 1, 2),
        counter_steps=2,
        counter_letters=5,
        eval_n=16,
        reverse_after=(),
        long_steps=None,
        analyse=False,
    )
    jobs = [j for j in build_jobs(config, tmp_path) if j.fn.endswith(":job_finetune")]
    assert len(jobs) == 3  # one cell x 3 seeds
    results, final = [], {}
    for job in jobs:
        value = job_finetune(out_dir=job.out_dir, **job.kwargs)
        results.append(JobResult(key=job.key, status="ok", out_dir=str(job.out_dir), value=value))
        final[job.kwargs["finetune"]["train"]["seed"]] = value["final_accuracy"]
    write_json(tmp_path / "results.json", summarise(config, jobs, results, wall_seconds=1.0, workers=1))
    summary = read_json(tmp_path / "results.json")
    assert summary["study"] == "tracr" and summary["schema_version"] == 2
    [row] = summary["table3"]
    assert (row["program"], row["lr_level"], row["c_tr"]) == ("counter", "M", 1.0)
    assert (row["n_seeds"], row["n_diverged"]) == (3, 0)
    assert row["paper"] == {"o_pt@cte1": 0.3, "o_ft@cte1": 98.3, "o_pt@cte0": 4.2, "o_ft@cte0": 0.2}
    assert [s["seed"] for s in row["per_seed"]] == [0, 1, 2]
    for cell in CELLS:
        per_seed = [100 * final[seed][cell] for seed in (0, 1, 2)]
        assert [s["cells"][cell] for s in row["per_seed"]] == pytest.approx(per_seed)
        assert row["cells"][cell]["mean"] == pytest.approx(float(np.mean(per_seed)))
        low, high = t_interval(per_seed)
        assert (row["cells"][cell]["ci_low"], row["cells"][cell]["ci_high"]) == pytest.approx((low, high))
    assert {f["outcome"] for f in summary["findings"]} <= {
        "held",
        "did not hold",
        "inconclusive",
        "not testable",
    }
    # The report is rebuilt from results.json alone, as `ftmech report DIR` does.
    report = write_study_report(summary, tmp_path / "report.html")
    assert read_report_data(report)["data"]["table3"][0]["n_seeds"] == 3
    html = report.read_text()
    assert "Deviations from the study" in html and "Student-t 95% CI" in html


def test_the_readme_shows_the_deviations_of_the_cpu_preset():
    """Once the README carries the Tracr deviations table, it must be the one DEVIATIONS gives for ``cpu``."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    table = deviations_markdown(to_dict(PRESETS["cpu"]))
    header = table.splitlines()[0]
    if header not in readme:
        pytest.skip("the README has no Tracr deviations table yet")
    start = readme.index(header)
    assert readme[start : start + len(table)] == table


# --- command line ---------------------------------------------------------------------------------------


def _tracr_parser():
    parser = ArgParser(prog="ftmech")
    add_commands(parser.add_subparsers(dest="command", required=True, parser_class=ArgParser))
    return parser


def test_cli_compile_without_tracr_is_a_one_line_config_error():
    import importlib.util

    from interp.errors import ConfigError

    if importlib.util.find_spec("tracr") is not None:
        pytest.skip("tracr is installed here; the missing-extra error cannot be shown")
    args = _tracr_parser().parse_args(["tracr", "compile"])
    with pytest.raises(ConfigError, match=r"pip install 'ftmech\[tracr\]'") as info:
        args.handler(args)
    assert "\n" not in str(info.value)


def _run(parser, argv: list[str]) -> None:
    args = parser.parse_args(argv)
    args.handler(args)


def test_cli_finetune_then_analyse(tmp_path, capsys):
    parser = _tracr_parser()
    out = str(tmp_path / "ft")
    argv = ["tracr", "finetune", "--lr-level", "M", "--c-tr", "1", "--steps", "2", "--n-letters", "5"]
    args = parser.parse_args([*argv, "--eval-n", "8", "--no-progress", "--out", out])
    args.handler(args)
    assert json.loads(capsys.readouterr().out)["status"] == "ok"
    args = parser.parse_args(
        ["tracr", "analyse", out, "--prune-ks", "0,1", "--eval-n", "8", "--score-n", "8"]
    )
    args.handler(args)
    report = json.loads(capsys.readouterr().out)
    assert report["attention_head_layer"] == 1 and report["pruning_ks"] == [0, 1]
    analysis = tmp_path / "ft" / "analysis.json"
    before = analysis.read_bytes()
    args.handler(args)  # the same analysis again: reported as done, nothing rewritten
    assert json.loads(capsys.readouterr().out)["status"] == "done" and analysis.read_bytes() == before
    other = ["tracr", "analyse", out, "--prune-ks", "0,2", "--eval-n", "8", "--score-n", "8"]
    with pytest.raises(ConfigError, match="holds an analysis with other settings.*pass --overwrite"):
        _run(parser, other)
    assert analysis.read_bytes() == before
    _run(parser, [*other, "--overwrite"])
    assert json.loads(analysis.read_text())["pruning"]["ks"] == [0, 2]


def test_presets_are_looked_up_by_name_with_a_one_line_error(tmp_path):
    assert set(PRESETS) == {"cpu", "tiny"}
    with pytest.raises(ConfigError, match="unknown preset 'huge'; use one of cpu, tiny") as info:
        main(["--preset", "huge", "--out", str(tmp_path)])
    assert "\n" not in str(info.value)
    assert not any(tmp_path.iterdir())  # nothing was run or written


@pytest.mark.parametrize("study", ["tracr", "gam", "audit-bench"])
def test_every_study_plan_names_its_stages_and_counts_their_steps(study, tmp_path, capsys):
    """--plan projects each stage's training steps (it gave every Tracr, GAM and audit-bench stage 0 steps)."""
    argv = {
        "tracr": ["reproduce", "tracr", "--preset", "tiny"],
        "gam": ["reproduce", "gam", "--preset", "tiny", "--seeds", "1"],
        "audit-bench": ["audit-bench", "--preset", "tiny", "--seeds", "2"],
    }[study]
    with pytest.raises(SystemExit) as stop:
        cli_main([*argv, "--out", str(tmp_path / "plan"), "--plan", "--ms-per-step", "10"])
    assert stop.value.code == 0
    plan = json.loads((tmp_path / "plan" / "plan.json").read_text())
    stages = {s["stage"]: s["steps"] for s in plan["stages"]}
    trained = {"tracr": ("finetune", "reverse_ft"), "gam": ("lm", "pretrain", "finetune", "reverse")}
    trained["audit-bench"] = ("tracr", "pretrain")
    assert all(stages[name] > 0 for name in trained[study]), stages
    assert plan["projected_steps"] > 0 and "projection: none yet" not in capsys.readouterr().out
