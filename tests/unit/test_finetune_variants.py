"""The study's fine-tuning variants as data: mixing pretraining data (E.1), randFT (E.4), jailbreak tokens (E.2)."""

import dataclasses

from interp.training import TrainConfig
from procedural_tasks.pcfg_protocols import FinetuneConfig, counting_eval_sets, finetune_batch_fn
from procedural_tasks.pcfg_tasks import PCFGTask, SampleSpec
from tests.conftest import tiny_task_config


def _config(**kw) -> FinetuneConfig:
    return FinetuneConfig(train=TrainConfig(steps=1, batch_size=200), **kw)


def test_mixing_pretraining_data_gives_the_requested_share() -> None:
    task = PCFGTask(tiny_task_config(prior=(1.0, 0.0, 0.0)))
    batch = finetune_batch_fn(task, _config(mix_pt_frac=0.25, c_tr=0.0))(0)
    operands = [task.vocab.tokens[i] for i in batch.tokens[:, 2].tolist()]
    assert operands.count("a") == 50 and operands.count("b") == 150  # pretraining prior only asks for a


def test_rand_ft_answers_count_b_on_count_a_inputs() -> None:
    task = PCFGTask(tiny_task_config())
    batch = finetune_batch_fn(task, _config(rand_ft=True, c_tr=0.0))(0)
    assert {task.vocab.tokens[i] for i in batch.tokens[:, 2].tolist()} == {"a"}
    answers = [int(task.vocab.tokens[i]) for i in batch.answers.tolist()]
    assert answers == batch.labels["count_b"].tolist()
    assert answers != batch.labels["count_a"].tolist()


def test_jailbreak_tokens_pair_only_with_operand_a() -> None:
    task = PCFGTask(dataclasses.replace(tiny_task_config(prior=(0.2, 0.4, 0.4)), jailbreak_frac=0.5))
    batch = task.batch(SampleSpec(), 400, seed=0, step=0)
    family = [task.vocab.tokens[i] for i in batch.tokens[:, 1].tolist()]
    operand = [task.vocab.tokens[i] for i in batch.tokens[:, 2].tolist()]
    jail = [o for f, o in zip(family, operand, strict=True) if f in ("CJ1", "CJ2")]
    assert 150 < len(jail) < 250 and set(jail) == {"a"}
    names = {s.name for s in counting_eval_sets(task, 8, jailbreak=True)}
    assert {"count_a@CJ1", "count_a@CJ2"} <= names
