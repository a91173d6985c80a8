"""The PCFG study end to end on the tiny preset: results, report, and a re-run that reuses every job."""

import dataclasses
import json
from pathlib import Path

import pytest

from analyses.cli import main as cli_main
from analyses.pcfg.cli import main
from analyses.pcfg.config import DEVIATIONS, PCFGStudyConfig
from analyses.pcfg.jobs import plan_study
from interp.errors import ConfigError
from interp.reports import read_report_data
from procedural_tasks.pcfg_protocols import study_preset
from tests.conftest import tiny_pcfg_study_file


def test_tiny_study_runs_reports_and_resumes(tmp_path) -> None:
    out = tmp_path / "study"
    argv = ["--config", tiny_pcfg_study_file(tmp_path), "--out", str(out), "--workers", "2", "--no-progress"]
    summary = main(argv)
    statuses = {j["status"] for j in summary["jobs"]}
    assert (
        statuses == {"ok"} and len(summary["jobs"]) == 8
    )  # 2 pretrain, 1 FT, 3 reverse, probes, 1 model analysis
    results = json.loads((out / "results.json").read_text())
    assert {"pretrain", "finetune", "revival", "analysis", "findings"} <= set(results)
    row = results["finetune"][0]
    plain = {"count_a@cte0", "count_a@cte1", "count_b@cte0", "count_b@cte1"}
    assert set(row["final"]) == plain | {"count_a@cte0strict", "count_b@cte0strict"}
    assert all(
        f["outcome"] in {"held", "did not hold", "inconclusive", "not testable"} for f in results["findings"]
    )
    control = results["revival"]["curves"]["Scr.+FT"]["steps"][-1]
    factor = results["config"]["control_reverse_factor"]
    assert (
        factor > 1 and control == factor * results["revival"]["curves"]["FT(low, eta_M, C_Tr=1)"]["steps"][-1]
    )
    assert set(results["revival"]["curves"]) == {"FT(low, eta_M, C_Tr=1)", "Scr.+FT", "Scr."}
    assert read_report_data(out / "report.html")["data"]["config"]["preset"] == "tiny"
    pretrain_s = sum(j["wall_s"] for j in results["jobs"] if j["key"].startswith("pretrain/"))
    steps = 2 * study_preset("tiny").pretrain_steps  # the low prior's and the Scr.+FT control's
    assert results["pretrain_ms_per_step"] == pytest.approx(1000 * pretrain_s / steps)
    assert "ms per step, evaluations included" in (out / "report.html").read_text()
    # a repeated command, or another data worker count (the same run), returns the recorded results
    assert main(argv) == results and main([*argv, "--data-workers", "1"]) == results
    # an unfinished run continues: its finished jobs are reused, not refused or redone
    marker = out / "ftmech_run.json"
    marker.write_text(marker.read_text().replace('"done"', '"running"'))
    again = main(argv)
    assert {j["status"] for j in again["jobs"]} == {"cached"}
    (out / "report.html").unlink()
    assert cli_main(["report", str(out)]) == 0 and (out / "report.html").is_file()


def test_plan_keys_are_content_addressed(tmp_path) -> None:
    config = PCFGStudyConfig(preset="tiny", seeds=(0, 1), device="cpu")
    a, b = plan_study(config, tmp_path), plan_study(config, tmp_path)
    assert [j.key for j in a.jobs] == [j.key for j in b.jobs]
    assert len({j.key for j in a.jobs}) == len(a.jobs)
    assert a.pretrain[0, "low"] != a.pretrain[1, "low"]
    # data workers never change a batch, so they ride in Job.runtime and leave every directory unchanged;
    # bf16 rounding can change a result, so precision is part of the identity
    workers = plan_study(dataclasses.replace(config, data_workers=2), tmp_path)
    assert [j.key for j in workers.jobs] == [j.key for j in a.jobs]
    trained = [j for j in workers.jobs if not j.key.startswith("analysis/")]
    assert trained and all(j.runtime == {"data_workers": 2} for j in trained)
    bf16 = plan_study(dataclasses.replace(config, precision="bf16"), tmp_path)
    assert bf16.pretrain[0, "low"] != a.pretrain[0, "low"]


def test_study_config_validation() -> None:
    with pytest.raises(ConfigError, match="not in priors"):
        PCFGStudyConfig(priors=("low",), finetune_grid=(("medium", "M", 1.0),), reverse_from=())
    with pytest.raises(ConfigError, match="not in finetune_grid"):
        PCFGStudyConfig(reverse_from=(("low", "S", 0.0),))
    with pytest.raises(ConfigError, match="not defined in the main_text labelling|not in the main_text"):
        PCFGStudyConfig(finetune_grid=(("low", "L", 1.0),), reverse_from=())
    full = PCFGStudyConfig.for_grid("full")
    assert "high" in full.priors and {c for _, _, c in full.finetune_grid} == {0, 0.5, 0.8, 1}
    with pytest.raises(ConfigError, match="unknown grid"):
        PCFGStudyConfig.for_grid("huge")


def test_the_readme_shows_every_pcfg_deviation() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for study, ours, why in DEVIATIONS:
        assert f"| {study} | {ours} | {why} |" in readme
