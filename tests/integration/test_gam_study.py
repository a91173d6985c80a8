"""``ftmech reproduce gam --preset tiny`` end to end: results.json with every part, an offline report, and a
re-run that reuses the finished study."""

import json

from analyses.cli import main


def test_tiny_gam_study_writes_results_and_report(tmp_path, capsys) -> None:
    out = tmp_path / "gam"
    argv = ["reproduce", "gam", "--preset", "tiny", "--out", str(out), "--workers", "1", "--no-progress"]
    assert main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["study"] == "gam" and results["lm"]["corpus"] == "synthetic"
    tp = results["throughput"]
    assert set(tp) == {"transformer", "transformer_materialised", "gam"}
    kept = [tp[name]["rows"][-1]["activation_mib"] for name in ("transformer_materialised", "transformer")]
    assert kept[0] > kept[1]  # the N x N patterns, kept for backward
    assert [r["length"] for r in results["throughput"]["gam"]["rows"]] == [16, 32, 64]
    assert results["lm"]["n_params"]["gam"] == results["lm"]["n_params"]["transformer"]
    assert {r["arch"] for r in results["wrapper"]} == {"transformer", "gam"}
    rf = results["receptive_field"]
    assert rf["covered"]["receptive_field"] >= rf["covered"]["seq_len"] > rf["cpu_window"]["receptive_field"]
    assert all(
        f["outcome"] in ("held", "did not hold", "inconclusive", "not testable") for f in results["findings"]
    )
    html = (out / "report.html").read_text()
    assert "GAM beside the transformer" in html and '<script src="http' not in html
    capsys.readouterr()
    assert main(argv) == 0
    assert json.loads((out / "results.json").read_text()) == results
