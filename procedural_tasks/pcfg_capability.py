"""The PCFG counting capability as audit data: counting O_PT on uncorrelated inputs (C_Te = 0)."""

from interp.capability import Capability, without_overlap
from procedural_tasks.pcfg_protocols import eval_name
from procedural_tasks.pcfg_tasks import PCFGTask, SampleSpec


def counting_capability(
    task: PCFGTask, *, operand: str = "a", n_eval: int = 1000, n_train: int = 2000, seed: int = 0
) -> Capability:
    """Counting ``operand`` (``count_a@cte0``): a fresh evaluation set, a disjoint training pool drawn from
    another seed (examples that collide with the evaluation set are dropped), and the count as probe label."""
    spec = SampleSpec(family="count", operand=operand)
    eval_set = task.eval_set(eval_name(operand, 0), spec, n_eval, seed)
    train = without_overlap(task.batch(spec, n_train, seed=seed + 1_000_000, step=0), eval_set.batch)
    return Capability(
        name=f"count({operand})",
        eval_set=eval_set,
        train=train,
        probe_label=f"count_{operand}",
        description=f"PCFG: count the {operand} tokens of the region (C_Te = 0)",
    )
