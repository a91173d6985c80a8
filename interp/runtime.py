"""Devices, thread counts and seeded generators (the only place global torch state is set), and the context
that runs a block with models in eval mode."""

import contextlib
import os
from collections.abc import Iterator

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from interp.errors import ConfigError

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(device: str) -> torch.device:
    """Map ``auto|cpu|cuda`` (or ``cuda:N``) to a torch device; ``auto`` picks CUDA when present."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        return torch.device("cpu")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device '{device}' asked for but CUDA is not available; pass --device auto or cpu"
            )
        return torch.device(device)
    raise ConfigError(f"unknown device '{device}'; use one of {', '.join(DEVICES)}")


THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def set_threads(n_threads: int | None) -> None:
    """Set the threads of torch and of the BLAS and OpenMP pools numpy, scipy and scikit-learn use (those
    loaded now, through threadpoolctl, and those loaded later, through their variables); on a busy small CPU
    one thread per process is fastest, and each pool otherwise starts one thread per core."""
    if n_threads is None:
        n_threads = int(os.environ.get("FTMECH_THREADS", "1"))
    if n_threads < 1:
        raise ConfigError(f"threads must be >= 1, got {n_threads}")
    torch.set_num_threads(n_threads)
    for name in THREAD_VARIABLES:
        os.environ[name] = str(n_threads)
    threadpool_limits(n_threads)


def torch_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A torch.Generator seeded with ``seed``."""
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    return gen


def numpy_rng(*seed: int) -> np.random.Generator:
    """A numpy Generator from one or more ints (e.g. ``numpy_rng(seed, step)`` for per-step data)."""
    return np.random.default_rng(list(seed))


@contextlib.contextmanager
def eval_mode(*models: torch.nn.Module) -> Iterator[None]:
    """The block runs with ``models`` in eval mode; those that were training are switched back after it. A
    model already in eval mode is not touched: switching a TransformerLens bridge walks its hundreds of
    submodules, milliseconds each time, which evaluations in a loop would pay again and again."""
    training = [m for m in models if m.training]
    for m in training:
        m.eval()
    try:
        yield
    finally:
        for m in training:
            m.train()
