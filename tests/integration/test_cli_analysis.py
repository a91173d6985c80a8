"""ftmech probe / prune / diff / patch / audit on tiny checkpoints: outputs exist and are well-formed."""

import dataclasses
import json

import pytest

from analyses.cli import main
from interp.config import to_dict
from interp.models import PRESETS, build_model
from procedural_tasks.story_checkpoints import save_story_checkpoint
from procedural_tasks.story_data import build_story_tokenizer
from procedural_tasks.tracr_preparation import add_weight_noise
from tests.unit.test_story_capability import DATA


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
    argv = ["probe", str(pt), "--capability", "pcfg:count:a", "--backend", "sklearn", "--n", "120"]
    assert main([*argv, "--out", str(tmp_path / "p"), "--device", "cpu"]) == 0
    printed = _json_out(capsys)
    assert printed["label"] == "count_a" and printed["eval_set"] == "count_a@cte0"
    assert (tmp_path / "p" / "report.html").is_file() and (tmp_path / "p" / "summary.json").is_file()


@pytest.mark.parametrize("command", ["prune", "diff", "patch"])
def test_prune_diff_patch(checkpoints, tmp_path, capsys, command: str) -> None:
    pt, ft = checkpoints
    capsys.readouterr()
    args = {
        "prune": [str(ft), "--k-max", "3", "--method", "ablation"],
        "diff": [str(pt), str(ft), "--attend-to", "a,b"],
        "patch": [str(pt), str(ft)],
    }[command]
    argv = [command, *args, "--capability", "pcfg:count:a", "--n", "64", "--device", "cpu"]
    assert main([*argv, "--out", str(tmp_path / command)]) == 0
    printed = _json_out(capsys)
    summary = json.loads((tmp_path / command / "summary.json").read_text())
    if command == "prune":
        assert printed["method"] == "ablation" and printed["best"]["k"] <= 3
    if command == "diff":
        assert set(summary["attention"]["mass"]["base"]) == {"a", "b"}


def test_analyses_run_on_a_tracr_checkpoint_with_its_own_capability(tmp_path, capsys) -> None:
    ckpt = tmp_path / "counter"
    argv = ["tracr", "finetune", "--program", "counter", "--lr-level", "S", "--steps", "2", "--eval-n", "32"]
    argv += ["--out", str(ckpt), "--no-progress"]
    assert main(argv) == 0
    capsys.readouterr()
    argv = ["prune", str(ckpt), "--capability", "tracr:counter", "--n", "64", "--k-max", "2"]
    assert main([*argv, "--method", "ablation", "--device", "cpu"]) == 0
    assert _json_out(capsys)["accuracy_k0"] >= 0
    argv = ["probe", str(ckpt), "--capability", "tracr:max_identifier", "--n", "64", "--device", "cpu"]
    assert main(argv) == 2
    assert "Tracr base checkpoint of that program (counter)" in capsys.readouterr().err


def test_diff_refuses_tokens_outside_the_vocabulary(checkpoints, capsys) -> None:
    pt, ft = checkpoints
    capsys.readouterr()
    argv = ["diff", str(pt), str(ft), "--capability", "pcfg:count:a", "--attend-to", "zz", "--n", "16"]
    assert main([*argv, "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not in the vocabulary" in err


def test_audit_of_pcfg_checkpoints_gives_one_of_four_labels_and_writes_its_report(
    checkpoints, tmp_path, capsys
):
    pt, ft = checkpoints
    capsys.readouterr()
    argv = ["audit", "--base", str(pt), "--finetuned", str(ft), "--capability", "pcfg:count:a", "--n", "64"]
    argv += ["--relearn-steps", "4", "--relearn-lrs", "1e-3", "--prune-ks", "0,1,2", "--device", "cpu"]
    assert main([*argv, "--out", str(tmp_path / "audit")]) == 0
    assert _json_out(capsys)["label"] in {"removed", "wrapped", "intact", "inconclusive"}
    summary = json.loads((tmp_path / "audit" / "summary.json").read_text())
    assert summary["evidence"][0]["revival_horizon"] == 4 and (tmp_path / "audit" / "report.html").is_file()


@pytest.mark.parametrize(
    "bad, says",
    [
        (["--capability", "pcfg:index:a"], "pcfg:count:OPERAND"),
        (["--capability", "bogus:x"], "unknown capability kind"),
        (["--reference", "/nonexistent/dir"], "argument --reference: /nonexistent/dir does not exist"),
        (["--finetuned", "FT", "FT"], "each --finetuned directory is one seed"),
        (["--prune-ks", "0"], "prune_ks must be >= 0 with at least one K > 0"),
    ],
)
def test_audit_bad_input_is_one_line(checkpoints, capsys, bad, says):
    pt, ft = checkpoints
    capsys.readouterr()
    bad = [str(ft) if a == "FT" else a for a in bad]
    argv = ["audit", "--base", str(pt), "--finetuned", str(ft), "--capability", "pcfg:count:a", *bad]
    assert main([*argv, "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and says in err


def test_audit_of_a_story_pair_on_a_tinystories_feature(tmp_path, capsys) -> None:
    tokenizer = build_story_tokenizer(DATA)
    config = dataclasses.replace(PRESETS["llama_cpu"], d_model=16, n_layers=2, n_heads=2, d_mlp=24)
    config = config.for_task(d_vocab=tokenizer.vocab_size, n_ctx=DATA.n_ctx)
    base = build_model(config)
    finetuned = add_weight_noise(base, std=0.01, seed=1)
    for name, model in (("pt", base), ("ft", finetuned)):
        save_story_checkpoint(tmp_path / name, model, config, tokenizer, {"data": to_dict(DATA)})
    capsys.readouterr()
    argv = ["audit", "--base", str(tmp_path / "pt"), "--finetuned", str(tmp_path / "ft")]
    argv += [
        "--capability",
        "tinystories:twist",
        "--n",
        "16",
        "--relearn-steps",
        "2",
        "--relearn-lrs",
        "1e-3",
    ]
    assert main([*argv, "--prune-ks", "0,1", "--device", "cpu", "--out", str(tmp_path / "audit")]) == 0
    assert _json_out(capsys)["label"] in {"removed", "wrapped", "intact", "inconclusive"}
    summary = json.loads((tmp_path / "audit" / "summary.json").read_text())
    assert summary["details"][0]["capability"] == "writes_twist"
