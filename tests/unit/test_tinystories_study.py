"""The TinyStories study slice: its config and presets, the one training recipe, the plan, the command line and
the report writer. Tiny sizes; no study is run."""

import argparse
import dataclasses
import json
import re

import pytest

from analyses.tinystories.cli import add_commands, build_parser, study_configs
from analyses.tinystories.config import (
    CONTROL,
    PRESETS,
    TinyStoriesStudyConfig,
    cpu_study_config,
    gpu_study_config,
    preset_config,
)
from analyses.tinystories.jobs import plan_study
from interp.arguments import ArgParser
from interp.config import from_json, to_json
from interp.errors import ConfigError, DataError
from interp.lr_levels import lr_for_level
from interp.models import PRESETS as MODEL_PRESETS
from interp.revival import log_spaced_steps
from procedural_tasks.story_data import load_story_corpus
from procedural_tasks.story_loaders import OFFLINE_HINT
from procedural_tasks.story_records import FEATURES


def test_study_config_validates_and_round_trips():
    config = cpu_study_config("synthetic")
    assert from_json(TinyStoriesStudyConfig, to_json(config)) == config
    assert config.score_steps == (0, 1, 10, 100)
    assert config.lr("M") == pytest.approx(config.pretrain_lr / 10)
    assert config.lr("S") == pytest.approx(config.pretrain_lr / 100)
    assert gpu_study_config("synthetic").model == MODEL_PRESETS["llama_91m"]
    with pytest.raises(ConfigError, match="seeds"):
        cpu_study_config("synthetic", seeds=(0,))
    with pytest.raises(ConfigError):
        cpu_study_config("shared", deletion_kinds=("filter_mix_match",))
    with pytest.raises(ConfigError):
        cpu_study_config("synthetic", recovery_steps=150)


def test_study_plan_has_a_control_recovery_and_shares_one_tokenizer(tmp_path):
    plan = plan_study(cpu_study_config("synthetic"), tmp_path)
    assert {name for _, name in plan.recovery} == {"F (eta_M)", "F (eta_S)", CONTROL}
    assert len([j for j in plan.jobs if "/tokenizer/" in j.key]) == 1
    assert plan.recovery[0, CONTROL] != plan.recovery[1, CONTROL]


def test_data_workers_reach_the_training_jobs_but_not_their_identity(tmp_path):
    config = cpu_study_config("synthetic")
    plain, workers = (
        plan_study(config, tmp_path),
        plan_study(dataclasses.replace(config, data_workers=2), tmp_path),
    )
    assert [j.key for j in workers.jobs] == [j.key for j in plain.jobs]
    stages = ("/pretrain/", "/deletion/", "/recovery/")
    trained = [j for j in workers.jobs if any(s in j.key for s in stages)]
    assert trained and all(j.runtime == {"data_workers": 2} for j in trained)
    assert all(j.runtime == {} for j in plain.jobs)
    args = build_parser().parse_args(["--setting", "synthetic", "--data-workers", "3"])
    assert study_configs(args)[0].data_workers == 3
    assert gpu_study_config("synthetic").data_workers == 4
    with pytest.raises(ConfigError, match="data_workers"):
        cpu_study_config("synthetic", data_workers=-1)


def test_cli_data_prints_instruct_examples(capsys):
    parser = ArgParser(prog="ftmech")
    add_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        ["tinystories", "data", "--set", "filter_random_labels", "--n", "2", "--n-stories", "60"]
    )
    args.handler(args)
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines[0]["set"] == "filter_random_labels"
    for line in lines[1:]:
        assert "twist" not in line["features"] and "twist" in line["prompt_features"]
        assert "Twist" in line["text"] and "Story: " in line["text"]
    with pytest.raises(ConfigError):
        parser.parse_args(["tinystories", "data", "--set", "nope"])
    assert isinstance(args, argparse.Namespace)


def test_study_lrs_are_the_main_text_levels():
    config = cpu_study_config("synthetic")
    assert config.lr("M") == lr_for_level("M", config.pretrain_lr) == config.pretrain_lr / 10.0
    assert config.lr("S") == lr_for_level("S", config.pretrain_lr) == config.pretrain_lr / 100.0


def test_one_training_recipe_for_every_stage():
    config = cpu_study_config("synthetic")
    pretrain = config.train_config("pretrain", seed=3)
    assert (pretrain.steps, pretrain.lr, pretrain.schedule) == (
        config.pretrain_steps,
        config.pretrain_lr,
        "cosine",
    )
    assert pretrain.warmup_frac == config.warmup_frac and pretrain.eval_every == config.pretrain_steps // 4
    deletion = config.train_config("deletion", seed=3, lr=config.lr("M"))
    assert (deletion.schedule, deletion.warmup_frac, deletion.lr) == ("constant", 0.0, config.lr("M"))
    assert deletion.eval_steps == tuple(log_spaced_steps(config.deletion_steps, 4))
    recovery = config.train_config("recovery", seed=3)
    assert recovery.lr == config.lr(config.recovery_lr_level) and recovery.steps == config.recovery_steps
    assert recovery.eval_steps == tuple(log_spaced_steps(config.recovery_steps, 8))
    for train in (pretrain, deletion, recovery):
        assert (train.weight_decay, train.betas, train.loss, train.seed) == (0.1, (0.9, 0.95), "sequence", 3)
    cli = config.train_config("recovery", seed=0, steps=300, lr=1e-4, batch_size=4, device="cpu")
    assert (cli.steps, cli.lr, cli.batch_size, cli.device) == (300, 1e-4, 4, "cpu")
    with pytest.raises(ConfigError, match="LR"):
        config.train_config("deletion", seed=0)
    with pytest.raises(ConfigError, match="stage"):
        config.train_config("finetune", seed=0)


def test_presets_resolve_by_name_and_the_flag_is_preset():
    assert set(PRESETS) == {"cpu", "gpu"}
    assert preset_config("gpu", "synthetic") == gpu_study_config("synthetic")
    with pytest.raises(ConfigError, match="preset"):
        preset_config("paper")
    args = build_parser().parse_args(["--preset", "gpu", "--setting", "synthetic", "--seeds", "3"])
    (config,) = study_configs(args)
    assert config.model == MODEL_PRESETS["llama_91m"] and config.seeds == (0, 1, 2)
    with pytest.raises(ConfigError, match="preset"):
        study_configs(build_parser().parse_args(["--preset", "tpu", "--setting", "synthetic"]))
    with pytest.raises(ConfigError):
        build_parser().parse_args(["--scale", "cpu"])


def test_study_plan_jobs_live_in_the_jobs_module(tmp_path):
    plan = plan_study(cpu_study_config("synthetic"), tmp_path)
    assert {j.fn.split(":")[0] for j in plan.jobs} == {"analyses.tinystories.jobs"}
    assert {j.fn.split(":")[1] for j in plan.jobs} == {
        "job_tokenizer",
        "job_pretrain",
        "job_deletion",
        "job_recovery",
        "job_analysis",
    }


def test_report_writer_takes_the_whole_results_and_refuses_an_empty_study(tmp_path):
    from analyses.tinystories.report import write_study_report
    from interp.errors import DataError

    with pytest.raises(DataError, match="finished"):
        write_study_report(
            {"study": "tinystories", "settings": {"synthetic-twist": {"complete": False}}},
            tmp_path / "r.html",
        )


def test_cli_stages_use_the_recipe_and_lr_levels_follow_the_base_links(tmp_path, capsys):
    parser = ArgParser(prog="ftmech")
    add_commands(parser.add_subparsers(dest="command"))
    tiny = ["--steps", "2", "--batch-size", "4", "--device", "cpu"]

    def run(*argv: str) -> dict:
        args = parser.parse_args(["tinystories", *argv])
        args.handler(args)
        return json.loads(capsys.readouterr().out)

    data = ["--n-stories", "200", "--n-ctx", "256", "--vocab-size", "300"]
    run("pretrain", *data, *tiny, "--out", str(tmp_path / "pt"))
    deleted = run("delete", str(tmp_path / "pt"), "--lr-level", "M", *tiny, "--out", str(tmp_path / "del"))
    recovered = run(
        "recover", str(tmp_path / "del"), "--n-generations", "2", *tiny, "--out", str(tmp_path / "rec")
    )
    eta_pt = cpu_study_config("synthetic").pretrain_lr
    assert deleted["lr"] == lr_for_level("M", eta_pt) and recovered["lr"] == lr_for_level("S", eta_pt)
    assert set(recovered["scores"]) == {"0", "1", "2"}
    with pytest.raises(ConfigError, match="--lr-level"):
        run("delete", str(tmp_path / "pt"), *tiny, "--out", str(tmp_path / "x"))


def _hub_copy(folder, n_shards: int = 2, per_shard: int = 30):
    """A tiny local TinyStories_all_data: data*.json shards of records with the hub's fields."""
    folder.mkdir()
    features = (["Twist", "Dialogue"], ["Foreshadowing"], [], ["Twist", "BadEnding"])
    for i in range(n_shards):
        records = [
            {
                "story": f"Tom {j} went to the park. He saw a dog. Then, to everyone's surprise, it began to talk!"
                if "Twist" in features[j % 4]
                else f"Lily {j} played with a ball. It was red. She was happy.",
                "instruction": {
                    "prompt:": "Write a story.",
                    "words": ["park", "dog"],
                    "features": features[j % 4],
                },
                "summary": "A child plays.",
                "source": "GPT-4",
            }
            for j in range(i * per_shard, (i + 1) * per_shard)
        ]
        (folder / f"data{i:02d}.json").write_text(json.dumps(records))
    return folder


def test_hub_setting_reads_a_local_copy_through_the_commands(tmp_path, capsys):
    hub = _hub_copy(tmp_path / "hub")
    args = build_parser().parse_args(["--setting", "hub", "--data-dir", str(hub)])
    (config,) = study_configs(args)
    assert (config.setting, config.feature, config.data_dir) == ("hub", "twist", str(hub.resolve()))
    assert config.data.labelled_features == FEATURES
    parser = ArgParser(prog="ftmech")
    add_commands(parser.add_subparsers(dest="command"))
    data = ["--setting", "hub", "--data-dir", str(hub), "--n-stories", "60", "--vocab-size", "300"]
    args = parser.parse_args(["tinystories", "data", "--set", "filter", "--n", "2", *data])
    args.handler(args)
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines[0]["n_records"] > 0 and all("twist" not in line["features"] for line in lines[1:])
    tiny = ["--steps", "2", "--batch-size", "4", "--device", "cpu", "--out", str(tmp_path / "pt")]
    args = parser.parse_args(["tinystories", "pretrain", "--without-feature", *data, *tiny])
    args.handler(args)
    assert (
        0 < json.loads(capsys.readouterr().out)["n_train"] < 42
    )  # the 42 pretraining stories less the twists


def test_hub_setting_errors_are_one_line_and_name_real_flags(tmp_path):
    with pytest.raises(ConfigError, match="--setting hub needs --data-dir DIR"):
        study_configs(build_parser().parse_args(["--setting", "hub"]))
    with pytest.raises(ConfigError, match="--data-dir is read only by --setting hub"):
        study_configs(build_parser().parse_args(["--setting", "synthetic", "--data-dir", str(tmp_path)]))
    (config,) = study_configs(build_parser().parse_args(["--setting", "hub", "--data-dir", str(tmp_path)]))
    with pytest.raises(DataError) as err:
        load_story_corpus(config.data)
    assert "\n" not in str(err.value) and "data*.json" in str(err.value)
    options = {o for a in build_parser()._actions for o in a.option_strings}
    for hint in (OFFLINE_HINT, str(err.value)):
        assert set(re.findall(r"--[a-z][a-z-]*", hint)) <= options
