"""Fine-tuning and reverse fine-tuning end to end on tiny configs, and the LR-level mapping."""

import json

import pytest

from analyses.cli import main
from interp.errors import ConfigError
from interp.lr_levels import LABELLINGS as LR_LABELLINGS
from interp.lr_levels import lr_for_level


def test_lr_levels_under_both_labellings() -> None:
    assert lr_for_level("M", 1e-3, "main_text") == pytest.approx(1e-4)
    assert lr_for_level("S", 1e-3, "main_text") == pytest.approx(1e-5)
    assert lr_for_level("L", 1e-3, "appendix") == pytest.approx(1e-4)
    assert lr_for_level("S", 1e-3, "appendix") == pytest.approx(1e-6)
    assert lr_for_level("PT", 1e-3, "main_text") == lr_for_level("PT", 1e-3, "appendix") == 1e-3  # ours
    assert lr_for_level("M", 1e-3, "main_text") == lr_for_level("L", 1e-3, "appendix")
    for labelling in LR_LABELLINGS.values():
        divisors = list(labelling.values())
        assert divisors == sorted(divisors)  # levels from large to small LR
    with pytest.raises(ConfigError, match="not defined in the main_text labelling"):
        lr_for_level("L", 1e-3, "main_text")  # the main text defines only eta_M and eta_S
    with pytest.raises(ConfigError):
        lr_for_level("XL", 1e-3)
    with pytest.raises(ConfigError):
        lr_for_level("M", 1e-3, "blog")


def test_finetune_then_reverse_ft(tmp_path, capsys) -> None:
    pt, ft, rv = tmp_path / "pt", tmp_path / "ft", tmp_path / "rv"
    common = ["--preset", "tiny", "--device", "cpu", "--no-progress", "--seed", "0"]
    assert main(["pretrain", *common, "--prior", "low", "--steps", "8", "--out", str(pt)]) == 0
    assert (
        main(
            ["finetune", str(pt), *common, "--lr-level", "M", "--c-tr", "1", "--steps", "6", "--out", str(ft)]
        )
        == 0
    )
    capsys.readouterr()
    meta = json.loads((ft / "config.json").read_text())["metadata"]
    assert meta["stage"] == "finetune" and meta["stage_config"]["train"]["lr"] == pytest.approx(1e-4)
    assert meta["stage_config"]["c_tr"] == 1.0 and meta["base"] == str(pt)
    assert set(meta["final_eval"]) == {"count_a@cte0", "count_a@cte1", "count_b@cte0", "count_b@cte1"}
    b1 = meta["final_eval"]["count_b@cte1"]
    assert b1["shortcut_floor"] == pytest.approx(1.0)  # at C_Te = 1 the shortcut is always right
    argv = [
        "reverse-ft",
        str(ft),
        *common,
        "--lr-level",
        "S",
        "--steps",
        "6",
        "--reference-accuracy",
        "0.5",
        "--out",
        str(rv),
    ]
    assert main(argv) == 0
    curve = json.loads(capsys.readouterr().out)
    assert curve["steps"][0] == 0 and curve["steps"][-1] == 6 and curve["threshold"] == pytest.approx(0.45)
    assert json.loads((rv / "revival.json").read_text())["curve"] == curve


def test_scratch_control_reinitialises(tmp_path, capsys) -> None:
    pt, rv = tmp_path / "pt", tmp_path / "rv"
    common = ["--preset", "tiny", "--device", "cpu", "--no-progress"]
    assert main(["pretrain", *common, "--steps", "4", "--out", str(pt)]) == 0
    assert (
        main(
            [
                "reverse-ft",
                str(pt),
                *common,
                "--lr",
                "1e-4",
                "--steps",
                "0",
                "--from-scratch",
                "--seed",
                "5",
                "--out",
                str(rv),
            ]
        )
        == 0
    )
    from interp.checkpoints import load_checkpoint, load_tensors

    a = load_tensors(pt / "model.safetensors")
    b = load_tensors(rv / "model.safetensors")
    assert any(not (a[k] == b[k]).all() for k in a)
    _, info = load_checkpoint(rv)
    assert info.model_config.seed == 5


def test_lr_and_level_together_is_an_error(tmp_path, capsys) -> None:
    pt = tmp_path / "pt"
    assert (
        main(
            [
                "pretrain",
                "--preset",
                "tiny",
                "--steps",
                "2",
                "--device",
                "cpu",
                "--no-progress",
                "--out",
                str(pt),
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "finetune",
                str(pt),
                "--preset",
                "tiny",
                "--lr",
                "1e-4",
                "--lr-level",
                "M",
                "--out",
                str(tmp_path / "x"),
            ]
        )
        == 2
    )
    assert "either --lr or --lr-level" in capsys.readouterr().err
