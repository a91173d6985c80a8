"""``ftmech probe | prune | diff | patch``: the analysis library on any model directory and capability.

``analyses/cli.py`` calls ``add_commands(subparsers)``. Handlers open models with
``analyses.audit_inputs.load_model`` (ftmech checkpoints of every study, local Hugging Face models) and take
their data from a capability spec (``--capability pcfg:count:a``, ``tracr:counter``, ``jsonl:PATH``): its
evaluation set is what is probed, pruned against, diffed and patched on; its training pool scores pruning
units. With ``--out``, each command writes ``config.json`` (its arguments and versions), ``summary.json`` (the
full result) and ``report.html`` (through ``write_report``); it always prints a short JSON summary. Errors are
``FtmechError``s.
"""

import argparse
import re
from pathlib import Path

from analyses.audit_inputs import (
    LoadedModel,
    add_capability_flags,
    build_capability,
    check_same_model_family,
    load_model,
)
from interp import hooks
from interp.ablation import ablation_scores
from interp.activations import check_position
from interp.arguments import comma_list, existing_dir, output_flags, positive_int
from interp.capability import Capability
from interp.checkpoints import provenance
from interp.diffing import attention_diff, key_mask, kl_by_position, weight_diff
from interp.errors import ConfigError
from interp.figures import bar_figure, curves_figure
from interp.jsonio import print_json, write_json
from interp.patching import answer_accuracy, answer_logprob, patch_across_models
from interp.probing import ProbeConfig, compare_probes
from interp.pruning import pruning_curve
from interp.relearning import reinitialised
from interp.reports import Section, write_report
from interp.runtime import resolve_device, set_threads

POSITION_NAMES = {"ART": "answer", "Ans": "answer+1"}


# --- shared set-up ---------------------------------------------------------------------------------


def _position(text: str) -> int | str:
    """ART (the answer position), Ans (the answer token), an int, or mean_last_N."""
    if text in POSITION_NAMES:
        return POSITION_NAMES[text]
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    try:
        check_position(text)
    except ConfigError:
        raise ConfigError(
            f"unknown --position '{text}'; use ART, Ans, an integer position or mean_last_N"
        ) from None
    return text


def _open(args: argparse.Namespace, *dirs: str) -> tuple[list[LoadedModel], Capability]:
    """The models in ``dirs`` (one architecture and vocabulary) and the capability, built for the first."""
    set_threads(args.threads)
    device = str(resolve_device(args.device))
    models = [load_model(d, device=device) for d in dirs]
    for other in models[1:]:
        check_same_model_family(models[0], other)
    return models, build_capability(args.capability, models[0], n_eval=args.n, seed=args.seed)


def _write(out: str | None, args: argparse.Namespace, summary: dict, figures, caption: str) -> None:
    """config.json, summary.json and report.html (through ``write_report``) in ``out``, each atomically."""
    if out is None:
        return
    path = Path(out)
    command = {k: v for k, v in vars(args).items() if k != "handler"}
    write_json(path / "config.json", {"command": command, **provenance()})
    write_json(path / "summary.json", summary)
    figures = figures if isinstance(figures, list) else [figures]
    sections = [Section(title=f.layout.title.text, content=f, caption=caption) for f in figures]
    write_report(path / "report.html", title=f"ftmech {args.command}", intro_html="", sections=sections)


# --- probe -----------------------------------------------------------------------------------------


def cmd_probe(args: argparse.Namespace) -> None:
    [loaded], capability = _open(args, args.dir)
    model, data = loaded.model, capability.eval_set
    label = args.label or capability.probe_label or "answers"
    if label != "answers" and label not in data.batch.labels:
        known = ", ".join(["answers", *data.batch.labels])
        raise ConfigError(f"the capability's examples have no label '{label}'; use one of {known}")
    config = ProbeConfig(backend=args.backend, steps=args.steps, seed=args.seed)
    names = hooks.residual_stream(model.cfg.n_layers)
    models = {"model": model, "random_init": reinitialised(model, seed=1_000_003 + args.seed)}
    result = compare_probes(
        models, data, hook_names=names, label=label, position=_position(args.position), config=config
    )
    layers = [f"B{i}" for i in range(len(names))]
    own, rand = result.results["model"], result.results["random_init"]
    curves = [
        (f"probe {label}", [own.task[n].test_accuracy for n in names]),
        ("control task (random labels per type)", [own.control[n].test_accuracy for n in names]),
        ("random-init model", [rand.task[n].test_accuracy for n in names]),
    ]
    fig = curves_figure(
        [{"name": name, "x": list(range(len(names))), "ys": [ys]} for name, ys in curves],
        title=f"Linear probe of {label} at {args.position} ({data.name}, {args.dir})",
        x_title="block output (B0 = embeddings)",
        y_title="held-out accuracy",
        y_range=(0, 1.02),
        reference_lines={"majority floor": own.task[names[0]].majority_floor},
    )
    summary = {"dir": args.dir, "capability": capability.name, "eval_set": data.name, "label": label}
    _write(
        args.out,
        args,
        summary | result.to_json(),
        fig,
        "Probe accuracy per block; the control task and a random-init model are the floors.",
    )
    print_json(
        summary
        | {
            "test_accuracy": {layers[i]: own.task[n].test_accuracy for i, n in enumerate(names)},
            "selectivity": {layers[i]: own.selectivity[n] for i, n in enumerate(names)},
            "random_init": {layers[i]: rand.task[n].test_accuracy for i, n in enumerate(names)},
            "out": args.out,
        }
    )


# --- prune -----------------------------------------------------------------------------------------


def cmd_prune(args: argparse.Namespace) -> None:
    [loaded], capability = _open(args, args.dir)
    model, data = loaded.model, capability.eval_set
    if args.method == "ablation" and args.level != "neuron":
        raise ConfigError("--method ablation ranks MLP neurons; use --level neuron or --method saliency")
    scores = ablation_scores(model, capability.train) if args.method == "ablation" else None
    curve = pruning_curve(
        model, capability.train, [data], ks=range(args.k_max + 1), level=args.level, scores=scores
    )
    fig = curves_figure(
        [{"name": name, "x": list(curve.ks), "ys": [list(v)]} for name, v in curve.accuracy.items()],
        title=f"{args.method.capitalize()} pruning ({args.level}) of {args.dir}: {capability.name}",
        x_title="units pruned (K)",
        y_title="accuracy",
        y_range=(0, 1.02),
    )
    summary = {"dir": args.dir, "capability": capability.name, **curve.to_json()}
    caption = "Accuracy on the capability's evaluation set after pruning the top-K units (scored on its training pool)."
    _write(args.out, args, summary, fig, caption)
    best_k, best = curve.best(data.name)
    print_json(
        {
            "level": args.level,
            "method": args.method,
            "accuracy_k0": curve.accuracy[data.name][0],
            "best": {"k": best_k, "accuracy": best},
            "first_units": list(curve.units[:5]),
            "out": args.out,
        }
    )


# --- diff ------------------------------------------------------------------------------------------


def _key_groups(loaded: LoadedModel, tokens, words: tuple[str, ...]) -> dict:
    """One key mask per token string of ``--attend-to``, looked up in the model's vocabulary."""
    if not words:
        return {}
    if loaded.vocabulary is None:
        raise ConfigError(f"{loaded.path} names no vocabulary; --attend-to needs token strings it knows")
    index = {word: i for i, word in enumerate(loaded.vocabulary)}
    unknown = [w for w in words if w not in index]
    if unknown:
        raise ConfigError(f"--attend-to tokens {unknown} are not in the vocabulary of {loaded.path}")
    return {w: key_mask(tokens, [index[w]]) for w in words}


def _diff_figures(base, rows: list, kl, attention) -> list:
    """Relative weight change per matrix, KL per position and, with ``--attend-to``, attention mass per head."""
    figures = [
        bar_figure(
            [{"name": "||dW||/||W||", "x": [m.name for m in rows], "ys": [[m.relative for m in rows]]}],
            title="Relative weight change ||dW|| / ||W|| per matrix",
            x_title="matrix",
            y_title="relative change",
        ),
        curves_figure(
            [{"name": "KL", "x": list(range(len(kl.per_position))), "ys": [list(kl.per_position)]}],
            title="KL(base || fine-tuned) per position",
            x_title="position",
            y_title="KL (nats)",
        ),
    ]
    if attention is None:
        return figures
    heads = [f"L{layer}.H{h}" for layer in range(base.cfg.n_layers) for h in range(base.cfg.n_heads)]
    series = [
        {
            "name": f"{model_name} -> {word}",
            "x": heads,
            "ys": [[v for layer in attention.mass[model_name][word] for v in layer]],
        }
        for model_name in ("base", "finetuned")
        for word in attention.mass["base"]
    ]
    title = "Attention mass from the answer position to the --attend-to tokens per head"
    return [*figures, bar_figure(series, title=title, x_title="layer.head", y_title="attention mass")]


def cmd_diff(args: argparse.Namespace) -> None:
    (base_dir, ft_dir), capability = _open(args, args.base, args.finetuned)
    base, finetuned, data = base_dir.model, ft_dir.model, capability.eval_set
    weights = weight_diff(base, finetuned)
    kl = kl_by_position(base, finetuned, data)
    groups = _key_groups(base_dir, data.batch.tokens, args.attend_to)
    attention = (
        attention_diff(base, finetuned, data, query_pos="answer", key_groups=groups) if groups else None
    )

    rows = [m for m in weights.matrices if m.relative is not None]
    figures = _diff_figures(base, rows, kl, attention)
    summary = {
        "base": args.base,
        "finetuned": args.finetuned,
        "capability": capability.name,
        "eval_set": data.name,
        "weights": weights.to_json(),
        "kl": kl.to_json(),
        "attention": attention.to_json() if attention is not None else None,
    }
    _write(args.out, args, summary, figures, f"{args.base} vs {args.finetuned} on {data.name}.")
    top = sorted((m for m in rows if m.effective_rank is not None), key=lambda m: -m.relative)[:5]
    print_json(
        {
            "total_relative": weights.total_relative,
            "most_changed": [
                {"name": m.name, "relative": m.relative, "effective_rank": m.effective_rank} for m in top
            ],
            "kl_answer": kl.answer,
            "kl_mean": kl.mean,
            "out": args.out,
        }
    )


# --- patch -----------------------------------------------------------------------------------------


def cmd_patch(args: argparse.Namespace) -> None:
    (base_dir, ft_dir), capability = _open(args, args.base, args.finetuned)
    base, finetuned, data = base_dir.model, ft_dir.model, capability.eval_set
    n_layers = base.cfg.n_layers
    names = [name for layer in range(n_layers) for name in (hooks.attn_out(layer), hooks.mlp_out(layer))]
    names += [hooks.resid_post(layer) for layer in range(n_layers)]
    metric = {"accuracy": answer_accuracy, "logprob": answer_logprob}[args.metric]
    positions = None if args.positions == "all" else "answer"
    results = {
        "base->finetuned": patch_across_models(
            base, finetuned, data, hook_names=names, metric=metric, positions=positions
        ),
        "finetuned->base": patch_across_models(
            finetuned, base, data, hook_names=names, metric=metric, positions=positions
        ),
    }
    fig = bar_figure(
        [
            {"name": f"{d} (target {r.target:.3f})", "x": names, "ys": [[r.patched[n] for n in names]]}
            for d, r in results.items()
        ],
        title=f"Patching one component at a time on {data.name} ({args.metric}, positions {args.positions})",
        x_title="patched component",
        y_title=args.metric,
    )
    summary = {
        "base": args.base,
        "finetuned": args.finetuned,
        "capability": capability.name,
        "eval_set": data.name,
    }
    summary |= {k: v.to_json() for k, v in results.items()}
    _write(
        args.out,
        args,
        summary,
        fig,
        "The metric on the target model with one component patched from the source.",
    )
    print_json(
        {
            direction: {
                "source": r.source,
                "target": r.target,
                "most_restored": max(
                    ((k, v) for k, v in r.restored().items() if v is not None),
                    key=lambda kv: kv[1],
                    default=None,
                ),
            }
            for direction, r in results.items()
        }
        | {"out": args.out}
    )


def add_commands(subparsers) -> None:
    """Add ``probe``, ``prune``, ``diff`` and ``patch`` to the ``ftmech`` subparsers."""
    out_help = "directory for config.json, summary.json and report.html"
    p = subparsers.add_parser("probe", help="linear probes of a label at every block output, with controls")
    p.add_argument("dir", type=existing_dir, help="model directory (checkpoint or Hugging Face)")
    p.add_argument("--label", help="label of the capability's examples to probe (default: its probe label)")
    p.add_argument("--position", default="ART", help="ART, Ans, an integer position, or mean_last_N")
    p.add_argument("--backend", default="torch", choices=["torch", "sklearn"], help="probe optimiser")
    p.add_argument("--steps", type=positive_int, default=4000, help="probe optimizer steps (the study's 4K)")
    add_capability_flags(p)
    output_flags(p, required=False, help=out_help)
    p.set_defaults(handler=cmd_probe)

    p = subparsers.add_parser("prune", help="accuracy after removing the top-K units (study Alg. 3)")
    p.add_argument("dir", type=existing_dir, help="model directory (checkpoint or Hugging Face)")
    p.add_argument("--k-max", type=positive_int, default=15, help="largest number of units pruned")
    p.add_argument("--level", default="neuron", choices=["neuron", "row", "weight"], help="unit granularity")
    p.add_argument(
        "--method",
        default="saliency",
        choices=["saliency", "ablation"],
        help="the study's first-order saliency, or exact single-neuron ablation",
    )
    add_capability_flags(p)
    output_flags(p, required=False, help=out_help)
    p.set_defaults(handler=cmd_prune)

    for name, text in (
        ("diff", "weight, attention and next-token changes from base to fine-tuned"),
        ("patch", "patch each component between base and fine-tuned, both ways"),
    ):
        p = subparsers.add_parser(name, help=text)
        p.add_argument("base", type=existing_dir, help="pretrained model directory")
        p.add_argument("finetuned", type=existing_dir, help="fine-tuned model directory")
        if name == "diff":
            p.add_argument(
                "--attend-to",
                type=comma_list(str),
                default=(),
                help="token strings whose attention mass from the answer position is compared, e.g. a,b",
            )
            p.set_defaults(handler=cmd_diff)
        else:
            p.add_argument("--metric", default="accuracy", choices=["accuracy", "logprob"])
            p.add_argument("--positions", default="all", choices=["all", "answer"], help="positions patched")
            p.set_defaults(handler=cmd_patch)
        add_capability_flags(p, n=500)
        output_flags(p, required=False, help=out_help)
