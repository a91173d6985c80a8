"""``report.html`` of the TinyStories study: per setting, Table 1, Fig. 11 and the findings."""

from pathlib import Path

import numpy as np

from interp.errors import DataError
from interp.figures import bar_figure, curves_figure
from interp.reports import Section, Table, write_report


def _outcome(held: bool | None) -> str:
    """A finding's outcome as the report states it; None means the data cannot decide it."""
    return {True: "held", False: "did not hold"}.get(held, "not measurable")


def _table1(name: str, res: dict) -> Section:
    primary = res["primary_judge"]
    steps = res["table1"]["columns"]
    pretrained = f"{100 * res['pretrained']['score'][primary]['rate']:.0f}%"
    rows = [("pretrained (reference)", *(pretrained if i == 0 else "" for i in range(len(steps))))]
    for row, d in res["table1"]["rows"].items():
        cells = []
        for step in steps:
            c = d["pooled"][str(step)][primary]
            cells.append(
                f"{100 * c['rate']:.0f}% [{100 * c['ci_low']:.0f}, {100 * c['ci_high']:.0f}] (n={c['n']})"
            )
        rows.append((row, *cells))
    columns = [f"step {s} (study {t})" for s, t in zip(steps, res["table1"]["study_columns"], strict=True)]
    return Section(
        title=f"{name}: Table 1, generation score during recovery",
        content=Table(columns=("start", *columns), rows=tuple(rows)),
        caption=(
            f"Percentage of generated stories with the {res['feature']} (judge: {primary}), pooled over seeds, "
            "with the Wilson 95% interval and the number of generations. The first row is the pretrained model."
        ),
    )


def _study_table1(name: str, res: dict) -> Section:
    study = res["table1"]["study_percent_twist"]
    return Section(
        title=f"{name}: the study's Table 1 (twist, 91M model, GPT-3.5 judge, 16 generations a cell)",
        content=Table(
            columns=("start", *[f"step {t}" for t in res["table1"]["study_columns"]]),
            rows=tuple((row, *[f"{v}%" for v in values]) for row, values in study.items()),
        ),
        caption="Jain et al. 2023 Table 1 as printed (analyses.paper_numbers.TINYSTORIES_TABLE1), for comparison.",
    )


def _recovery_loss(name: str, res: dict) -> Section:
    curves = res["fig11"]["recovery_loss"]
    series = [
        {"name": row, "x": [max(1, s) for s in c["steps"]], "ys": c["per_seed"]} for row, c in curves.items()
    ]
    ref = float(np.mean(list(res["pretrained"]["feature_loss_per_seed"].values())))
    return Section(
        title=f"{name}: Fig. 11b, feature-story loss during recovery",
        content=curves_figure(
            series,
            title="recovery loss",
            x_title="recovery step (step 0 drawn at 1)",
            y_title="story loss on feature stories",
            log_x=True,
            reference_lines={"pretrained": ref},
        ),
        caption="Mean over seeds with the min-max band; the dashed line is the pretrained model's loss.",
    )


def _probe_accuracy(name: str, res: dict) -> Section:
    probes = res["fig11"]["probe_accuracy"]
    series = [
        {
            "name": m,
            "x": [r["layer"] for r in p["feature"]],
            "ys": [list(v) for v in zip(*[r["per_seed"] for r in p["feature"]], strict=True)],
        }
        for m, p in probes.items()
    ]
    return Section(
        title=f"{name}: Fig. 11a, {res['feature']} probe accuracy per block",
        content=bar_figure(
            series,
            title="probe accuracy",
            x_title="block (B0 = embedding output)",
            y_title="held-out accuracy",
            y_range=(0.0, 1.0),
        ),
        caption="Linear probe on the mean of the last 10 positions of each story, per block; mean over seeds, min-max whiskers.",
    )


def _findings(name: str, res: dict) -> Section:
    return Section(
        title=f"{name}: findings",
        content=Table(
            columns=("claim", "held", "criterion"),
            rows=tuple((f["claim"], _outcome(f["held"]), f["criterion"]) for f in res["findings"]),
        ),
        caption="Each claim of the study with the criterion fixed before the run; the numbers are in results.json.",
    )


def write_study_report(results: dict, path: Path) -> Path:
    """report.html of the study's ``results.json`` (every setting that finished); DataError if none did."""
    sections = []
    for name, res in results["settings"].items():
        if not res.get("complete") and "table1" not in res:
            continue
        for section in (_table1, _study_table1, _recovery_loss, _probe_accuracy, _findings):
            sections.append(section(name, res))
    if not sections:
        raise DataError(f"no setting of the TinyStories study finished ({', '.join(results['settings'])})")
    intro = (
        "<p>Jain et al. 2023, TinyStories part (protocol §7), at the sizes recorded in results.json (each "
        "setting's config). Generation scores are judged by local rules, not GPT-3.5; see results.json for "
        "every number.</p>"
    )
    return write_report(
        path,
        title="ftmech: TinyStories deletion and recovery",
        intro_html=intro,
        sections=sections,
        data=results,
    )
