"""Training batches made ahead of the step, so data generation is off the training loop's critical path.

``batch_fn(step)`` is a pure function of the step, so batches made in any number of worker processes, in any
order, are the batches the loop would have made itself; they are handed over in step order.
"""

import pickle
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from multiprocessing import get_context

from interp.batches import Batch
from interp.errors import ConfigError


def _init_worker() -> None:
    """Data workers share the machine with the training process: one torch thread each."""
    from interp.runtime import set_threads

    set_threads(1)


def batches(
    batch_fn: Callable[[int], Batch], steps: range, *, workers: int = 0, depth: int | None = None
) -> Iterator[Batch]:
    """``batch_fn(step)`` for each step in ``steps``, in order.

    With ``workers`` = 0 each batch is made when it is needed. Otherwise ``workers`` spawned processes keep up
    to ``depth`` (default ``2 * workers``) batches ready ahead of the loop; ``batch_fn`` must then pickle (a
    module-level function or a dataclass instance, not a lambda or closure).
    """
    if workers < 0:
        raise ConfigError(f"data_workers must be >= 0, got {workers}")
    if workers == 0:
        yield from (batch_fn(step) for step in steps)
        return
    try:
        pickle.dumps(batch_fn)
    except (pickle.PicklingError, AttributeError, TypeError) as exc:
        raise ConfigError(
            f"data_workers > 0 needs a batch_fn that pickles (a module-level function or a dataclass, not a "
            f"lambda or closure): {exc}"
        ) from None
    ahead = depth or 2 * workers
    pending: deque[Future] = deque()
    upcoming = iter(steps)
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_init_worker) as pool:
        try:
            for step in upcoming:
                pending.append(pool.submit(batch_fn, step))
                if len(pending) >= ahead:
                    break
            while pending:
                batch = pending.popleft().result()
                step = next(upcoming, None)
                if step is not None:
                    pending.append(pool.submit(batch_fn, step))
                yield batch
        finally:
            for future in pending:
                future.cancel()
