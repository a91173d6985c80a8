"""The audit benchmark: the Tracr cases are what they claim, and the tiny suite runs end to end."""

import json

import torch

from analyses.cli import main
from interp.ablation import ablation_scores
from interp.batches import EvalSet
from interp.evaluation import evaluate
from interp.neuron_change import change_weighted, neuron_change
from interp.pruning import prune_units
from procedural_tasks.tracr_audit_cases import N_LETTERS, base_model, case_models, counter_capability


def test_tracr_wrapped_case_answers_count_plus_one_and_its_neurons_carry_it():
    base, wrapped = case_models("wrapped", seed=0)
    cap = counter_capability(base_model(0)[1], n_eval=200, seed=0)
    batch = cap.eval_set.batch
    assert evaluate(base, cap.eval_set).accuracy == 1.0
    assert torch.equal(wrapped(batch.tokens)[:, -1].argmax(-1), batch.answers + 1)
    unwrapped = prune_units(wrapped, [f"L2.mlp.n{k}" for k in range(N_LETTERS + 1)])
    assert evaluate(unwrapped, EvalSet("e", batch)).accuracy == 1.0


def test_ablation_alone_ranks_an_unchanged_detector_above_the_wrapper_and_change_weighting_does_not():
    base, wrapped = case_models("wrapped", seed=0)
    cap = counter_capability(base_model(0)[1], n_eval=200, seed=0)
    scores = ablation_scores(wrapped, cap.train, max_examples=64)
    assert scores.top(1)[0].startswith("L0.mlp")  # collapses the model onto its most common answer
    weighted = change_weighted(scores, neuron_change(base, wrapped))
    assert all(unit.startswith("L2.mlp") for unit in weighted.top(5))


def test_tracr_intact_case_keeps_the_capability():
    base, intact = case_models("intact", seed=1)
    cap = counter_capability(base_model(1)[1], n_eval=200, seed=1)
    assert evaluate(intact, cap.eval_set).accuracy == 1.0 and not torch.equal(
        base.state_dict()["blocks.0.mlp.in.weight"], intact.state_dict()["blocks.0.mlp.in.weight"]
    )


def test_tiny_bench_writes_a_confusion_matrix_and_a_report(tmp_path, capsys):
    out = tmp_path / "bench"
    assert (
        main(["audit-bench", "--preset", "tiny", "--out", str(out), "--workers", "1", "--no-progress"]) == 0
    )
    results = json.loads((out / "results.json").read_text())
    assert results["study"] == "audit_bench" and results["confusion"]["n_pairs"] == 8
    assert sum(sum(row.values()) for row in results["confusion"]["matrix"].values()) == 8
    assert {p["truth"] for p in results["pairs"]} == {"intact", "wrapped", "removed"}
    capsys.readouterr()
    assert main(["report", str(out)]) == 0 and (out / "report.html").is_file()
