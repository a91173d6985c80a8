"""``ftmech probe | prune | diff | patch``: the analysis library on PCFG checkpoints.

``analyses/cli.py`` calls ``add_commands(subparsers)``. Handlers load checkpoints (``load_pcfg_model``) and
build the counting evaluation sets (``count_a@cte0`` ...); the library modules they call never see a PCFG
object. With ``--out``, each command writes
``config.json`` (its arguments and versions), ``summary.json`` (the full result) and ``report.html``
(a self-contained Plotly figure); it always prints a short JSON summary. Errors are ``FtmechError``s.
"""

import argparse
import dataclasses
import re
from pathlib import Path

from interp import hooks
from interp.activations import check_position
from interp.arguments import existing_dir, non_negative_int, output_flags, positive_int
from interp.checkpoints import provenance
from interp.diffing import attention_diff, key_mask, kl_by_position, weight_diff
from interp.errors import ConfigError
from interp.figures import bar_figure, curves_figure
from interp.jsonio import print_json, write_json
from interp.models import build_model
from interp.patching import answer_accuracy, answer_logprob, patch_across_models
from interp.probing import ProbeConfig, compare_probes
from interp.pruning import pruning_curve
from interp.reports import Section, write_report
from interp.runtime import set_threads
from procedural_tasks.pcfg_protocols import counting_eval_sets, eval_name, load_pcfg_model

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


def _setup(args: argparse.Namespace) -> None:
    set_threads(args.threads)


def _load(path: str, device: str):
    return load_pcfg_model(path, device=device)


def _eval_sets(task, args: argparse.Namespace, *, n: int | None = None, seed: int | None = None):
    sets = counting_eval_sets(
        task,
        n or args.n,
        operand_pt=args.operand_pt,
        operand_ft=args.operand_ft,
        q=args.q,
        seed=args.seed if seed is None else seed,
    )
    return {s.name: s for s in sets}


def _pick(sets: dict, name: str):
    if name not in sets:
        raise ConfigError(f"no evaluation set '{name}'; use one of {', '.join(sets)}")
    return sets[name]


def _pt_name(args: argparse.Namespace) -> str:
    return eval_name(args.operand_pt, 0)


def _random_init(info, device: str):
    """A random-init model of the same architecture (a floor for probes and accuracy)."""
    config = dataclasses.replace(info.model_config, seed=info.model_config.seed + 1_000_003)
    return build_model(config, device=device)


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


def _pair(args: argparse.Namespace):
    """(base, fine-tuned, task, O_PT evaluation set) of a two-model command, after checking one task."""
    _setup(args)
    base, _, task = _load(args.base, args.device)
    finetuned, _, task_ft = _load(args.finetuned, args.device)
    _check_same_task(task, task_ft, args.base, args.finetuned)
    return base, finetuned, task, _pick(_eval_sets(task, args), _pt_name(args))


def _check_same_task(task_a, task_b, a: str, b: str) -> None:
    if list(task_a.vocab.tokens) != list(task_b.vocab.tokens):
        raise ConfigError(f"{a} and {b} use different PCFG vocabularies; compare models of one task")


# --- probe -----------------------------------------------------------------------------------------


def _target_label(target: str) -> str:
    """``count:a`` -> the label ``count_a`` of PCFG batches; ``answers`` stays as it is."""
    if target == "answers":
        return target
    m = re.fullmatch(r"(\w+):(\w+)", target)
    if m is None:
        raise ConfigError(f"cannot read --target '{target}'; use FAMILY:OPERAND such as count:a, or answers")
    return f"{m.group(1)}_{m.group(2)}"


def cmd_probe(args: argparse.Namespace) -> None:
    _setup(args)
    model, info, task = _load(args.dir, args.device)
    label = _target_label(args.target)
    operand = args.target.split(":")[1] if ":" in args.target else args.operand_pt
    data = _pick(_eval_sets(task, args), args.eval_set or f"count_{operand}@cte0")
    config = ProbeConfig(backend=args.backend, steps=args.steps, seed=args.seed, n_classes=len(task.vocab))
    names = hooks.residual_stream(model.cfg.n_layers)
    models = {"model": model, "random_init": _random_init(info, args.device)}
    result = compare_probes(
        models, data, hook_names=names, label=label, position=_position(args.position), config=config
    )
    layers = [f"B{i}" for i in range(len(names))]
    own = result.results["model"]
    rand = result.results["random_init"]
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
    summary = {"dir": args.dir, "eval_set": data.name, "label": label, **result.to_json()}
    _write(
        args.out,
        args,
        summary,
        fig,
        "Probe accuracy per block; the control task and a random-init model are the floors.",
    )
    print_json(
        {
            "label": label,
            "eval_set": data.name,
            "test_accuracy": {layers[i]: own.task[n].test_accuracy for i, n in enumerate(names)},
            "selectivity": {layers[i]: own.selectivity[n] for i, n in enumerate(names)},
            "random_init": {
                layers[i]: result.results["random_init"].task[n].test_accuracy for i, n in enumerate(names)
            },
            "out": args.out,
        }
    )


# --- prune -----------------------------------------------------------------------------------------


def cmd_prune(args: argparse.Namespace) -> None:
    _setup(args)
    model, _, task = _load(args.dir, args.device)
    eval_sets = _eval_sets(task, args)
    score = _pick(_eval_sets(task, args, n=args.score_n, seed=args.seed + 1), _pt_name(args))
    curve = pruning_curve(model, score, list(eval_sets.values()), ks=range(args.k_max + 1), level=args.level)
    fig = curves_figure(
        [
            {"name": name, "x": list(curve.ks), "ys": [list(values)]}
            for name, values in curve.accuracy.items()
        ],
        title=f"Saliency pruning ({args.level}) of {args.dir}: scored on {score.name}",
        x_title="units pruned (K)",
        y_title="accuracy",
        y_range=(0, 1.02),
    )
    summary = {"dir": args.dir, "score_set": score.name, **curve.to_json()}
    _write(args.out, args, summary, fig, "Accuracy on each evaluation set after pruning the top-K units.")
    pt = _pt_name(args)
    best_k, best = curve.best(pt)
    print_json(
        {
            "level": args.level,
            "accuracy_k0": {k: v[0] for k, v in curve.accuracy.items()},
            f"best_{pt}": {"k": best_k, "accuracy": best},
            "first_units": list(curve.units[:5]),
            "out": args.out,
        }
    )


# --- diff ------------------------------------------------------------------------------------------


def cmd_diff(args: argparse.Namespace) -> None:
    base, finetuned, task, data = _pair(args)
    weights = weight_diff(base, finetuned)
    kl = kl_by_position(base, finetuned, data)
    tokens = data.batch.tokens
    groups = {op: key_mask(tokens, [task.vocab.id(op)]) for op in (args.operand_pt, args.operand_ft)}
    attention = attention_diff(base, finetuned, data, query_pos="answer", key_groups=groups)

    rows = [m for m in weights.matrices if m.relative is not None]
    heads = [f"L{layer}.H{h}" for layer in range(base.cfg.n_layers) for h in range(base.cfg.n_heads)]
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
        bar_figure(
            [
                {
                    "name": f"{model_name} -> {op}",
                    "x": heads,
                    "ys": [[v for layer in attention.mass[model_name][op] for v in layer]],
                }
                for model_name in ("base", "finetuned")
                for op in groups
            ],
            title="Attention mass from ART to operand tokens per head",
            x_title="layer.head",
            y_title="attention mass",
        ),
    ]
    summary = {
        "base": args.base,
        "finetuned": args.finetuned,
        "eval_set": data.name,
        "weights": weights.to_json(),
        "kl": kl.to_json(),
        "attention": attention.to_json(),
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
    base, finetuned, task, data = _pair(args)
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
    summary = {"base": args.base, "finetuned": args.finetuned, "eval_set": data.name}
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


def _common(p: argparse.ArgumentParser, *, n: int = 1000) -> None:
    p.add_argument("--operand-pt", default="a", help="O_PT, the pretraining operand")
    p.add_argument("--operand-ft", default="b", help="O_FT, the fine-tuning operand")
    p.add_argument("--q", type=int, default=1, help="planted offset of the correlated evaluation sets")
    p.add_argument("--n", type=positive_int, default=n, help="sequences per evaluation set")
    p.add_argument(
        "--seed", type=non_negative_int, default=0, help="seed of the evaluation data (and probes)"
    )
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--threads", type=positive_int, help="torch threads (default $FTMECH_THREADS or 1)")
    output_flags(p, required=False, help="directory for config.json, summary.json and report.html")


def add_commands(subparsers) -> None:
    """Add ``probe``, ``prune``, ``diff`` and ``patch`` to the ``ftmech`` subparsers."""
    p = subparsers.add_parser("probe", help="linear probes of a label at every block output, with controls")
    p.add_argument("dir", type=existing_dir, help="checkpoint directory")
    p.add_argument(
        "--target", default="count:a", help="FAMILY:OPERAND label to probe, e.g. count:a, or answers"
    )
    p.add_argument("--position", default="ART", help="ART, Ans, an integer position, or mean_last_N")
    p.add_argument("--eval-set", help="evaluation set to probe on (default count_<operand>@cte0)")
    p.add_argument("--backend", default="torch", choices=["torch", "sklearn"], help="probe optimiser")
    p.add_argument("--steps", type=positive_int, default=4000, help="probe optimizer steps (the study's 4K)")
    _common(p)
    p.set_defaults(handler=cmd_probe)

    p = subparsers.add_parser("prune", help="accuracy after removing the top-K saliency units (study Alg. 3)")
    p.add_argument("dir", type=existing_dir, help="checkpoint directory")
    p.add_argument("--k-max", type=positive_int, default=15, help="largest number of units pruned")
    p.add_argument("--level", default="neuron", choices=["neuron", "row", "weight"], help="unit granularity")
    p.add_argument("--score-n", type=positive_int, default=512, help="O_PT sequences in the scoring batch")
    _common(p)
    p.set_defaults(handler=cmd_prune)

    p = subparsers.add_parser("diff", help="weight, attention and next-token changes from base to fine-tuned")
    p.add_argument("base", type=existing_dir, help="pretrained checkpoint directory")
    p.add_argument("finetuned", type=existing_dir, help="fine-tuned checkpoint directory")
    _common(p, n=500)
    p.set_defaults(handler=cmd_diff)

    p = subparsers.add_parser("patch", help="patch each component between base and fine-tuned, both ways")
    p.add_argument("base", type=existing_dir, help="pretrained checkpoint directory")
    p.add_argument("finetuned", type=existing_dir, help="fine-tuned checkpoint directory")
    p.add_argument("--metric", default="accuracy", choices=["accuracy", "logprob"], help="O_PT answer metric")
    p.add_argument("--positions", default="all", choices=["all", "answer"], help="positions patched")
    _common(p, n=500)
    p.set_defaults(handler=cmd_patch)
