"""Compile the study's RASP programs with tracr and write procedural_tasks/tracr_weights/{name}.{safetensors,json}.

Needs the ``tracr`` extra (tracr and JAX): ``pip install -c constraints.txt -e ".[tracr]"``, then
    python scripts/compile_tracr.py            # both programs, into the package
The test that compares the stored model with tracr's own (tests/unit/test_tracr_programs.py, ``-k tracr_own``)
runs in the default suite wherever the extra is installed.
The safetensors file holds tracr's raw parameters ("module/param", float32); the JSON beside it holds the
encodings, residual labels, TransformerLens config fields, program config and versions, so that
`procedural_tasks.tracr_models.load_compiled` rebuilds the model with no JAX. Before writing, the script
checks tracr's own model against the pure-Python reference on 200 random inputs per program.
"""

import argparse
import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from procedural_tasks import tracr_compilation, tracr_programs  # noqa: E402
from procedural_tasks.tracr_sampling import sample_letters  # noqa: E402

DEFAULT_OUT = REPO / "procedural_tasks" / "tracr_weights"


def _check_against_reference(model, config: tracr_programs.ProgramConfig, n: int, seed: int) -> None:
    """Run tracr's own forward on n random inputs; every non-BOS position must equal the reference."""
    import jax.numpy as jnp

    letters, _ = sample_letters(config, n, rng=np.random.default_rng(seed))
    tokens = tracr_programs.encode(letters, config=config)
    class_ids = np.asarray(model.forward(model.params, jnp.asarray(tokens)).unembedded_output)
    values = np.array(list(tracr_programs.output_encoding_for(config)), dtype=object)[class_ids[:, 1:]]
    for row, got in zip(letters.tolist(), values, strict=True):
        want = tracr_programs.reference_output(config, row)
        if any(value != want for value in got):
            raise SystemExit(
                f"compile_tracr: tracr's {config.name} gives {list(got)} for {''.join(row)}; want {want}"
            )


def _write_atomic(path: Path, data: bytes) -> None:
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", delete=False) as handle:
        handle.write(data)
    os.chmod(handle.name, 0o644)
    os.replace(handle.name, path)


def compile_and_write(name: str, out_dir: Path, *, check_n: int = 200, seed: int = 0) -> dict:
    """Compile one preset program, check it, and write its two files; returns the metadata."""
    from safetensors.numpy import save

    config = tracr_programs.PROGRAMS[name]
    model = tracr_compilation.compile_program(config)
    _check_against_reference(model, config, check_n, seed)
    arrays, metadata = tracr_compilation.export_compiled(model, config)
    weights = save(dict(sorted(arrays.items())))
    metadata["weights_sha256"] = hashlib.sha256(weights).hexdigest()
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_atomic(out_dir / f"{name}.safetensors", weights)
    _write_atomic(out_dir / f"{name}.json", (json.dumps(metadata, indent=1) + "\n").encode())
    return metadata


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--programs", nargs="+", default=list(tracr_programs.PROGRAMS), choices=list(tracr_programs.PROGRAMS)
    )
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    for name in args.programs:
        metadata = compile_and_write(name, args.out_dir)
        shape = metadata["bridge_config"]
        print(
            json.dumps(
                {
                    "program": name,
                    **{
                        k: shape[k]
                        for k in ("n_layers", "d_model", "d_mlp", "d_head", "d_vocab", "d_vocab_out", "n_ctx")
                    },
                }
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
