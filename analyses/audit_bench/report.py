"""The benchmark's ``report.html``: the confusion matrix, every pair's verdict, and each case over its seeds."""

from pathlib import Path

from analyses.audit_bench.config import LABELS
from interp.reports import Section, Table, write_report


def write_study_report(results: dict, path: Path) -> Path:
    """Write the audit benchmark's report from its ``results.json`` data."""
    conf = results["confusion"]
    per_case = [(c["family"], c["case"], c["truth"], c["label"], c["reason"]) for c in results["per_case"]]
    jobs = [(j["key"], j["status"], j["wall_s"], j["error"] or "") for j in results["jobs"]]
    sections = [
        Section(
            title="Confusion matrix",
            content=Table(
                columns=("true \\ audit", *LABELS),
                rows=[(truth, *(row[label] for label in LABELS)) for truth, row in conf["matrix"].items()],
            ),
            caption="Pairs by true label (rows) and the audit's label (columns); each pair is one seed.",
        ),
        _pairs_section(results["pairs"]),
        Section(
            title="Each case over its seeds",
            content=Table(columns=("family", "case", "truth", "audit", "why"), rows=per_case),
            caption="The same evidence audited as one pair over seeds: a label needs a strict majority of seeds.",
        ),
        Section(
            title="Runs",
            content=Table(columns=("job", "status", "wall s", "error"), rows=jobs),
            caption="Every job, content-addressed under runs/.",
        ),
    ]
    title = "ftmech: the audit scored on known answers"
    return write_report(path, title=title, intro_html=_intro(conf), sections=sections, data=results)


def _intro(conf: dict) -> str:
    """The headline: accuracy, false 'wrapped' verdicts and inconclusive ones against the target."""
    accuracy = "n/a" if conf["accuracy"] is None else f"{conf['accuracy']:.0%}"
    return (
        f"<p>The audit (default thresholds) on {conf['n_pairs']} model pairs whose answer is known: accuracy "
        f"<b>{accuracy}</b>, 'wrapped' on a removed or never-had-it pair <b>{conf['false_wrapped_on_removed']}</b> "
        f"time(s), inconclusive {conf['inconclusive']}. Target: >= 90% correct and no false 'wrapped'. "
        "Cases marked empirical take their label from the study's measurements, not from a construction.</p>"
    )


def _pairs_section(pairs: list[dict]) -> Section:
    """Every pair's truth, the audit's verdict and why, and how the truth is known."""
    keys = ("family", "case", "seed", "truth")
    rows = [(*(p[k] for k in keys), p["verdict"]["label"], p["verdict"]["reason"], p["how"]) for p in pairs]
    return Section(
        title="Every pair",
        content=Table(columns=(*keys, "audit", "why", "how the truth is known"), rows=rows),
        caption="One audit per pair; the evidence behind each is in results.json.",
    )
