"""The benchmark's results: every pair's verdict, the confusion matrix over all pairs, and per-case labels."""

from pathlib import Path
from typing import Any

from analyses.audit_bench.config import LABELS, AuditBenchConfig
from analyses.audit_bench.jobs import EVIDENCE_FILE
from interp.audit import AuditEvidence, AuditThresholds, audit
from interp.config import from_dict, to_dict
from interp.jsonio import read_json
from interp.sweeps import JobResult

STUDY = "audit_bench"  # results.json's "study": what `ftmech report` dispatches on
SCHEMA_VERSION = 1


def _pairs(case_dirs: list[Path], thresholds: AuditThresholds) -> list[dict[str, Any]]:
    pairs = []
    for path in case_dirs:
        if not (path / EVIDENCE_FILE).is_file():
            continue
        record = read_json(path / EVIDENCE_FILE)
        verdict = audit(from_dict(AuditEvidence, record["evidence"]), thresholds).to_json()
        pairs.append(
            {k: record[k] for k in ("family", "case", "seed", "truth", "how")} | {"verdict": verdict}
        )
    return pairs


def confusion(pairs: list[dict]) -> dict[str, Any]:
    """Counts of (true label, audit label) over pairs, accuracy, and false 'wrapped' on removed pairs."""
    matrix = {truth: dict.fromkeys(LABELS, 0) for truth in ("intact", "wrapped", "removed")}
    for pair in pairs:
        matrix[pair["truth"]][pair["verdict"]["label"]] += 1
    correct = sum(matrix[t][t] for t in matrix)
    return {
        "matrix": matrix,
        "n_pairs": len(pairs),
        "accuracy": correct / len(pairs) if pairs else None,
        "false_wrapped_on_removed": matrix["removed"]["wrapped"],
        "inconclusive": sum(row["inconclusive"] for row in matrix.values()),
    }


def _per_case(pairs: list[dict], records: dict, thresholds: AuditThresholds) -> list[dict]:
    """Each case audited over its seeds at once (the pair-level majority rule)."""
    out = []
    for family, case in sorted({(p["family"], p["case"]) for p in pairs}):
        evidence = [
            records[family, case, p["seed"]] for p in pairs if (p["family"], p["case"]) == (family, case)
        ]
        truth = next(p["truth"] for p in pairs if (p["family"], p["case"]) == (family, case))
        verdict = audit(evidence, thresholds)
        out.append(
            {"family": family, "case": case, "truth": truth, "label": verdict.label, "reason": verdict.reason}
        )
    return out


def collect(
    config: AuditBenchConfig, case_dirs: list[Path], jobs: list[JobResult], *, wall_seconds: float
) -> dict:
    """Everything ``results.json`` holds; the thresholds are the audit's defaults, recorded beside it."""
    thresholds = AuditThresholds()
    pairs = _pairs(case_dirs, thresholds)
    records = {
        (r["family"], r["case"], r["seed"]): from_dict(AuditEvidence, r["evidence"])
        for r in (read_json(d / EVIDENCE_FILE) for d in case_dirs if (d / EVIDENCE_FILE).is_file())
    }
    return {
        "study": STUDY,
        "schema_version": SCHEMA_VERSION,
        "config": to_dict(config),
        "thresholds": to_dict(thresholds),
        "pairs": pairs,
        "confusion": confusion(pairs),
        "per_case": _per_case(pairs, records, thresholds),
        "jobs": [{"key": j.key, "status": j.status, "wall_s": j.wall_s, "error": j.error} for j in jobs],
        "wall_seconds": wall_seconds,
    }
