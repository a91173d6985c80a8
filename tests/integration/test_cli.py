"""The ftmech command line end to end on tiny configs: data, pretrain, evaluate, errors."""

import json
import os
import subprocess
import sys

import pytest

from analyses.cli import main


def test_data_pcfg_prints_json_lines(capsys) -> None:
    assert (
        main(["data", "pcfg", "--task", "count", "--operand", "b", "--n", "5", "--seed", "3", "--c-tr", "1"])
        == 0
    )
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 5
    for row in rows:
        assert {"tokens", "text", "task", "operand", "answer", "correlated"} <= set(row)
        assert row["correlated"] and row["answer"] == row["text"][-row["region"] :].count("b")
        assert row["text"][-row["region"] :].count("b") == row["text"][-row["region"] :].count("a") + 1


def test_data_pcfg_strings(capsys) -> None:
    assert main(["data", "pcfg-strings", "--n", "3", "--seed", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and all(set(line.split()) <= {"a", "b", "c"} for line in lines)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["data", "pcfg", "--task", "nope"], "unknown task 'nope'"),
        (["pretrain", "--prior", "0.9,0.2,0", "--out", "x"], "sums to 1.1"),
        (["data", "pcfg", "--window", "10"], "window 10 is smaller"),
        (["evaluate", "/nonexistent/run"], "argument dir: /nonexistent/run does not exist"),
        (["evaluate", "/"], "config.json is missing"),  # a directory that is no checkpoint
        (["pretrain", "--preset", "gpu", "--out", "x"], "unknown preset 'gpu'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, message, capsys) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ftmech: error:") and message in err and "\n" not in err


def test_pretraining_with_the_studys_whole_sequence_loss(tmp_path, capsys) -> None:
    out = tmp_path / "seq"
    argv = ["pretrain", "--preset", "tiny", "--steps", "4", "--loss", "sequence", "--out", str(out)]
    assert main([*argv, "--device", "cpu", "--no-progress"]) == 0
    meta = json.loads((out / "config.json").read_text())["metadata"]
    assert meta["stage_config"]["train"]["loss"] == "sequence"


def test_pretrain_then_evaluate(tmp_path, capsys) -> None:
    out = tmp_path / "pt"
    argv = [
        "pretrain",
        "--preset",
        "tiny",
        "--prior",
        "0.9,0.1,0",
        "--steps",
        "12",
        "--seed",
        "1",
        "--out",
        str(out),
        "--device",
        "cpu",
        "--no-progress",
        "--checkpoint-every",
        "5",
    ]
    assert main(argv) == 0
    for name in ("model.safetensors", "config.json", "metrics.jsonl", "summary.json"):
        assert (out / name).is_file()
    assert not (out / "resume").exists()
    capsys.readouterr()
    assert (
        main(
            [
                "evaluate",
                str(out),
                "--task",
                "count",
                "--operand",
                "a",
                "--c-te",
                "0",
                "--n",
                "50",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert 0 <= result["accuracy"] <= 1 and result["n"] == 50


def test_console_script_runs_in_a_subprocess() -> None:
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    proc = subprocess.run(
        [sys.executable, "-m", "analyses.cli", "data", "pcfg", "--n", "1"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0 and json.loads(proc.stdout)["task"] == "count"


def _subcommand_paths(parser, prefix=()):
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*prefix, name)
                yield from _subcommand_paths(sub, (*prefix, name))


def test_every_subcommand_has_working_help(capsys) -> None:
    from analyses.cli import build_parser

    paths = list(_subcommand_paths(build_parser()))
    assert {("pretrain",), ("finetune",), ("reverse-ft",), ("probe",), ("tracr",), ("tinystories",)} <= set(
        paths
    )
    for path in paths:
        with pytest.raises(SystemExit) as exit_info:
            main([*path, "--help"])
        assert exit_info.value.code == 0, path
    capsys.readouterr()
