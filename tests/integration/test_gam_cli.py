"""Every stage and analysis command on tiny GAM checkpoints: pretrain, finetune, reverse-ft, probe, prune
(neurons and memory rows), diff, patch and the audit run unchanged; ``diff --attend-to`` says why not."""

import json

import pytest

from analyses.cli import main


@pytest.fixture(scope="module")
def gam_checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("gam")
    common = ["--preset", "tiny", "--model", "gam_tiny", "--device", "cpu", "--no-progress"]
    assert main(["pretrain", *common, "--steps", "20", "--lr", "3e-3", "--out", str(root / "pt")]) == 0
    tune = ["--preset", "tiny", "--device", "cpu", "--no-progress", "--lr", "3e-3", "--steps", "8"]
    assert main(["finetune", str(root / "pt"), *tune, "--out", str(root / "ft")]) == 0
    return root / "pt", root / "ft"


def _run(argv: list[str], capsys) -> dict:
    capsys.readouterr()
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_checkpoints_record_the_architecture(gam_checkpoints) -> None:
    pt, ft = gam_checkpoints
    for ckpt in (pt, ft):
        assert json.loads((ckpt / "config.json").read_text())["model"]["architecture"] == "gam"


@pytest.mark.parametrize(
    "command",
    [
        ["probe", "{pt}", "--backend", "sklearn", "--n", "96"],
        ["prune", "{ft}", "--k-max", "3", "--method", "saliency", "--n", "64"],
        ["prune", "{ft}", "--k-max", "3", "--level", "row", "--n", "64"],
        ["diff", "{pt}", "{ft}", "--n", "64"],
        ["patch", "{pt}", "{ft}", "--n", "64"],
        [
            "audit",
            "--base",
            "{pt}",
            "--finetuned",
            "{ft}",
            "--n",
            "64",
            "--relearn-steps",
            "4",
            "--prune-ks",
            "0,2",
        ],
    ],
    ids=["probe", "prune-neurons", "prune-rows", "diff", "patch", "audit"],
)
def test_analysis_commands_run_on_gam(gam_checkpoints, tmp_path, capsys, command: list[str]) -> None:
    pt, ft = gam_checkpoints
    argv = [part.format(pt=pt, ft=ft) for part in command]
    printed = _run(
        [*argv, "--capability", "pcfg:count:a", "--device", "cpu", "--out", str(tmp_path / "o")], capsys
    )
    assert (tmp_path / "o" / "summary.json").is_file() and printed
    if command[0] == "audit":
        summary = json.loads((tmp_path / "o" / "summary.json").read_text())
        assert summary["evidence"][0]["revival_horizon"] == 4


def test_attention_maps_of_a_gam_are_one_clear_line(gam_checkpoints, tmp_path, capsys) -> None:
    pt, ft = gam_checkpoints
    argv = ["diff", str(pt), str(ft), "--attend-to", "a,b", "--capability", "pcfg:count:a", "--n", "32"]
    capsys.readouterr()
    assert main([*argv, "--device", "cpu", "--out", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "attention maps need attention" in err[0]
