"""The benchmark's ``report.html``: the confusion matrix, every pair's verdict, and each case over its seeds."""

from pathlib import Path

from analyses.audit_bench.config import LABELS
from interp.reports import Section, Table, write_report


def write_study_report(results: dict, path: Path) -> Path:
    """Write the audit benchmark's report from its ``results.json`` data."""
    conf = results["confusion"]
    accuracy = "n/a" if conf["accuracy"] is None else f"{conf['accuracy']:.0%}"
    intro = (
        f"<p>The audit (default thresholds) on {conf['n_pairs']} model pairs whose answer is known: accuracy "
        f"<b>{accuracy}</b>, 'wrapped' on a removed or never-had-it pair <b>{conf['false_wrapped_on_removed']}</b> "
        f"time(s), inconclusive {conf['inconclusive']}. Target: >= 90% correct and no false 'wrapped'. "
        "Cases marked empirical take their label from the study's measurements, not from a construction.</p>"
    )
    sections = [
        Section(
            title="Confusion matrix",
            content=Table(
                columns=("true \\ audit", *LABELS),
                rows=[(truth, *(row[label] for label in LABELS)) for truth, row in conf["matrix"].items()],
            ),
            caption="Pairs by true label (rows) and the audit's label (columns); each pair is one seed.",
        ),
        Section(
            title="Every pair",
            content=Table(
                columns=("family", "case", "seed", "truth", "audit", "why", "how the truth is known"),
                rows=[
                    (
                        p["family"],
                        p["case"],
                        p["seed"],
                        p["truth"],
                        p["verdict"]["label"],
                        p["verdict"]["reason"],
                        p["how"],
                    )
                    for p in results["pairs"]
                ],
            ),
            caption="One audit per pair; the evidence behind each is in results.json.",
        ),
        Section(
            title="Each case over its seeds",
            content=Table(
                columns=("family", "case", "truth", "audit", "why"),
                rows=[
                    (c["family"], c["case"], c["truth"], c["label"], c["reason"]) for c in results["per_case"]
                ],
            ),
            caption="The same evidence audited as one pair over seeds: a label needs a strict majority of seeds.",
        ),
        Section(
            title="Runs",
            content=Table(
                columns=("job", "status", "wall s", "error"),
                rows=[(j["key"], j["status"], j["wall_s"], j["error"] or "") for j in results["jobs"]],
            ),
            caption="Every job, content-addressed under runs/.",
        ),
    ]
    return write_report(
        path,
        title="ftmech: the audit scored on known answers",
        intro_html=intro,
        sections=sections,
        data=results,
    )
