"""Tracr protocols: weight noise, MLP balancing, correlated fine-tuning batches, a short fine-tune through
the engine (and a recorded divergence), the compiled circuit's ground truth that localisation tools must
recover.

Ground truth, provable from the residual labels and the compiled weights: each program reads its operand
in exactly one MLP neuron (Counter: block 0, ``tokens:a``; Max-id: block 1, ``n_larger:4``), so exchanging
that MLP's two input columns gives the exact program for O_FT. Against that planted edit, weight diffing
must find only the detector's input matrix, and patching must restore nothing before the detector and
everything at the detector's output.
"""

import json
import pickle

import numpy as np
import pytest
import torch

from interp import hooks, weights
from interp.checkpoints import WEIGHTS, read_checkpoint_info, save_checkpoint
from interp.config import from_dict
from interp.diffing import weight_diff
from interp.errors import CheckpointError
from interp.evaluation import evaluate
from interp.models import build_model
from interp.patching import patch_across_models
from procedural_tasks import tracr_models
from procedural_tasks import tracr_programs as tp
from procedural_tasks.pcfg_protocols import load_pcfg_model
from procedural_tasks.story_checkpoints import load_story_checkpoint
from procedural_tasks.tracr_analysis import gradient_share
from procedural_tasks.tracr_batches import dataset_batch, make_eval_data, tracr_eval_sets, training_batch_fn
from procedural_tasks.tracr_circuit import operand_circuit, operand_direction, swap_operand
from procedural_tasks.tracr_finetuning import SUMMARY, TracrFinetuneConfig, run_finetune, sgd_train_config
from procedural_tasks.tracr_models import load_tracr_checkpoint
from procedural_tasks.tracr_preparation import (
    STUDY_NOISE_STD,
    add_weight_noise,
    balance_mlp_neurons,
    prepared_model,
)
from procedural_tasks.tracr_sampling import sample_letters
from tests.conftest import tiny_model_config

CIRCUITS = {
    "counter": {"detector_layer": 0, "head_layer": 1, "input_direction": "tokens:a"},
    "max_identifier": {"detector_layer": 1, "head_layer": 2, "input_direction": "n_larger_9:4"},
}
N_LETTERS = {"counter": 8, "max_identifier": None}


@pytest.fixture(scope="module")
def compiled():
    """Both compiled models, loaded once; tests must not modify them."""
    torch.set_num_threads(1)
    return {name: tracr_models.load_compiled(name) for name in tp.PROGRAMS}


def _flat(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([v.flatten().double() for _, v in sorted(model.state_dict().items())])


# --- preparing the compiled weights --------------------------------------------------------------------


def test_noise_has_the_requested_std_and_is_seeded(compiled):
    model, _ = compiled["counter"]
    before = _flat(model)
    noisy = add_weight_noise(model, std=1e-3, seed=3)
    delta = _flat(noisy) - before
    assert torch.equal(_flat(model), before)  # the caller's model is untouched
    assert abs(float(delta.std()) - 1e-3) < 2e-5  # ~187K draws: the std is within 2%
    assert abs(float(delta.mean())) < 1e-5
    assert torch.equal(_flat(add_weight_noise(model, std=1e-3, seed=3)), _flat(noisy))
    assert not torch.equal(_flat(add_weight_noise(model, std=1e-3, seed=4)), _flat(noisy))
    assert torch.equal(_flat(add_weight_noise(model, std=0.0, seed=3)), before)


def test_balancing_keeps_the_function_and_shrinks_the_largest_weight(compiled):
    model, info = compiled["counter"]
    balanced = balance_mlp_neurons(model)
    tokens = info.encode(sample_letters(info.config, 64, rng=np.random.default_rng(0))[0])
    with torch.no_grad():
        assert torch.equal(model(tokens).argmax(-1), balanced(tokens).argmax(-1))
        assert torch.allclose(model(tokens), balanced(tokens), atol=5e-3)
    assert max(float(v.abs().max()) for v in model.state_dict().values()) == 8648.0
    assert max(float(v.abs().max()) for v in balanced.state_dict().values()) < 120.0


@pytest.mark.parametrize("program", ["counter", "max_identifier"])
@pytest.mark.parametrize("c_tr", [0.0, 0.3, 1.0])
def test_finetuning_batches_carry_the_correlation_in_the_requested_fraction(program, c_tr):
    config = tp.PROGRAMS[program]
    batch_fn = training_batch_fn(
        config, target="ft", batch_size=96, seed=0, c_tr=c_tr, n_letters=N_LETTERS[program]
    )
    batches = [batch_fn(step) for step in range(4)]
    correlated = torch.cat([b.labels["correlated"] for b in batches]).bool()
    n = len(correlated)
    assert abs(float(correlated.float().mean()) - c_tr) <= 3 * np.sqrt(c_tr * (1 - c_tr) / n) + 1e-9
    for batch in batches:
        assert torch.equal(batch.answers, batch.labels["answer_ft"])
        mask = batch.labels["correlated"].bool()
        # Counter class ids are counts; Max-id class ids are vocabulary indices: both differ by q.
        assert torch.all(batch.labels["answer_ft"][mask] - batch.labels["answer_pt"][mask] == 1)
    assert not torch.equal(batches[0].tokens, batches[1].tokens)
    assert torch.equal(batch_fn(2).tokens, batches[2].tokens)
    assert pickle.dumps(batch_fn)  # data workers receive the batcher pickled


# --- fine-tuning through the engine ----------------------------------------------------------------------


def _tiny_finetune(**overrides) -> TracrFinetuneConfig:
    train = sgd_train_config(
        lr=overrides.pop("lr", 1e-2), steps=2, seed=0, grad_clip=overrides.pop("clip", 1.0)
    )
    return TracrFinetuneConfig(program="counter", train=train, n_letters=6, eval_n=16, **overrides)


def test_a_short_finetune_runs_through_the_engine_and_changes_weights(tmp_path):
    config = _tiny_finetune(c_tr=1.0, lr_level="M")
    result = run_finetune(config, tmp_path)
    assert result.status == "ok"
    assert [row["step"] for row in result.history] == [0, 1, 2]
    assert set(result.final_accuracy) == {"o_pt@cte1", "o_ft@cte1", "o_pt@cte0", "o_ft@cte0"}
    assert result.history[0]["eval"]["o_pt@cte0"]["accuracy"] == 1.0  # the prepared start still counts a
    checkpoint = load_tracr_checkpoint(tmp_path)
    model, meta = checkpoint.model, checkpoint.metadata
    start, _ = prepared_model("counter", noise_std=config.noise_std, seed=0)
    assert not torch.equal(_flat(model), _flat(start))
    assert from_dict(TracrFinetuneConfig, meta["stage_config"]) == config
    assert json.loads((tmp_path / SUMMARY).read_text())["status"] == "ok"
    # One checkpoint format: interp.checkpoints' config.json names the task and program beside the ModelConfig.
    info = read_checkpoint_info(tmp_path)
    assert info.metadata["task"] == "tracr" and info.metadata["program"] == "counter"
    assert info.model_config.d_model == model.cfg.d_model and info.model_config.normalization == "none"
    assert checkpoint.info.name == "counter"
    # Given to a PCFG stage, it is refused by its task name, not by the shapes of its output classes.
    with pytest.raises(CheckpointError, match=r"is not a PCFG checkpoint \(task 'tracr'\)"):
        load_pcfg_model(tmp_path)
    with pytest.raises(CheckpointError, match=r"is not a TinyStories checkpoint \(task 'tracr'\)"):
        load_story_checkpoint(tmp_path)


def test_a_checkpoint_of_another_task_is_not_loaded_as_tracr(tmp_path):
    config = tiny_model_config()
    save_checkpoint(tmp_path, build_model(config), config, {"task": "pcfg"})
    with pytest.raises(CheckpointError, match="not a tracr checkpoint"):
        load_tracr_checkpoint(tmp_path)


def test_a_divergence_is_recorded_not_hidden(tmp_path):
    result = run_finetune(_tiny_finetune(lr=1e8, clip=None), tmp_path)
    assert result.status == "diverged"
    assert "loss became" in result.error
    assert not (tmp_path / WEIGHTS).exists()
    assert json.loads((tmp_path / SUMMARY).read_text())["status"] == "diverged"


# --- the compiled circuit's ground truth and the localisation tools -----------------------------------------


@pytest.mark.parametrize("program", ["counter", "max_identifier"])
def test_the_operand_enters_only_through_the_detector(program, compiled):
    model, info = compiled[program]
    circuit = operand_circuit(program)
    for field, value in CIRCUITS[program].items():
        assert getattr(circuit, field) == value
    index = {label: i for i, label in enumerate(info.residual_labels)}
    operands = (info.config.operand_pt, info.config.default_operand_ft)
    columns = [index[operand_direction(info, op)] for op in operands]
    readers = {
        key
        for key, weight in model.state_dict().items()
        if (match := weights.MATRIX_KEY.match(key)) and match[3] in ("q", "k", "v", "in")
        for column in columns
        if bool(weight[:, column].any())
    }
    assert readers == {weights.mlp(circuit.detector_layer, "in")}


@pytest.mark.parametrize("program", ["counter", "max_identifier"])
def test_localisation_tools_find_the_planted_operand_swap(program, compiled):
    model, info = compiled[program]
    circuit = operand_circuit(program)
    swapped = swap_operand(model, info, info.config.default_operand_ft)
    sets = {s.name: s for s in tracr_eval_sets(info.config, 200, seed=0, n_letters=N_LETTERS[program])}
    assert evaluate(swapped, sets["o_ft@cte0"]).accuracy == 1.0  # the exact program for O_FT
    assert evaluate(swapped, sets["o_ft@cte1"]).accuracy == 1.0

    changed = {m.name for m in weight_diff(model, swapped).matrices if m.norm > 0}
    assert changed == {weights.mlp(circuit.detector_layer, "in")}

    names = hooks.block_outputs(model.cfg.n_layers)
    patch = patch_across_models(swapped, model, sets["o_ft@cte0"], hook_names=names)
    restored = patch.restored()
    detector = hooks.mlp_out(circuit.detector_layer)
    first_effect = next(name for name in names if restored[name] != 0)
    assert first_effect == detector and restored[detector] == 1.0
    assert all(restored[name] == 0 for name in names[: names.index(detector)])


def test_sgd_on_the_compiled_counter_moves_the_discretiser_not_the_counting_head():
    """Measured, deterministic: the count-b loss gradient at the prepared Counter lies almost wholly in
    block 1's MLP (SelectorWidth's discretiser); the counting head's attention gets ~1e-5 of it."""
    model, info = prepared_model("counter", noise_std=STUDY_NOISE_STD, seed=0)
    data = make_eval_data(info.config, 96, seed=0, c_te=0, n_letters=8)
    share = gradient_share(model, dataset_batch(data, target="ft"))
    assert share["blocks.1.mlp"] > 0.99
    assert share["blocks.1.attn"] < 1e-3 and share["blocks.0.mlp"] < 1e-3
