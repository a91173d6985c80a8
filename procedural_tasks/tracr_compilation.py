"""Compiling the study's RASP programs with tracr and exporting tracr's parameters for `tracr_models`.

tracr and JAX are the optional `tracr` extra, imported only inside `make_rasp_program` and
`compile_program`. `scripts/compile_tracr.py` runs them once and ships the weights in `tracr_weights/`,
which `procedural_tasks.tracr_models.load_compiled` rebuilds as a TransformerBridge without JAX.
"""

from collections.abc import Sequence
from typing import Any

import numpy as np

from interp.errors import ConfigError
from procedural_tasks.tracr_programs import (
    BOS,
    PAD,
    CounterConfig,
    ProgramConfig,
    input_encoding_for,
    output_encoding_for,
    program_config_to_dict,
)

FORMAT_VERSION = 1  # of the files in tracr_weights/


def make_rasp_program(config: ProgramConfig) -> Any:
    """The RASP program, in the paper's layout: each compiles to 3 single-head blocks.

    Counter: MLP-0 maps tokens == O_PT; attention-1 selects those positions and MLP-1 turns the
    selector width into a categorical count; attention-2 copies it through an identity Select.
    Max-identifier: block 0 counts, for each letter, the letters larger than it (the sort); MLP-1
    marks the one with O_PT - 1 larger letters; attention-2 reads that letter (the "read").
    """
    from tracr.rasp import rasp

    if isinstance(config, CounterConfig):
        operand = config.operand_pt
        is_operand = rasp.categorical(rasp.Map(lambda token: token == operand, rasp.tokens)).named(
            "is_operand"
        )
        select_operand = rasp.Select(is_operand, is_operand, lambda key, query: key).named("select_operand")
        count = rasp.categorical(rasp.SelectorWidth(select_operand)).named("count")
        select_self = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.EQ).named("select_self")
        return rasp.categorical(rasp.Aggregate(select_self, count)).named("counter")

    rank = {letter: i for i, letter in enumerate(config.vocab)}
    target = config.operand_pt - 1
    select_larger = rasp.Select(rasp.tokens, rasp.tokens, lambda key, query: rank[key] < rank[query])
    n_larger = rasp.categorical(rasp.SelectorWidth(select_larger.named("select_larger"))).named("n_larger")
    is_target = rasp.categorical(rasp.Map(lambda n: n == target, n_larger)).named("is_target")
    select_target = rasp.Select(is_target, is_target, lambda key, query: key).named("select_target")
    return rasp.categorical(rasp.Aggregate(select_target, rasp.tokens)).named("max_identifier")


def compile_program(config: ProgramConfig) -> Any:
    """Compile with tracr (needs the `tracr` extra); returns tracr's AssembledTransformerModel."""
    try:
        from tracr.compiler import compiling
    except ImportError as error:
        raise ConfigError(
            "compiling needs tracr and JAX; install the extra (pip install 'ftmech[tracr]') or use the "
            "precompiled weights through procedural_tasks.tracr_models.load_compiled"
        ) from error
    return compiling.compile_rasp_to_model(
        make_rasp_program(config),
        vocab=set(config.vocab),
        max_seq_len=config.max_seq_len,
        compiler_bos=BOS,
        compiler_pad=PAD,
        mlp_exactness=config.resolved_mlp_exactness,
    )


def export_compiled(model: Any, config: ProgramConfig) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Tracr's raw parameters ("module/param" -> float32 array) and the JSON metadata beside them.

    The metadata holds what a JAX-free loader needs: residual labels, input and output encodings,
    the RASP output label, the TransformerLens config fields, the program config and the versions.
    """
    import importlib.metadata as metadata

    arrays = {
        f"{module}/{param}": np.asarray(value, dtype=np.float32)
        for module, params in model.params.items()
        for param, value in params.items()
    }
    model_config = model.model_config
    output_encoding = model.output_encoder.encoding_map
    input_encoding = model.input_encoder.encoding_map
    if input_encoding != input_encoding_for(config) or output_encoding != output_encoding_for(config):
        raise AssertionError("tracr's encodings differ from input_encoding_for/output_encoding_for")
    embed = arrays["token_embed/embeddings"]
    bridge_config = {
        "n_layers": model_config.num_layers,
        "d_model": int(embed.shape[1]),
        "d_head": model_config.key_size,
        "n_heads": model_config.num_heads,
        "d_mlp": model_config.mlp_hidden_size,
        "n_ctx": int(arrays["pos_embed/embeddings"].shape[0]),
        "d_vocab": int(embed.shape[0]),
        "d_vocab_out": len(output_encoding),
        "act_fn": "relu",
        "normalization_type": None,
        "attention_dir": "causal" if model_config.causal else "bidirectional",
    }
    if model_config.layer_norm:
        raise AssertionError("tracr compiled a model with layer norm; the loader assumes none")
    versions = {"format": FORMAT_VERSION}
    for package in ("tracr-pypi", "jax", "jaxlib", "dm-haiku", "numpy"):
        versions[package] = metadata.version(package)
    metadata_json = {
        "program": program_config_to_dict(config),
        "bridge_config": bridge_config,
        "residual_labels": list(model.residual_labels),
        "output_label": _output_label(model.residual_labels, config.name),
        "input_encoding": [[token, index] for token, index in input_encoding.items()],
        "output_encoding": [[value, index] for value, index in output_encoding.items()],
        "bos": BOS,
        "pad": PAD,
        "versions": versions,
    }
    return arrays, metadata_json


def _output_label(residual_labels: Sequence[str], name: str) -> str:
    """The RASP label of the program's result: `make_rasp_program` names it after the program."""
    labels = {label.rpartition(":")[0] for label in residual_labels}
    candidates = [label for label in labels if label.rpartition("_")[0] == name]
    if len(candidates) != 1:
        raise AssertionError(f"cannot tell the output label of {name} among {sorted(labels)}")
    return candidates[0]
