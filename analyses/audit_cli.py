"""``ftmech audit``: is a capability removed, wrapped or intact in fine-tuned models, or can we not tell?

Any pair of TransformerLens models of one architecture and vocabulary: ftmech checkpoints or local Hugging
Face model directories. The capability is a spec (``pcfg:count:a``, ``tracr:counter``, ``jsonl:PATH``); one
``--finetuned`` directory per seed, each with an optional never-had-it ``--reference``. The audit measures its
own evidence, relearning included (``interp.audit_evidence``), and writes ``summary.json`` and ``report.html``
with ``--out``.
"""

import argparse
import dataclasses
from pathlib import Path

from analyses.audit_inputs import add_capability_flags, build_capability, check_same_model_family, load_model
from interp.arguments import (
    comma_list,
    existing_dir,
    fraction,
    non_negative_int,
    output_flags,
    positive_float,
    positive_int,
)
from interp.audit import AuditThresholds, Verdict, audit
from interp.audit_evidence import PRUNE_KS, EvidenceConfig, collect_evidence
from interp.checkpoints import provenance
from interp.config import to_dict
from interp.errors import ConfigError
from interp.figures import bar_figure, curves_figure
from interp.jsonio import print_json, write_json
from interp.probing import ProbeConfig
from interp.relearning import RelearnConfig
from interp.reports import Section, Table, write_report
from interp.runtime import resolve_device, set_threads

THRESHOLD_FLAGS = tuple(f.name for f in dataclasses.fields(AuditThresholds) if f.name != "confidence")
THRESHOLD_TYPES = {"prune_k_max": positive_int, "min_revival_speedup": positive_float}  # the rest: fractions


def evidence_config(args: argparse.Namespace) -> EvidenceConfig:
    """The measurement recipe named by the flags."""
    relearn = None
    if not args.no_relearn:
        relearn = RelearnConfig(
            optimizer=args.relearn_optimizer,
            steps=args.relearn_steps,
            lrs=args.relearn_lrs,
            batch_size=args.relearn_batch_size,
            seed=args.seed,
        )
    return EvidenceConfig(
        probe=ProbeConfig(backend="sklearn", max_iter=500, seed=args.seed),
        prune_ks=args.prune_ks,
        prune_level=args.level,
        prune_method=args.prune_method,
        relearn=relearn,
        patch=not args.no_patch,
    )


def _relearning_sections(details: list[dict]) -> list[Section]:
    """The fastest relearning curve per seed of the fine-tuned model and of the reference, if any ran."""
    curves = [d["relearning"] for d in details if "relearning" in d]
    if not curves:
        return []
    series = [
        {
            "name": who,
            "x": curves[0][who]["curve"]["steps"],
            "ys": [c[who]["curve"]["values"] for c in curves],
        }
        for who in ("fine-tuned", "reference")
    ]
    return [
        Section(
            title="Relearning",
            content=curves_figure(
                series, title="Relearning the capability", x_title="step", y_title="accuracy"
            ),
            caption=f"The fastest LR of the sweep per model; reference: {details[0]['reference_kind']}. Each "
            f"model saw {curves[0]['fine-tuned']['examples_seen']} training examples per LR, drawn from a pool "
            f"of {curves[0]['fine-tuned']['pool_size']} disjoint from the evaluation set (relearning can also "
            "teach).",
        )
    ]


def _report(out: Path, verdict: Verdict, details: list[dict], capability: str) -> None:
    rows = [[s.seed, s.label, s.reason] for s in verdict.seeds]
    summary = verdict.summary
    tests = [t for t in summary if summary[t]["threshold"]]
    sections = [
        Section(
            title="Verdict per seed",
            content=Table(columns=("seed", "label", "why"), rows=rows),
            caption=f"Pair label: {verdict.label} ({verdict.reason}).",
        )
    ]
    if tests:
        sections.append(
            Section(
                title="Evidence against its threshold",
                content=bar_figure(
                    [
                        {
                            "name": "statistic / threshold",
                            "x": tests,
                            "ys": [
                                [
                                    (x or 0.0) / summary[t]["threshold"]
                                    for t, x in zip(tests, seed, strict=True)
                                ]
                                for seed in zip(*[summary[t]["per_seed"] for t in tests], strict=True)
                            ],
                        }
                    ],
                    title=f"Audit of {capability}: bars >= 1 pass",
                    x_title="test",
                    y_title="statistic / threshold",
                ),
                caption="Each test's statistic over its threshold, mean over seeds with the min-max band; a test a "
                "seed could not run counts as 0 here.",
            )
        )
    sections += _relearning_sections(details)
    write_report(
        out / "report.html", title=f"ftmech audit: {verdict.label}", intro_html="", sections=sections
    )


def cmd_audit(args: argparse.Namespace) -> None:
    set_threads(args.threads)
    device = str(resolve_device(args.device))
    thresholds = AuditThresholds(
        **{f: getattr(args, f) for f in THRESHOLD_FLAGS if getattr(args, f) is not None}
    )
    repeated = sorted({d for d in args.finetuned if args.finetuned.count(d) > 1})
    if repeated:
        raise ConfigError(f"each --finetuned directory is one seed; {', '.join(repeated)} is given twice")
    if args.reference and len(args.reference) not in (1, len(args.finetuned)):
        raise ConfigError(f"give one --reference, or one per --finetuned directory ({len(args.finetuned)})")
    base = load_model(args.base, device=device)
    finetuned = [load_model(d, device=device) for d in args.finetuned]
    references = [load_model(d, device=device) for d in args.reference or ()]
    for other in (*finetuned, *references):
        check_same_model_family(base, other)
    capability = build_capability(args.capability, base, n_eval=args.n, seed=args.seed)
    config = evidence_config(args)
    measured = [
        collect_evidence(
            base.model,
            ft.model,
            capability,
            reference=references[min(i, len(references) - 1)].model if references else None,
            config=config,
            seed=args.seed + i,
            name=ft.path,
        )
        for i, ft in enumerate(finetuned)
    ]
    verdict = audit([e for e, _ in measured], thresholds)
    if args.out:
        out = Path(args.out)
        command = {k: v for k, v in vars(args).items() if k != "handler"}
        write_json(
            out / "config.json", {"command": command, "evidence_config": to_dict(config), **provenance()}
        )
        write_json(
            out / "summary.json",
            {
                "verdict": verdict.to_json(),
                "evidence": [e.to_json() for e, _ in measured],
                "details": [d for _, d in measured],
            },
        )
        _report(out, verdict, [d for _, d in measured], capability.name)
    print_json(
        {
            "label": verdict.label,
            "reason": verdict.reason,
            "seed_labels": list(verdict.seed_labels),
            "out": args.out,
        }
    )


def add_commands(subparsers) -> None:
    """Add ``audit`` to the ``ftmech`` subparsers."""
    p = subparsers.add_parser(
        "audit", help="is a capability removed, wrapped or intact in fine-tuned models?"
    )
    p.add_argument(
        "--base",
        required=True,
        type=existing_dir,
        help="the pretrained model: checkpoint or Hugging Face directory",
    )
    p.add_argument(
        "--finetuned",
        required=True,
        nargs="+",
        type=existing_dir,
        help="fine-tuned model directories (one per seed)",
    )
    p.add_argument(
        "--reference", nargs="+", type=existing_dir, help="never-had-it model(s): one, or one per --finetuned"
    )
    add_capability_flags(p)
    p.add_argument(
        "--level", default="neuron", choices=["neuron", "row", "weight"], help="pruning granularity"
    )
    p.add_argument(
        "--prune-method", default="ablation", choices=["ablation", "saliency"], help="how units are ranked"
    )
    p.add_argument(
        "--prune-ks",
        type=comma_list(non_negative_int),
        default=PRUNE_KS,
        help="K values of the pruning curve",
    )
    p.add_argument("--relearn-steps", type=positive_int, default=100, help="relearning horizon (steps)")
    p.add_argument(
        "--relearn-lrs", type=comma_list(positive_float), default=(3e-4, 1e-3), help="relearning LR sweep"
    )
    p.add_argument("--relearn-batch-size", type=positive_int, default=32)
    p.add_argument(
        "--relearn-optimizer", default="adamw", choices=["adamw", "sgd"], help="sgd for compiled models"
    )
    p.add_argument("--no-relearn", action="store_true", help="skip relearning (no revival evidence)")
    p.add_argument("--no-patch", action="store_true", help="skip cross-model patching")
    for name in THRESHOLD_FLAGS:
        kind = THRESHOLD_TYPES.get(name, fraction)
        p.add_argument(
            f"--{name.replace('_', '-')}",
            type=kind,
            help=f"threshold (default {getattr(AuditThresholds(), name)})",
        )
    output_flags(p, required=False, help="directory for config.json, summary.json and report.html")
    p.set_defaults(handler=cmd_audit)
