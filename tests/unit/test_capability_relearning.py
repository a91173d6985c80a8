"""Capabilities are data with a disjoint training pool; relearning censors; ablation finds a planted wrapper."""

import json

import pytest
import torch

from interp.ablation import ablation_scores
from interp.batches import Batch, EvalSet
from interp.capability import Capability, capability_from_jsonl, without_overlap
from interp.errors import DataError
from interp.relearning import RelearnConfig, reinitialised, relearn
from tests.unit.test_pruning import PLANTED, planted_model


def _batch(tokens: torch.Tensor) -> Batch:
    return Batch(
        tokens=tokens, answer_pos=torch.full((len(tokens),), tokens.shape[1] - 1), answers=tokens[:, 0]
    )


def test_overlapping_training_and_evaluation_examples_are_refused_and_can_be_dropped():
    tokens = torch.arange(40).reshape(10, 4)
    with pytest.raises(DataError, match="also occur in the evaluation set"):
        Capability(name="c", eval_set=EvalSet("e", _batch(tokens[:6])), train=_batch(tokens[4:]))
    train = without_overlap(_batch(tokens[4:]), _batch(tokens[:6]))
    assert len(train) == 4 and Capability(name="c", eval_set=EvalSet("e", _batch(tokens[:6])), train=train)


def test_split_eval_gives_disjoint_halves_and_train_batches_are_seeded():
    tokens = torch.arange(80).reshape(20, 4)
    cap = Capability(name="c", eval_set=EvalSet("e", _batch(tokens[:10])), train=_batch(tokens[10:]))
    select, report = cap.split_eval()
    assert len(select.batch) == len(report.batch) == 5
    assert not set(select.batch.tokens[:, 0].tolist()) & set(report.batch.tokens[:, 0].tolist())
    draw = cap.train_batches(batch_size=6, seed=3)
    assert torch.equal(draw(5).tokens, draw(5).tokens) and not torch.equal(draw(5).tokens, draw(6).tokens)


def test_jsonl_capability_encodes_prompts_and_first_answer_tokens(tmp_path):
    words = {w: i for i, w in enumerate(["<pad>", "<bos>", *[f"w{i}" for i in range(12)]])}
    path = tmp_path / "pairs.jsonl"
    path.write_text(
        "\n".join(
            json.dumps({"prompt": f"w{i} w{j}", "answer": f"w{(i + j) % 12}"})
            for i in range(4)
            for j in range(4)
        )
    )
    cap = capability_from_jsonl(
        path, lambda t: [1] + [words[w] for w in t.split()], lambda t: [words[w] for w in t.split()], seed=1
    )
    batch = cap.eval_set.batch
    assert len(batch) + len(cap.train) == 16 and batch.tokens.shape[1] == 3
    assert torch.equal(batch.answer_pos, torch.full((len(batch),), 2))
    (tmp_path / "bad.jsonl").write_text('{"prompt": "w1"}\n')
    with pytest.raises(DataError, match="bad.jsonl:1"):
        capability_from_jsonl(tmp_path / "bad.jsonl", lambda t: [1], lambda t: [1])


def test_ablation_ranks_the_planted_wrapper_neuron_first():
    model, batch = planted_model()
    assert ablation_scores(model, batch).top(1) == (PLANTED,)


def test_relearning_never_reaching_the_threshold_is_censored_not_missing():
    model, batch = planted_model()
    cap = Capability(name="c", eval_set=EvalSet("e", batch.slice(0, 80)), train=batch.slice(80, 160))
    result = relearn(
        reinitialised(model, seed=1),
        cap,
        RelearnConfig(steps=2, lrs=(1e-4,), batch_size=8),
        threshold=0.99,
        name="r",
    )
    assert result.curve.steps_to_threshold is None and result.curve.horizon == 2
    assert result.examples_seen == 16 and result.pool_size == 80
