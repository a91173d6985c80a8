"""The Tracr study's ``report.html``: every deviation from the study, Table 3 beside the paper with every
seed's value, the findings, accuracy curves, the counting head's attention maps, single-weight pruning,
reverse fine-tuning and the compiled baselines. Every section is built from ``results.json`` alone, so
``ftmech report DIR`` can rebuild it."""

from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go

from analyses.tracr.config import AS_IN_STUDY, deviation_rows
from analyses.tracr.results import CELLS
from interp.figures import curves_figure, heatmap_grid_figure
from interp.reports import Section, Table, write_report
from procedural_tasks.tracr_batches import eval_name

TABLE3_COLUMNS = (
    "program",
    "eta",
    "C_Tr",
    "O_PT @C_Te=1",
    "O_FT @C_Te=1",
    "O_PT @C_Te=0",
    "O_FT @C_Te=0",
    "diverged",
)


RANGE_BAND = "min-max band over seeds (their range, not a CI)"


def _interval_label(results: dict[str, Any]) -> str:
    """What the cells' [low, high] is: a Student-t CI from schema 2 on, a percentile bootstrap before."""
    if results.get("schema_version", 1) >= 2:
        return "Student-t 95% CI of the mean over seeds (not clipped to 0-100)"
    return "95% percentile bootstrap over seeds (with 3 seeds: n = 3, their range)"


def _deviation_section(results: dict[str, Any]) -> Section:
    """The deviations table (``analyses.tracr.config.DEVIATIONS``) for this run's config."""
    return Section(
        title="Deviations from the study",
        content=Table(
            columns=("", "the study", "ours (this run)", "why"), rows=tuple(deviation_rows(results["config"]))
        ),
        caption="Every way these runs differ from the paper (App. B.1, C.1, D; Tab. 3). As in the study: "
        + "; ".join(AS_IN_STUDY)
        + ".",
    )


def _pct(cell: dict | None) -> str | None:
    if not cell:
        return None
    if cell.get("ci_low") is None:
        return f"{cell['mean']:.1f}"
    return f"{cell['mean']:.1f} [{cell['ci_low']:.1f}, {cell['ci_high']:.1f}]"


def _table3_table(table: list[dict]) -> Table:
    rows = []
    for r in table:
        paper = r["paper"] or {}
        ours = [_pct(r["cells"][c]) for c in CELLS]
        theirs = [None if c not in paper else f"{paper[c]:.1f}" for c in CELLS]
        cells = [f"{o} | {t}" if t else o for o, t in zip(ours, theirs, strict=True)]
        rows.append(
            (r["program"], f"{r['lr']:g}", f"{r['c_tr']:g}", *cells, f"{r['n_diverged']}/{r['n_seeds']}")
        )
    return Table(columns=TABLE3_COLUMNS, rows=tuple(rows))


def _per_seed_table(table: list[dict]) -> Table | None:
    """Every run's final Tab. 3 cells and wrapper floor (%), one row per seed."""
    rows = tuple(
        (
            r["program"],
            f"{r['lr']:g}",
            f"{r['c_tr']:g}",
            s["seed"],
            s["status"],
            *(s["cells"][c] for c in CELLS),
            s["wrapper_floor_o_ft_cte0"],
        )
        for r in table
        for s in r.get("per_seed", [])
    )
    if not rows:
        return None
    columns = ("program", "eta", "C_Tr", "seed", "status", *TABLE3_COLUMNS[3:7], "wrapper floor O_FT @C_Te=0")
    return Table(columns=columns, rows=rows, float_format=".1f")


def _findings_section(findings: list[dict]) -> Section:
    """Each claim's outcome and why (results.json before schema 2 has only ``held``)."""
    outcomes = {True: "held", False: "did not hold", None: "inconclusive"}
    rows = tuple(
        (f["claim"], f.get("outcome", outcomes[f["held"]]), f.get("reason", ""), f["measured"])
        for f in findings
    )
    return Section(
        title="Findings",
        content=Table(columns=("claim", "outcome", "why", "measured (every seed)"), rows=rows),
        caption="Each Tracr claim of the study, checked on every seed: held (on all seeds), did not hold (on "
        "at least one), inconclusive, or not testable here (the claim's premise fails in this run).",
    )


def _table_sections(results: dict[str, Any]) -> list[Section]:
    """Table 3 (and the longer arm's cells) beside the paper, every seed's cells, then the findings."""
    sections = [
        Section(
            title="Table 3: ours | paper",
            content=_table3_table(results["table3"]),
            caption=f"Accuracy (%) at the end of fine-tuning: mean [{_interval_label(results)}] | the paper's "
            "Tab. 3 cell. Diverged runs (non-finite loss) are excluded from the means and counted; every "
            "seed's value is in the next table.",
        )
    ]
    per_seed = _per_seed_table(results["table3"])
    if per_seed is not None:
        caption = (
            "Each run's final accuracy (%) and the wrapper floor: the accuracy of answering count a + q "
            "(Counter) or the letter q places after the 5th largest (Max-identifier) on the same C_Te = 0 inputs."
        )
        sections.append(Section(title="Table 3, every seed", content=per_seed, caption=caption))
    long = results.get("long_horizon") or {}
    if long.get("table3"):
        sections.append(
            Section(
                title=f"Counter, longer arm ({long['steps']} steps)",
                content=_table3_table(long["table3"]),
                caption="The same cells for the longer Counter runs (seeds as listed in the config's long_seeds; "
                "no CI with one seed).",
            )
        )
    sections.append(_findings_section(results["findings"]))
    return sections


def _accuracy_curves(series: list[dict], title: str, x_title: str, y_title: str, **extra: Any) -> go.Figure:
    """A curves figure of accuracies (the y axis from 0 to 1)."""
    return curves_figure(series, title=title, x_title=x_title, y_title=y_title, y_range=(0, 1), **extra)


def _grid_curve_sections(results: dict[str, Any]) -> list[Section]:
    """Per program, Acc O_FT at C_Te=1 and Acc O_PT at C_Te=0 during fine-tuning, one series per eta x C_Tr."""
    config = results["config"]
    caption = (
        f"Mean over seeds with the {RANGE_BAND}; solid C_Tr = 1, dashed C_Tr = 0. Step 0 is the compiled "
        "model after balancing and noise."
    )
    sections = []
    for program in config["programs"]:
        for cell, label in (
            (eval_name("ft", 1), "Acc O_FT at C_Te=1"),
            (eval_name("pt", 0), "Acc O_PT at C_Te=0"),
        ):
            series = _grid_series(config, results["curves"], program, cell)
            if series:
                fig = _accuracy_curves(series, f"{program}: {label}", "SGD step", label)
                sections.append(
                    Section(title=f"{program}: {label} during fine-tuning", content=fig, caption=caption)
                )
    return sections


def _grid_series(config: dict[str, Any], curves: dict[str, dict], program: str, cell: str) -> list[dict]:
    """One series of ``cell`` per eta x C_Tr of ``program`` whose seeds share their evaluation steps."""
    series = []
    for level in config["lr_levels"]:
        for c_tr in config["c_trs"]:
            runs = [v for k, v in curves.items() if k.startswith(f"finetune/{program}/{level}/{c_tr:g}/")]
            if not runs or len({len(v["steps"]) for v in runs}) != 1:
                continue
            series.append(
                {
                    "name": f"eta_{level} C_Tr={c_tr:g}",
                    "x": runs[0]["steps"],
                    "ys": [v[cell] for v in runs],
                    "dash": "solid" if c_tr == 1.0 else "dash",
                }
            )
    return series


def _long_curve_sections(results: dict[str, Any]) -> list[Section]:
    """The longer Counter arm's Acc O_FT and Acc O_PT at C_Te=0 during fine-tuning."""
    long_curves = {k: v for k, v in results["curves"].items() if k.startswith("long/")}
    if not long_curves:
        return []
    series = [
        {
            "name": f"{k.split('/')[2]} C_Tr={k.split('/')[3]} {cell}",
            "x": v["steps"],
            "ys": [v[cell]],
            "dash": "solid" if cell == eval_name("ft", 0) else "dot",
        }
        for k, v in sorted(long_curves.items())
        for cell in (eval_name("ft", 0), eval_name("pt", 0))
    ]
    fig = _accuracy_curves(series, "Counter, longer arm", "SGD step", "accuracy")
    caption = "Acc O_FT at C_Te=0 (solid: has the model learned to count b?) and Acc O_PT at C_Te=0 (dotted)."
    return [Section(title="Counter, longer arm: accuracy during fine-tuning", content=fig, caption=caption)]


def _attention_map_sections(results: dict[str, Any]) -> list[Section]:
    """Counter's counting-head attention on one input: compiled+noise, then eta_S/eta_M and the longer arm."""
    maps = results["attention_maps"]
    counter_maps = {k: v for k, v in maps.items() if k.startswith("finetune/counter/")}
    if not counter_maps:
        return []
    first = next(iter(counter_maps.values()))
    panels = {"compiled (+noise)": first["start"]}
    for key, value in counter_maps.items():
        _, _, level, c_tr, _ = key.split("/")
        if level in ("S", "M") and value["letters"] == first["letters"]:
            panels[f"eta_{level} C_Tr={c_tr}"] = value["finetuned"]
    for key, value in maps.items():
        if key.startswith("long/counter/") and value["letters"] == first["letters"]:
            _, _, level, c_tr, _ = key.split("/")
            panels[f"eta_{level} C_Tr={c_tr}, long"] = value["finetuned"]
    labels = ["$", *first["letters"]]
    return [
        Section(
            title="Counter: counting-head attention, compiled vs fine-tuned (Fig. 10)",
            content=heatmap_grid_figure(
                panels,
                x_labels=labels,
                y_labels=labels,
                title="block-1 attention",
                cols=3,
                zmin=0,
                zmax=1,
            ),
            caption="Block-1 attention pattern (rows: query positions, columns: keys) on one input, seed 0. The compiled "
            "head attends to BOS and to every 'a'; a head that learned to count b would attend to the 'b's.",
        )
    ]


def _pruning_sections(results: dict[str, Any]) -> list[Section]:
    """Counter's count-a accuracy after pruning the top-K single weights, per eta x C_Tr."""
    pruning = [r for r in results["pruning"] if r["program"] == "counter"]
    if not pruning:
        return []
    series = [
        {
            "name": f"eta_{r['lr_level']} C_Tr={r['c_tr']:g}",
            "x": r["ks"],
            "ys": r["per_seed_acc_o_pt_cte0"],
            "dash": "solid" if r["c_tr"] == 1.0 else "dash",
        }
        for r in pruning
    ]
    fig = _accuracy_curves(
        series, "Acc O_PT (C_Te=0) after pruning the top-K weights", "K weights pruned", "Acc O_PT"
    )
    caption = (
        f"Count-a accuracy after zeroing the K weights with the highest grad x weight on the count-a loss "
        f"(interp.pruning, weight level): mean over seeds with the {RANGE_BAND}. The study reports >60 points "
        "from K = 1."
    )
    return [Section(title="Counter: single-weight pruning", content=fig, caption=caption)]


def _reverse_sections(results: dict[str, Any]) -> list[Section]:
    """Count-a accuracy during reverse fine-tuning, per arm (after eta_M, eta_L, ..., the control)."""
    series = []
    for name, arm in results["reverse_ft"].items():
        curves = [e["revival"] for e in arm["per_seed"].values() if e["revival"]]
        if curves and len({len(c["steps"]) for c in curves}) == 1:
            series.append(
                {
                    "name": name,
                    "x": [max(1, s) for s in curves[0]["steps"]],
                    "ys": [c["values"] for c in curves],
                }
            )
    if not series:
        return []
    title = "Acc O_PT (C_Te=0) during reverse fine-tuning"
    revived = {"revived": results["config"]["reverse_threshold"]}
    fig = _accuracy_curves(series, title, "step (log)", "Acc O_PT", log_x=True, reference_lines=revived)
    caption = (
        f"Mean over seeds with the {RANGE_BAND}. The Scr.+FT control is the compiled Counter for b (an exact "
        "edit of the operand detector), balanced and noised like the fine-tuned models."
    )
    return [Section(title="Counter: reverse fine-tuning to count a at eta_VS", content=fig, caption=caption)]


def _baseline_sections(results: dict[str, Any]) -> list[Section]:
    """The compiled programs' count-a accuracy under each weight-noise std, balanced or not."""
    rows = [
        (
            program,
            row["weights"],
            row["std"],
            float(np.mean(row["acc_o_pt_cte0"])),
            ", ".join(f"{a:.3f}" for a in row["acc_o_pt_cte0"]),
        )
        for program, base in results["baselines"].items()
        if base
        for row in base["noise_sweep"]
    ]
    if not rows:
        return []
    return [
        Section(
            title="Compiled models under weight noise",
            content=Table(
                columns=("program", "weights", "noise std", "Acc O_PT (C_Te=0), mean", "each seed"),
                rows=tuple(rows),
            ),
            caption="Count-a accuracy of the compiled programs under N(0, std^2) on every weight, per seed. "
            "'compiled': the weights as tracr wrote them; 'balanced': each ReLU neuron rescaled to equal "
            "input/output norms (same function). The paper's std is 1e-3; ours is the config's noise_std.",
        )
    ]


def write_study_report(results: dict[str, Any], path: Path) -> Path:
    """report.html from the study's results (as written to results.json); returns its path."""
    sections = [
        _deviation_section(results),
        *_table_sections(results),
        *_grid_curve_sections(results),
        *_long_curve_sections(results),
        *_attention_map_sections(results),
        *_pruning_sections(results),
        *_reverse_sections(results),
        *_baseline_sections(results),
    ]
    config = results["config"]
    intro = (
        "<p>Fine-tuning the compiled Tracr Counter (count b instead of a) and Max-identifier (6th instead of 5th "
        f"largest) at CPU scale: {config['counter_steps']} / {config['max_identifier_steps']} "
        f"SGD steps (the study: 10K), batch 96, seeds {config['seeds']}; wall time "
        f"{results['wall_seconds']:.0f} s with {results['workers']} workers. The first table lists every way "
        "these runs differ from the study; results.json has every number.</p>"
    )
    return write_report(
        path,
        title="ftmech: Tracr study",
        intro_html=intro,
        sections=sections,
        data={"table3": results["table3"]},
    )
