"""Output directories are never clobbered: a finished run survives a repeated command byte for byte unless
``--overwrite`` is given; one writer at a time (a stale lock is taken over); a writer killed mid-write leaves
the previous complete file; and the input defects of issue 16 end in one line, not a traceback or a run.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from analyses.cli import main
from analyses.pcfg.config import PCFGStudyConfig
from interp.config import to_json
from interp.errors import ConfigError
from interp.run_dirs import LOCK, MARKER, acquire_lock, claim_output
from tests.conftest import file_hashes

TRAIN = ["--preset", "tiny", "--device", "cpu", "--no-progress"]


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, list[str]]:
    """Finished runs of pretrain, finetune, reverse-ft and probe (a few steps each): name -> its command."""
    root = tmp_path_factory.mktemp("runs")
    pt, ft, rev, probe = (str(root / n) for n in ("pt", "ft", "rev", "probe"))
    commands = {
        "pretrain": ["pretrain", *TRAIN, "--steps", "3", "--out", pt],
        "finetune": ["finetune", pt, *TRAIN, "--steps", "2", "--out", ft],
        "reverse-ft": ["reverse-ft", ft, *TRAIN, "--steps", "2", "--out", rev],
        "probe": [
            "probe",
            pt,
            "--capability",
            "pcfg:count:a",
            "--device",
            "cpu",
            "--n",
            "40",
            "--steps",
            "5",
            "--backend",
            "torch",
            "--out",
            probe,
        ],
    }
    for argv in commands.values():
        assert main(argv) == 0, argv
    return commands


@pytest.mark.parametrize("command", ["pretrain", "finetune", "reverse-ft", "probe"])
def test_a_finished_run_survives_a_repeated_command_byte_for_byte(command, runs, capsys) -> None:
    argv = runs[command]
    out = Path(argv[-1])
    before = file_hashes(out)
    assert json.loads((out / MARKER).read_text())["status"] == "done"
    code, stdout, _ = _run(argv, capsys)
    assert code == 0 and json.loads(stdout)["status"] == "done"
    changed = [*argv[:-2], "--seed", "7", "--out", str(out)]
    code, _, err = _run(changed, capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "holds a run with other settings (differs in: seed)" in err and "--overwrite" in err
    assert file_hashes(out) == before and not (out / LOCK).exists()


def test_overwrite_replaces_a_run_and_removes_the_old_one_only_after(runs, tmp_path, capsys) -> None:
    out = tmp_path / "pt"
    first = ["pretrain", *TRAIN, "--steps", "2", "--out", str(out)]
    assert main(first) == 0
    before = file_hashes(out)
    bad = ["pretrain", *TRAIN, "--steps", "2", "--model", "no_such_model", "--overwrite", "--out", str(out)]
    code, _, err = _run(bad, capsys)
    assert code == 2 and file_hashes(out) == before  # the new run failed: the old one is back in place
    assert [p.name for p in tmp_path.iterdir()] == ["pt"]
    again = ["pretrain", *TRAIN, "--steps", "3", "--overwrite", "--out", str(out)]
    assert main(again) == 0
    assert file_hashes(out)["model.safetensors"] != before["model.safetensors"]
    assert json.loads((out / "config.json").read_text())["metadata"]["stage_config"]["train"]["steps"] == 3
    assert [p.name for p in tmp_path.iterdir()] == ["pt"]  # nothing left aside


def test_files_of_an_unknown_run_and_an_unfinished_run_are_refused(tmp_path, capsys) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("hours of work")
    code, _, err = _run(["pretrain", *TRAIN, "--steps", "2", "--out", str(out)], capsys)
    assert code == 2 and "already holds files of another run (notes.txt)" in err
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    fingerprint = {"x": 1}
    with pytest.raises(RuntimeError), claim_output(tmp_path / "killed", fingerprint):
        (tmp_path / "killed" / "partial.bin").write_bytes(b"1")
        raise RuntimeError("killed")
    with pytest.raises(ConfigError, match="unfinished run of this command.*--resume"):
        with claim_output(tmp_path / "killed", fingerprint):
            pass
    with pytest.raises(
        ConfigError, match=r"unfinished run of this command \(stopped or killed\); pass --overwrite"
    ):
        with claim_output(tmp_path / "killed", fingerprint, resumable=False):  # a command without --resume
            pass
    with claim_output(tmp_path / "killed", fingerprint, resume=True) as claim:
        assert not claim.done
    with claim_output(tmp_path / "killed", fingerprint) as claim:
        assert claim.done


def test_a_run_left_aside_by_a_killed_overwrite_is_named_on_the_next_claim(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    with claim_output(out, {"x": 1}):
        (out / "results.json").write_text("{}")
    with claim_output(out, {"x": 2}, overwrite=True):
        (out / "results.json").write_text("{}")
    assert capsys.readouterr().err == ""  # an overwrite that completes leaves nothing aside
    left = tmp_path / "run.replaced-4242"  # what a SIGKILL during an --overwrite leaves
    left.mkdir()
    (left / "results.json").write_text("{}")
    with claim_output(out, {"x": 2}) as claim:
        assert claim.done
    err = capsys.readouterr().err
    assert f"{left} holds the run that an interrupted --overwrite of {out} moved aside" in err
    assert (left / "results.json").is_file()


def test_resume_never_writes_into_files_of_another_run(tmp_path, capsys) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "results.json").write_text('{"study": "pcfg", "mine": 1}')
    for command in (
        ["pretrain", *TRAIN, "--steps", "2"],
        ["reproduce", "pcfg", "--preset", "tiny", "--seeds", "1"],
    ):
        code, _, err = _run([*command, "--out", str(out), "--resume"], capsys)
        assert code == 2 and "already holds files of another run (results.json)" in err
        assert sorted(p.name for p in out.iterdir()) == ["results.json"]
        assert json.loads((out / "results.json").read_text()) == {"study": "pcfg", "mine": 1}


def test_an_edited_stage_config_file_is_another_run(runs, tmp_path, capsys) -> None:
    stage = json.loads((Path(runs["pretrain"][-1]) / "config.json").read_text())["metadata"]["stage_config"]
    config, out = tmp_path / "c.json", tmp_path / "pt"
    config.write_text(json.dumps(stage))
    argv = ["pretrain", "--device", "cpu", "--no-progress", "--config", str(config), "--out", str(out)]
    assert main(argv) == 0
    before = file_hashes(out)
    config.write_text(json.dumps(stage | {"train": stage["train"] | {"steps": 6}}))
    code, _, err = _run(argv, capsys)
    assert code == 2 and "holds a run with other settings (differs in: config.sha256)" in err
    assert file_hashes(out) == before


def test_report_of_an_incomplete_results_file_is_one_line(tmp_path, capsys) -> None:
    (tmp_path / "results.json").write_text('{"study": "pcfg", "schema_version": 1}')
    code, _, err = _run(["report", str(tmp_path)], capsys)
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "is incomplete or not a pcfg result (KeyError" in err and not (tmp_path / "report.html").exists()
    (tmp_path / "results.json").write_text('{"study": "tracr", "schema_version": 999}')
    code, _, err = _run(["report", str(tmp_path)], capsys)
    assert code == 2 and "has tracr results schema 999, and this ftmech reads schema 2" in err


def test_a_failed_fresh_run_leaves_no_directory(tmp_path, capsys) -> None:
    out = tmp_path / "new"
    code, _, err = _run(["pretrain", "--preset", "gpu", "--out", str(out)], capsys)
    assert code == 2 and "unknown preset 'gpu'" in err and not out.exists()


def test_a_second_writer_gets_one_line_and_a_stale_lock_is_taken_over(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / LOCK).write_text(json.dumps({"pid": holder.pid, "host": os.uname().nodename, "since": "now"}))
        code, _, err = _run(["pretrain", *TRAIN, "--steps", "2", "--out", str(out)], capsys)
        assert code == 2 and len(err.strip().splitlines()) == 1
        assert f"being written by another ftmech process (pid {holder.pid}" in err
    finally:
        holder.kill()
        holder.wait()
    acquire_lock(out).unlink()  # the holder is gone: its lock is stale and taken over
    (out / LOCK).write_text("")  # a writer killed between creating and filling its lock
    assert json.loads(acquire_lock(out).read_text())["pid"] == os.getpid()


WRITER = """
import sys, time
from pathlib import Path
from interp.atomic_files import atomic_write

def write(tmp):
    with open(tmp, "w") as handle:
        handle.write('{"study": "new", "half": ')
        handle.flush()
        Path(sys.argv[2]).touch()
        time.sleep(60)

atomic_write(Path(sys.argv[1]), write)
"""


def test_a_writer_killed_mid_write_leaves_the_previous_complete_file(tmp_path) -> None:
    target, started = tmp_path / "results.json", tmp_path / "started"
    target.write_text('{"study": "old"}\n')
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(target), str(started)])
    deadline = time.time() + 60
    while not started.exists() and time.time() < deadline:
        time.sleep(0.05)
    assert started.exists()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert json.loads(target.read_text()) == {"study": "old"}
    partial = [p for p in tmp_path.iterdir() if p.name.startswith(".results.json.")]
    assert len(partial) == 1 and partial[0].read_text().endswith('"half": ')


def _study(tmp_path: Path, name: str, priors: tuple[str, ...]) -> str:
    config = PCFGStudyConfig(
        preset="tiny",
        seeds=(0,),
        priors=priors,
        finetune_grid=(("low", "M", 1.0),),
        reverse_from=(),
        analyse=False,
        device="cpu",
    )
    path = tmp_path / name
    path.write_text(to_json(config))
    return str(path)


def test_reproduce_keeps_a_finished_study_and_refuses_another(tmp_path, capsys) -> None:
    out, moved = tmp_path / "study", tmp_path / "moved"
    config = _study(tmp_path, "a.json", ("low",))

    def command(where: Path) -> list[str]:
        flags = ["--workers", "1", "--no-progress"]
        return ["reproduce", "pcfg", "--config", config, "--out", str(where), *flags]

    argv = command(out)
    assert main(argv) == 0
    before = file_hashes(out)
    capsys.readouterr()
    assert main(argv) == 0 and file_hashes(out) == before
    assert "holds this finished study; nothing was run or written" in capsys.readouterr().err
    out.rename(moved)  # a finished study moved elsewhere is still finished: nothing is redone or written
    assert main(command(moved)) == 0 and file_hashes(moved) == before
    moved.rename(out)
    other = _study(tmp_path, "b.json", ("low", "medium"))
    code, _, err = _run([*argv[:3], other, *argv[4:]], capsys)
    assert code == 2 and "holds a run with other settings (differs in: config.priors)" in err
    assert file_hashes(out) == before


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["evaluate", "PT", "--task", "count", "--operand", "a", "--n", "0"],
            "argument --n: must be an integer >= 1",
        ),
        (["evaluate", "PT", "--c-te", "3"], "argument --c-te: must be a fraction in [0, 1], got '3'"),
        (["data", "pcfg", "--n", "-3"], "argument --n: must be an integer >= 1, got '-3'"),
        (["pretrain", "--prior", "0.5,0.5", "--out", "OUT"], "prior (0.5, 0.5) has 2 values, not three"),
        (["data", "pcfg", "--operand", "z", "--n", "1"], "unknown operand 'z'; use a terminal (a, b, c)"),
        (["evaluate", "PT", "--operand", "A"], "unknown operand 'A'"),
        (["pretrain", *TRAIN, "--out", ""], "argument --out: must name a directory, got an empty string"),
        (["pretrain", *TRAIN, "--out", "PT/model.safetensors/sub"], "cannot create --out"),
        (
            ["reproduce", "pcfg", "--preset", "tiny", "--device", "tpu", "--out", "OUT"],
            "unknown device 'tpu'",
        ),
        (["pretrain", *TRAIN, "--window", "100000", "--out", "OUT"], "window must be between 2 and 250"),
        (["pretrain", *TRAIN, "--lr", "1e300", "--out", "OUT"], "lr must be a positive number at most 1e+30"),
        (
            [
                "reproduce",
                "pcfg",
                *TRAIN[:4],
                "--executor",
                "ray",
                "--ray-address",
                "127.0.0.1:1",
                "--out",
                "OUT",
            ],
            "nothing answers at the Ray address 127.0.0.1:1",
        ),
    ],
)
def test_issue_16_input_defects_are_one_line(args, message, runs, tmp_path, capsys) -> None:
    pt = runs["pretrain"][-1]
    argv = [
        a.replace("PT", pt) if a.startswith("PT") else str(tmp_path / "out") if a == "OUT" else a
        for a in args
    ]
    code, out, err = _run(argv, capsys)
    assert code == 2 and out == "" and "Traceback" not in err
    assert err.startswith("ftmech: error:") and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "study, fields, message",
    [
        ("pcfg", {"seeds": "zero"}, "PCFGStudyConfig.seeds must be a list, got str"),
        ("pcfg", {"seeds": [0, "1"]}, "PCFGStudyConfig.seeds[1] must be an integer, got str"),
        ("pcfg", {"analyse": "no"}, "PCFGStudyConfig.analyse must be true or false, got str"),
        ("pcfg", {"pretrain_lr": "fast"}, "PCFGStudyConfig.pretrain_lr must be a number, got str"),
        ("pcfg", {"finetune_grid": [["low", "M"]]}, "finetune_grid[0] must be a list of 3 values"),
        ("tracr", {"seeds": 2}, "TracrStudyConfig.seeds must be a list, got int"),
        ("gam", {"lm_steps": 1.5}, "GAMStudyConfig.lm_steps must be an integer, got float"),
        ("tracr", {"seeds": [-1]}, "seeds must be distinct integers in [0, 2^32), got -1"),
        ("tracr", {"seeds": [0, 0]}, "seeds must be distinct integers in [0, 2^32), got 0, 0"),
        ("pcfg", {"seeds": [4294967296]}, "seeds must be distinct integers in [0, 2^32)"),
        ("tinystories", {"seeds": [3]}, "give 2 to 1000 seeds, got 1"),
        ("tracr", {"seeds": list(range(1001))}, "give 1 to 1000 seeds, got 1001"),
    ],
)
def test_study_config_files_are_type_checked_field_by_field(study, fields, message, tmp_path, capsys) -> None:
    path = tmp_path / "study.json"
    path.write_text(json.dumps(fields))
    code, out, err = _run(["reproduce", study, "--config", str(path), "--out", str(tmp_path / "out")], capsys)
    assert code == 2 and out == "" and "Traceback" not in err
    assert err.startswith("ftmech: error:") and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
