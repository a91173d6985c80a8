"""ftmech probe / prune / diff / patch / audit on tiny checkpoints: outputs exist and are well-formed."""

import json

import pytest

from analyses.cli import main


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpts")
    common = ["--preset", "tiny", "--device", "cpu", "--no-progress"]
    assert main(["pretrain", *common, "--steps", "30", "--lr", "3e-3", "--out", str(root / "pt")]) == 0
    assert (
        main(
            [
                "finetune",
                str(root / "pt"),
                *common,
                "--lr",
                "3e-3",
                "--steps",
                "10",
                "--out",
                str(root / "ft"),
            ]
        )
        == 0
    )
    return root / "pt", root / "ft"


def _json_out(capsys) -> dict:
    return json.loads(capsys.readouterr().out)


def test_probe(checkpoints, tmp_path, capsys) -> None:
    pt, _ = checkpoints
    capsys.readouterr()
    argv = [
        "probe",
        str(pt),
        "--target",
        "count:a",
        "--backend",
        "sklearn",
        "--n",
        "120",
        "--out",
        str(tmp_path / "p"),
        "--device",
        "cpu",
    ]
    assert main(argv) == 0
    _json_out(capsys)
    assert (tmp_path / "p" / "report.html").is_file() and (tmp_path / "p" / "summary.json").is_file()


@pytest.mark.parametrize("command", ["prune", "diff", "patch"])
def test_prune_diff_patch(checkpoints, tmp_path, capsys, command: str) -> None:
    pt, ft = checkpoints
    capsys.readouterr()
    args = [str(ft), "--k-max", "3", "--score-n", "64"] if command == "prune" else [str(pt), str(ft)]
    assert main([command, *args, "--n", "64", "--out", str(tmp_path / command), "--device", "cpu"]) == 0
    assert isinstance(_json_out(capsys), dict)
    assert (tmp_path / command / "summary.json").is_file()


def test_audit_gives_a_label_or_says_why_not(checkpoints, capsys) -> None:
    pt, ft = checkpoints
    capsys.readouterr()
    code = main(
        [
            "audit",
            "--base",
            str(pt),
            "--finetuned",
            str(ft),
            "--n",
            "64",
            "--score-n",
            "64",
            "--probe-steps",
            "50",
            "--device",
            "cpu",
        ]
    )
    if code == 0:
        assert _json_out(capsys)["label"] in {"removed", "wrapped", "intact"}
    else:  # a barely trained tiny model may sit at its floor; that is a clear one-line error
        assert code == 2 and "floor" in capsys.readouterr().err
