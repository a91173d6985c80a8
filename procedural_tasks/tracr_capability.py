"""A compiled Tracr program's own task as an audit ``Capability``.

The capability is r(x, O_PT), the program's pretraining answer (count of a, or the letter after the max),
read at the last letter of inputs drawn without the fine-tuning correlation (C_Te = 0). The training pool
comes from the program's training stream, disjoint from the evaluation stream and de-duplicated against it.
"""

from interp.batches import EvalSet, concat_batches
from interp.capability import Capability, without_overlap
from procedural_tasks.tracr_batches import dataset_batch, eval_name, make_eval_data, training_batch_fn
from procedural_tasks.tracr_models import CompiledProgramInfo


def program_capability(
    info: CompiledProgramInfo, *, n_eval: int, seed: int, n_letters: int | None = None
) -> Capability:
    """r(x, O_PT) on uncorrelated inputs (``n_letters`` long; the program's own length when None); probe
    label: the answer itself (``answer_pt``)."""
    config = info.config
    data = make_eval_data(config, n_eval, seed=seed, c_te=0, n_letters=n_letters)
    eval_batch = dataset_batch(data, target="pt")
    pool = training_batch_fn(config, target="pt", batch_size=n_eval, seed=seed, c_tr=0.0, n_letters=n_letters)
    train_batch = without_overlap(concat_batches([pool(0), pool(1)]), eval_batch)
    length = f"{n_letters}-letter" if n_letters is not None else "full-length"
    return Capability(
        name=f"{info.name}: r(x, {config.operand_pt})",
        eval_set=EvalSet(name=eval_name("pt", 0), batch=eval_batch),
        train=train_batch,
        probe_label="answer_pt",
        description=f"the compiled {info.name} program on {length} inputs without the correlation",
    )
