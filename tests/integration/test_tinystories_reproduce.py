"""``ftmech reproduce tinystories`` end to end at a tiny size: its sweep's config is a list of settings, which
the study-run checks (device, output claim) must take like the other studies' single config."""

import json

import pytest

from analyses.cli import main
from tests.conftest import file_hashes

TINY = {
    "seeds": [0, 1],
    "n_stories": 1000,
    "batch_size": 4,
    "pretrain_steps": 3,
    "deletion_steps": 2,
    "recovery_steps": 100,
    "n_generations": 4,
    "max_new_tokens": 12,
    "eval_n": 8,
    "probe_steps": 5,
    "model": {
        "n_layers": 1,
        "d_model": 16,
        "n_heads": 2,
        "d_mlp": 32,
        "act_fn": "silu",
        "normalization": "RMS",
        "positional": "rotary",
        "gated_mlp": True,
    },
    "device": "cpu",
}


@pytest.fixture
def config(tmp_path) -> str:
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(TINY))
    return str(path)


def test_the_study_runs_plans_and_is_not_redone(config, tmp_path, capsys) -> None:
    out = tmp_path / "study"
    argv = [
        "reproduce",
        "tinystories",
        "--config",
        config,
        "--out",
        str(out),
        "--workers",
        "2",
        "--no-progress",
    ]
    with pytest.raises(SystemExit) as planned:
        main([*argv, "--plan"])
    assert planned.value.code == 0 and (out / "plan.json").is_file()
    assert main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["study"] == "tinystories" and list(results["settings"]) == ["synthetic-twist"]
    assert (out / "report.html").is_file() and (out / "synthetic-twist" / "results.json").is_file()
    before = file_hashes(out)
    assert main(argv) == 0 and file_hashes(out) == before


def test_an_unknown_device_is_refused_before_anything_is_written(config, tmp_path, capsys) -> None:
    out = tmp_path / "study"
    code = main(["reproduce", "tinystories", "--config", config, "--device", "tpu", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "unknown device 'tpu'" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
