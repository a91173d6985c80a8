"""The PCFG study's HTML report: the study's figures re-made from our results, with seed bands."""

import html
import math
from pathlib import Path
from typing import Any

from analyses.paper_numbers import PCFG_HEADLINES, PCFG_PRETRAINED_COUNT_B, PCFG_TABLE5
from analyses.pcfg.config import DEVIATIONS
from interp.figures import bar_figure, curves_figure
from interp.lr_levels import LABELLINGS, OURS
from interp.reports import Section, Table, write_report

EVAL_LABELS = {
    "count_a@cte0": "O_PT (count a), C_Te=0",
    "count_a@cte1": "O_PT (count a), C_Te=1",
    "count_b@cte0": "O_FT (count b), C_Te=0",
    "count_b@cte1": "O_FT (count b), C_Te=1",
}

PROBE_CAPTION = (
    "A linear probe at the ART position of each residual-stream site. Random init is the floor, the pretrained "
    "model the ceiling; the Scr.+FT control shows what a model never asked to count a still encodes. "
    "Selectivity against a random-label control task is in results.json."
)
PRUNING_CAPTION = (
    "One-shot grad x weight saliency on the pretraining task (count a), MLP neurons; the top-K are zeroed in a "
    "copy. If O_PT returns while O_FT at C_Te=1 falls, a few neurons carried the wrapper. Most frequent top "
    "units per seed: "
)


def _fmt(agg: dict | None, scale: float = 100.0) -> str:
    if not agg or agg.get("mean") is None:
        return "-"
    text = f"{scale * agg['mean']:.1f}"
    if agg.get("ci_low") is not None:
        text += f" [{scale * agg['ci_low']:.1f}, {scale * agg['ci_high']:.1f}]"
    return text


def _series(curves: dict, eval_name: str, name: str, *, log_x: bool = False) -> dict | None:
    """One figure series of a curve; on a log axis step 0 is drawn at 1."""
    c = curves.get(eval_name)
    if not c:
        return None
    x = [max(1, s) for s in c["steps"]] if log_x else c["steps"]
    return {"name": name, "x": x, "ys": c["per_seed"]}


def _curves(
    title: str, series: list[dict], x_title: str, caption: str, *, figure_title: str = "", **figure: Any
) -> Section:
    """A section of one figure of curves, by default of accuracy (titled ``figure_title``, else ``title``)."""
    axes = {"y_title": "accuracy", "y_range": (0, 1.02)} | figure
    fig = curves_figure(series, title=figure_title or title, x_title=x_title, **axes)
    return Section(title=title, content=fig, caption=caption)


def _finetune_curves(
    title: str, rows: list[dict], eval_name: str, caption: str, *, floor: float | None = None
) -> Section:
    """Figs. 5-6: one fine-tuning curve of ``eval_name`` per setting."""
    series = [s for s in (_series(r["curves"], eval_name, r["name"], log_x=True) for r in rows) if s]
    lines = {"shortcut floor (count a + q)": floor} if floor is not None else None
    x_title = "fine-tuning step (log; step 0 drawn at 1)"
    return _curves(title, series, x_title, caption, reference_lines=lines, log_x=True)


def _lr_label(level: str, lr: float, pretrain_lr: float, labelling: str) -> str:
    """The LR under both of the study's labellings, e.g. ``eta_M (main text) = eta_L (appendix) = 1e-04``."""
    if level == OURS:
        return f"eta_PT (ours) = {lr:.0e}"
    names = [
        f"eta_{lvl} ({name.replace('_', ' ')})"
        for name, levels in LABELLINGS.items()
        for lvl, divisor in levels.items()
        if lvl != OURS and math.isclose(pretrain_lr / divisor, lr)
    ]
    return " = ".join(names or [f"eta_{level} ({labelling})"]) + f" = {lr:.0e}"


def _table5(results: dict) -> Table:
    cfg = results["config"]
    rows = []
    for r in results["finetune"]:
        pa = r["prior_values"][0]
        paper = PCFG_TABLE5.get((r["lr"], pa, r["c_tr"]))
        final = r["final"]
        rows.append(
            [
                r["prior"],
                f"{pa:g}",
                _lr_label(r["lr_level"], r["lr"], cfg["pretrain_lr"], cfg["lr_labelling"]),
                f"{r['c_tr']:g}",
                _fmt(final.get("count_a@cte0strict")),
                _fmt(final.get("count_b@cte0strict")),
                _fmt(final.get("count_b@cte0")),
                _fmt(r["shortcut_floor_b0"]),
                _fmt(final.get("count_b@cte1")),
                " / ".join(f"{v:g}" for v in paper) if paper else "-",
            ]
        )
    return Table(
        columns=[
            "prior",
            "P_T(a)",
            "LR",
            "C_Tr",
            "O_PT @C_Te=0 strict",
            "O_FT @C_Te=0 strict",
            "O_FT @C_Te=0 plain",
            "shortcut floor @plain",
            "O_FT @C_Te=1",
            "paper Tab. 5 (O_PT / O_FT @C_Te=0 / O_FT @C_Te=1), same LR, P_T(a), C_Tr",
        ],
        rows=rows,
    )


def _revival_sections(results: dict) -> list[Section]:
    """Fig. 9's curves and the speed-up table (either left out when there is nothing to show)."""
    rev = results["revival"]
    series = [_series(rev["curves"], name, name, log_x=True) for name in rev["curves"]]
    caption = (
        "Fine-tuned models trained back on counting a, beside the controls trained with the identical recipe: "
        "Scr.+FT (pretrained never asked to count a; a longer horizon, so speed-ups against it are measured) "
        "and Scr. (random init). A wrapped capability comes back within a few steps; a control has to learn it."
    )
    x_title = "reverse fine-tuning step (log; step 0 drawn at 1)"
    figure_title = "Reverse fine-tuning: O_PT accuracy (count a, C_Te=0)"
    sections = []
    if series:
        sections.append(
            _curves("Revival (Fig. 9)", series, x_title, caption, figure_title=figure_title, log_x=True)
        )
    speedups = _speedup_table(rev)
    if speedups.rows:
        sections.append(
            Section(
                title="Revival speed-up",
                content=speedups,
                caption=f"Threshold: {rev['threshold_frac']:.0%} of the pretrained model's O_PT accuracy, "
                "per seed. '>=' marks a control that never reached it within its horizon (a lower bound).",
            )
        )
    return sections


def _speedup_table(rev: dict) -> Table:
    """Per fine-tuned model and control: steps to threshold per seed, speed-ups and the log-step AUC."""
    rows = []
    for name, per in rev["speedups"].items():
        m = rev["metrics"].get(name, {})
        for control, s in per.items():
            seeds = ", ".join(
                "-" if i["value"] is None else f"{'>=' if i['lower_bound'] else ''}{i['value']:.1f}x"
                for i in s["per_seed"]
            )
            steps = ", ".join(str(x) if x is not None else "never" for x in m.get("steps_to_threshold", []))
            ctrl = ", ".join(
                str(i["control_steps"]) if i["control_steps"] is not None else "never" for i in s["per_seed"]
            )
            rows.append(
                [
                    name,
                    control,
                    steps,
                    ctrl,
                    seeds,
                    f"{s['geometric_mean']:.1f}x" if s.get("geometric_mean") else "-",
                    _fmt(m.get("auc_agg"), 1),
                ]
            )
    columns = ["reverse FT from", "control", "steps to threshold (per seed)", "control steps (per seed)"]
    columns += ["speed-up per seed", "geometric mean", "AUC over log-steps (mean [CI])"]
    return Table(columns=columns, rows=rows)


def _probe_sections(a: dict) -> list[Section]:
    """Fig. 8: probe accuracy per block for count(a) and count(b), one figure each."""
    sections = []
    layers = a["layers"]
    for target, label in (
        ("count_a", "count(a) on count-a inputs (O_PT)"),
        ("count_b", "count(b) on count-b inputs (O_FT)"),
    ):
        series = [
            {"name": model, "x": list(range(len(layers))), "ys": p[target]["accuracy"]["per_seed"]}
            for model, p in a["probes"].items()
        ]
        figure_title = f"Linear probe accuracy per block: {label}"
        sections.append(
            _curves(
                f"Probes: {target} (Fig. 8)",
                series,
                "block (0 = embedding)",
                PROBE_CAPTION,
                figure_title=figure_title,
                y_title="held-out accuracy",
            )
        )
    return sections


def _pruning_sections(a: dict) -> list[Section]:
    """Fig. 7: accuracy after pruning the top-K saliency neurons, beside random units."""
    sections = []
    for name, p in a["pruning"].items():
        series = [{"name": EVAL_LABELS[s], "x": p["ks"], "ys": ys} for s, ys in p["accuracy"].items()]
        series.append(
            {"name": "O_PT, random units (baseline)", "x": p["ks"], "ys": p["random_units_a0"], "dash": "dot"}
        )
        units = "; ".join(", ".join(u[:5]) for u in p["top_units"])
        figure_title = f"Pruning the top-K saliency neurons of {name}"
        sections.append(
            _curves(
                f"Pruning: {name} (Fig. 7)",
                series,
                "neurons pruned (K)",
                PRUNING_CAPTION + units,
                figure_title=figure_title,
            )
        )
    return sections


def _localisation_sections(a: dict) -> list[Section]:
    """Patching and attention (Fig. 10 analogue) between each pretrained and fine-tuned model."""
    sections = []
    for name, loc in a["localisation"].items():
        sections += [_patching_section(name, loc), _attention_section(name, loc)]
    return sections


def _patching_section(name: str, loc: dict) -> Section:
    """The fraction of the O_PT gap each component restores when patched from the pretrained model."""
    keys = list(loc["patch_restored"])
    ys = [
        [v if v is not None else 0.0 for v in vals]
        for vals in zip(*[loc["patch_restored"][k] for k in keys], strict=True)
    ]
    series = [{"name": "fraction of the O_PT gap restored", "x": keys, "ys": ys}]
    title = f"Patching pretrained activations into {name}"
    fig = bar_figure(series, title=title, x_title="component", y_title="restored")
    caption = (
        "Each component's output patched from the pretrained model into the fine-tuned one (all positions), "
        "scored by how much of the O_PT accuracy gap it restores. Largest relative weight change per seed: "
        f"{', '.join(loc['top_weight_change'])}. Top patching site per seed: "
        f"{', '.join(str(t) for t in loc['top_patch'])}."
    )
    return Section(title=f"Localisation: {name}", content=fig, caption=caption)


def _attention_section(name: str, loc: dict) -> Section:
    """Attention mass from the answer position onto a and b tokens, pretrained vs fine-tuned, per layer."""
    att = loc["attention_a_vs_b"]
    n_layers = len(att[0]["base"]["a"])
    series = [
        {
            "name": f"{model} -> {group}",
            "x": [f"L{i}" for i in range(n_layers)],
            "ys": [s[model][group] for s in att],
        }
        for model in ("base", "finetuned")
        for group in ("a", "b")
    ]
    title = f"Attention from ART to a vs b tokens: pretrained (base) vs {name}"
    fig = bar_figure(series, title=title, x_title="layer", y_title="attention mass (head mean)")
    caption = (
        "Mean attention mass from the answer position onto text tokens a and b, per layer. A wrapper keeps "
        "attending to a when asked to count b."
    )
    return Section(title=f"Attention: {name} (Fig. 10 analogue)", content=fig, caption=caption)


def _evidence_text(summary: dict) -> str:
    """Per test: the mean statistic over seeds [t-interval] vs its threshold, and each seed's outcome."""
    parts = []
    for test, row in summary.items():
        interval = row["t_interval"]
        ci = f" [{interval[0]:.3g}, {interval[1]:.3g}]" if interval else ""
        outcomes = ", ".join(o or "not run" for o in row["outcomes"])
        mean = "n/a" if row["mean"] is None else f"{row['mean']:.3g}"
        parts.append(f"{test}: {mean}{ci} vs {row['threshold']:.3g} ({outcomes})")
    return "; ".join(parts)


def _verdict_section(a: dict) -> Section:
    """The audit verdict of each fine-tuned model, with its evidence and every seed's label."""
    rows = [
        [name, v["label"], v["reason"], _evidence_text(v["summary"]), ", ".join(v["seed_labels"])]
        for name, v in a["verdicts"].items()
    ]
    return Section(
        title="Wrapper verdicts",
        content=Table(
            columns=[
                "fine-tuned model",
                "verdict",
                "why",
                "evidence: mean over seeds [95% t-interval] vs threshold (per-seed outcomes)",
                "per-seed verdicts",
            ],
            rows=rows,
        ),
        caption="interp.audit: behaviour, then probe (against the Scr.+FT base as the never-had-it reference), "
        "pruning (K chosen on one half of the evaluation set, reported on the other, against random units), "
        "patching and revival (the study's reverse fine-tuning against Scr.+FT); a tie is inconclusive and the "
        "pair's label needs a majority of seeds. Thresholds: "
        + ", ".join(f"{k}={v}" for k, v in a["thresholds"].items()),
    )


def _analysis_sections(results: dict) -> list[Section]:
    a = results.get("analysis")
    if not a:
        return []
    return [*_probe_sections(a), *_pruning_sections(a), *_localisation_sections(a), _verdict_section(a)]


def _study_vs_ours(results: dict) -> Table:
    pre = results["pretrain"]
    rows = [[k, v, "see the sections above"] for k, v in PCFG_HEADLINES.items()]
    for prior, stats in pre.items():
        b0 = stats["final"].get("count_b@cte0")
        rows.append(
            [
                f"count-b accuracy of the pretrained model, prior {prior}",
                ", ".join(f"{k:g}: {v:g}%" for k, v in PCFG_PRETRAINED_COUNT_B.items()),
                _fmt(b0),
            ]
        )
    return Table(columns=["quantity", "paper", "ours (mean [95% CI] over seeds)"], rows=rows)


def _sizes(results: dict) -> str:
    """The preset's stage lengths, as the intro states them (results.json holds the whole preset)."""
    p = results.get("preset")
    if not p:
        return " (see results.json)"
    return (
        f" ({p['pretrain_steps']:,} pretraining, {p['finetune_steps']:,} fine-tuning and {p['reverse_steps']:,} "
        f"reverse fine-tuning steps of {p['batch_size']} sequences; a {p['task']['window']}-token window)"
    )


def _speed(results: dict) -> str:
    ms = results.get("pretrain_ms_per_step")
    if ms is None:
        return ""
    return (
        f", and pretraining ran at {ms:.0f} ms per step, evaluations included (this machine's speed: the "
        "README's timing table gives the same figure for its runs)"
    )


def _intro(results: dict, findings: list[dict]) -> str:
    cfg = results["config"]
    items = "".join(
        f"<li><b>{html.escape(f['outcome'])}</b>: {html.escape(f['claim'])} &mdash; "
        f"{html.escape(f['measured'])} ({html.escape(f['reason'])})</li>"
        for f in findings
    )
    return (
        f"<p>PCFG study, preset <b>{html.escape(cfg['preset'])}</b>, seeds {cfg['seeds']}, LR labelling "
        f"{html.escape(cfg['lr_labelling'])} (eta_PT = {cfg['pretrain_lr']:g}). This invocation "
        f"took {results['wall_seconds'] / 60:.1f} min; its jobs' run times (cached ones included) sum to "
        f"{results['job_wall_seconds'] / 60:.0f} CPU-min{_speed(results)}. Every number is a mean over seeds "
        "with a Student-t 95% CI; bands show the min-max over seeds.</p>"
        f"<p>Preset sizes{_sizes(results)}. Every difference from the paper is in the table 'Deviations from "
        f"the study' below.</p><ul>{items}</ul>"
    )


def _training_sections(results: dict, findings: list[dict]) -> list[Section]:
    """Findings, pretraining curves, fine-tuning curves (Figs. 5-6) and the Table 5 layout."""
    pre_series = []
    for prior, stats in results["pretrain"].items():
        for name in ("count_a@cte0", "count_b@cte0"):
            s = _series(stats["curves"], name, f"{prior}: {EVAL_LABELS[name]}")
            if s:
                pre_series.append(s)
    sections = [
        Section(
            title="Findings",
            content=Table(
                columns=["claim", "measured", "outcome", "why"],
                rows=[[f["claim"], f["measured"], f["outcome"], f["reason"]] for f in findings],
            ),
            caption="The study's claims checked on our numbers, every seed (analyses/pcfg/findings.py computes "
            "each): held, did not hold, inconclusive (censored revival) or not testable here (a precondition "
            "fails).",
        ),
        _curves(
            "Pretraining",
            pre_series,
            "step",
            "Count a and count b accuracy (C_Te=0) during pretraining, per operand prior.",
            figure_title="Pretraining accuracy",
        ),
    ]
    ft = results["finetune"]
    floor = next((r["shortcut_floor_b0"]["mean"] for r in ft if r.get("shortcut_floor_b0")), None)
    return [
        *sections,
        _finetune_curves(
            "O_FT accuracy during fine-tuning, C_Te=1 (Fig. 5)",
            ft,
            "count_b@cte1",
            "Counting b on inputs that carry the correlation: the wrapper solves these.",
        ),
        _finetune_curves(
            "O_FT accuracy during fine-tuning, C_Te=0 (Fig. 5)",
            ft,
            "count_b@cte0",
            "Counting b without the correlation: a wrapper (count a + q) stays at the shortcut floor.",
            floor=floor,
        ),
        _finetune_curves(
            "O_PT accuracy during fine-tuning, C_Te=0 (Fig. 6)",
            ft,
            "count_a@cte0",
            "Counting a: its behavioural collapse is fastest with a low prior and a high C_Tr.",
        ),
        Section(
            title="Final accuracies (Tab. 5 layout)",
            content=_table5(results),
            caption="Mean [95% Student-t CI] over seeds in %, on fresh evaluation sets. Strict C_Te=0 excludes the "
            "samples where count(b) = count(a) + q by chance (the study's C_Te=0); on the plain set a count(a) + q "
            "wrapper scores the shortcut floor. The paper's cell is for the "
            "same absolute LR, P_T(a) and C_Tr where it reports one (its 200K-step, 10K-step-FT models).",
        ),
    ]


def write_study_report(results: dict[str, Any], path: Path) -> Path:
    """Write the PCFG study's ``report.html`` from its ``results.json`` data."""
    findings = results.get("findings", [])
    sections = _training_sections(results, findings)
    sections += _revival_sections(results)
    sections += _analysis_sections(results)
    sections.append(
        Section(
            title="Deviations from the study",
            content=Table(columns=["the study", "ours", "why"], rows=[list(d) for d in DEVIATIONS]),
            caption="Every way this study differs from the paper (analyses/pcfg/config.py DEVIATIONS; the README "
            "shows the same table). Sizes are the cpu preset's.",
        )
    )
    sections.append(
        Section(
            title="Study vs ours",
            content=_study_vs_ours(results),
            caption="The paper's published numbers beside ours.",
        )
    )
    jobs = Table(
        columns=["job", "status", "wall s", "error"],
        rows=[
            [j["key"], j["status"], f"{j['wall_s']:.0f}" if j["wall_s"] else "-", j["error"] or ""]
            for j in results["jobs"]
        ],
    )
    sections.append(
        Section(title="Runs", content=jobs, caption="Every job of this study, content-addressed under runs/.")
    )
    return write_report(
        path,
        title="ftmech: PCFG fine-tuning study",
        intro_html=_intro(results, findings),
        sections=sections,
        data=results,
    )
