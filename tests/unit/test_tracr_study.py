"""The Tracr study slice: the Table-3 summary and report of a tiny study, presets, and the command line
(``ftmech tracr finetune|analyse|compile`` through ``add_commands``; ``ftmech reproduce tracr`` through ``main``).
"""

import json

import pytest

from analyses.tracr.cli import add_commands, main
from analyses.tracr.config import PRESETS, TracrStudyConfig
from analyses.tracr.jobs import build_jobs, job_finetune
from analyses.tracr.report import write_study_report
from analyses.tracr.results import summarise
from interp.arguments import ArgParser
from interp.errors import ConfigError
from interp.jsonio import read_json, write_json
from interp.reports import read_report_data
from interp.sweeps import Job, JobResult

# --- the Table-3 summary ----------------------------------------------------------------------------------


def test_table3_summary_layout_from_a_tiny_run(tmp_path):
    config = TracrStudyConfig(
        programs=("counter",),
        lr_levels=("M",),
        c_trs=(1.0,),
        seeds=(0, 1),
        counter_steps=1,
        counter_letters=5,
        eval_n=8,
        reverse_after=(),
        long_steps=None,
        analyse=False,
    )
    jobs = [j for j in build_jobs(config, tmp_path) if j.fn.endswith(":job_finetune")]
    assert len(jobs) == 2  # one cell x 2 seeds
    results = []
    for job in jobs:
        value = job_finetune(out_dir=job.out_dir, **job.kwargs)
        results.append(JobResult(key=job.key, status="ok", out_dir=str(job.out_dir), value=value))
    summary = summarise(config, jobs, results, wall_seconds=1.0, workers=1)
    rows = {(r["program"], r["lr_level"], r["c_tr"]): r for r in summary["table3"]}
    assert set(rows) == {("counter", "M", 1.0)}
    row = rows[("counter", "M", 1.0)]
    assert list(row["cells"]) == ["o_pt@cte1", "o_ft@cte1", "o_pt@cte0", "o_ft@cte0"]
    assert row["n_seeds"] == 2 and row["n_diverged"] == 0
    assert {"mean", "ci_low", "ci_high", "n"} <= set(row["cells"]["o_ft@cte1"])
    assert row["cells"]["o_ft@cte1"]["n"] == 2
    assert row["paper"] == {"o_pt@cte1": 0.3, "o_ft@cte1": 98.3, "o_pt@cte0": 4.2, "o_ft@cte0": 0.2}
    assert isinstance(jobs[0], Job)
    assert summary["study"] == "tracr" and summary["schema_version"] == 1
    # The report is rebuilt from results.json alone, as `ftmech report DIR` does.
    write_json(tmp_path / "results.json", summary)
    report = write_study_report(read_json(tmp_path / "results.json"), tmp_path / "report.html")
    assert read_report_data(report)["data"]["table3"][0]["n_seeds"] == 2


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


def test_presets_are_looked_up_by_name_with_a_one_line_error(tmp_path):
    assert set(PRESETS) == {"cpu", "tiny"}
    with pytest.raises(ConfigError, match="unknown preset 'huge'; use one of cpu, tiny") as info:
        main(["--preset", "huge", "--out", str(tmp_path)])
    assert "\n" not in str(info.value)
    assert not any(tmp_path.iterdir())  # nothing was run or written
