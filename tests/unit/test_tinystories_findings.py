"""The TinyStories findings on hand-made results: each claim holds on clear data, fails on data against it, and is
inconclusive or not testable where it should be; the probe claims are Holm-corrected over blocks; the report says
when stories are synthetic, puts the strict judge first and lists every deviation; the control never sees a twist."""

import copy
import re
from pathlib import Path

import pytest

from analyses.tinystories.config import CONTROL, DEVIATIONS, PRETRAINED, cpu_study_config
from analyses.tinystories.findings import findings, holm, z_greater
from analyses.tinystories.report import write_study_report
from analyses.tinystories.results import over_seeds
from procedural_tasks.story_data import build_story_splits, build_story_tokenizer, instruct_texts
from procedural_tasks.story_features import has_twist, has_twist_opener
from procedural_tasks.story_scoring import judged_count
from procedural_tasks.story_stages import pretrain_records

ROW = "F (eta_M)"
STEPS = ("0", "1", "10", "100")  # the cpu preset's Table 1 columns: 0, R/100, R/10, R
CONFIG = cpu_study_config("synthetic")


def score(k0: int, k1: int, n: int = 100) -> dict:
    """A generation score over seeds 0 and 1 (``k`` of ``n`` stories each), as results.json holds it."""
    counts = [judged_count(k, n).to_json() for k in (k0, k1)]
    return over_seeds([0, 1], [c["rate"] for c in counts], counts=counts)


def probe(accuracies: list[float], n: int = 200) -> list[dict]:
    """A model's probe accuracy per block, the same in both seeds."""
    return [{"layer": f"B{i}", **over_seeds([0, 1], [a, a], n=[n, n])} for i, a in enumerate(accuracies)]


def table_row(at_r10: tuple[int, int], at_0: tuple[int, int] = (5, 5)) -> dict:
    ks = {"0": at_0, "1": at_0, "10": at_r10, "100": at_r10}
    return {"scores": {step: {j: score(*ks[step]) for j in ("strict", "loose")} for step in STEPS}}


def loss_steps(mine: tuple, control: tuple) -> dict:
    return {
        ROW: {s: {"loss": {"steps_to_threshold": m}} for s, m in enumerate(mine)},
        CONTROL: {s: {"loss": {"steps_to_threshold": c}} for s, c in enumerate(control)},
    }


@pytest.fixture
def res() -> dict:
    """Results on which every claim holds: the score drops and recovers above the control, the loss recovers
    faster than the control's (which never gets there), the deleted model's probe stays above the control's."""
    return {
        "setting": "synthetic",
        "feature": "twist",
        "judges": ["strict", "loose"],
        "primary_judge": "strict",
        "pretrained": {
            "score": {j: score(60, 60) for j in ("strict", "loose")},
            "feature_loss_per_seed": {0: 1.0, 1: 1.0},
        },
        "table1": {
            "columns": [0, 1, 10, 100],
            "study_columns": [0, 30, 300, 3000],
            "study_percent_twist": {"F (eta_M)": [44, 81, 81, 82]},
            "rows": {ROW: table_row(at_r10=(50, 50)), CONTROL: table_row(at_r10=(10, 10))},
        },
        "deletion": {
            ROW: {"seeds": [0, 1], "feature_loss_before": [1.0, 1.0], "feature_loss_after": [2.0, 2.1]}
        },
        "revival": loss_steps((3, 3), (None, None)),
        "fig11": {
            "probe_accuracy": {
                PRETRAINED: {"feature": probe([0.95, 0.95, 0.95])},
                ROW: {"feature": probe([0.9, 0.9, 0.9])},
                CONTROL: {"feature": probe([0.6, 0.6, 0.6])},
            },
            "feature_majority_floor": {"seeds": [0, 1], "values": [0.7, 0.7], "mean": 0.7},
            "recovery_loss": {ROW: {"steps": [0, 10, 100], "per_seed": [[2.0, 1.5, 1.0], [2.1, 1.4, 1.0]]}},
        },
    }


def outcomes(res: dict) -> dict[str, str]:
    """Each claim's outcome, keyed by the claim's kind."""
    kinds = {
        "drives the generation score down": "deletion",
        "faster than the never-had-it control": "loss recovery",
        "generation score is above the control": "score recovery",
        "probe stays above": "probe",
        "majority floor": "floor",
    }
    out = {}
    for f in findings(res, CONFIG):
        (kind,) = [k for pattern, k in kinds.items() if pattern in f["claim"]]
        out[kind] = f["outcome"]
    return out


def test_every_claim_holds_on_clear_data(res):
    kinds = ("deletion", "loss recovery", "score recovery", "probe", "floor")
    assert outcomes(res) == dict.fromkeys(kinds, "held")
    assert all(f["holds"] is True and f["reason"] and f["measured"] for f in findings(res, CONFIG))


def test_the_deletion_claim_fails_inconclusive_and_untestable(res):
    res["table1"]["rows"][ROW] = table_row(at_r10=(50, 50), at_0=(5, 61))  # seed 1 not lower at all
    assert outcomes(res)["deletion"] == "did not hold"
    assert outcomes(res)["score recovery"] == "not testable"  # its precondition is the deletion
    res["table1"]["rows"][ROW] = table_row(at_r10=(50, 50), at_0=(5, 52))  # lower, intervals overlap
    assert outcomes(res)["deletion"] == "inconclusive"
    res["pretrained"]["score"]["strict"] = score(60, 0)  # seed 1 never writes a twist
    assert outcomes(res)["deletion"] == "not testable"


def test_the_deletion_claim_reads_the_strict_judge_not_the_loose_one(res):
    res["table1"]["rows"][ROW]["scores"]["0"]["loose"] = score(60, 60)
    assert outcomes(res)["deletion"] == "held"
    measured = findings(res, CONFIG)[0]["measured"]
    assert measured.startswith("strict judge: pretrained seed 0 60%") and "| loose judge: " in measured
    res["table1"]["rows"][ROW]["scores"]["0"]["strict"] = score(60, 60)
    assert outcomes(res)["deletion"] == "did not hold"


@pytest.mark.parametrize(
    ("mine", "control", "outcome"),
    [
        ((3, 30), (None, 10), "did not hold"),  # seed 1 slower than its control
        ((3, 10), (None, 10), "did not hold"),  # a tie is not faster
        ((3, None), (None, 10), "did not hold"),  # seed 1 never recovers while its control does
        ((3, None), (None, None), "inconclusive"),  # seed 1: neither gets there (censored)
        ((0, 3), (None, None), "not testable"),  # seed 0's deletion left the loss within the tolerance
    ],
)
def test_the_loss_recovery_claim(res, mine, control, outcome):
    res["revival"] = loss_steps(mine, control)
    assert outcomes(res)["loss recovery"] == outcome


def test_the_score_recovery_claim_fails_and_is_inconclusive(res):
    res["table1"]["rows"][ROW] = table_row(at_r10=(50, 9))  # seed 1 at or below the control's 10%
    assert outcomes(res)["score recovery"] == "did not hold"
    res["table1"]["rows"][ROW] = table_row(at_r10=(50, 15))  # above, intervals overlap
    assert outcomes(res)["score recovery"] == "inconclusive"


def test_the_probe_claim_fails_is_inconclusive_and_untestable(res):
    probes = res["fig11"]["probe_accuracy"]
    probes[ROW]["feature"] = probe([0.6, 0.55, 0.5])  # at or below the control everywhere
    assert outcomes(res)["probe"] == "did not hold"
    probes[ROW]["feature"] = probe([0.6, 0.62, 0.6])  # a little above at one block, not significant
    assert outcomes(res)["probe"] == "inconclusive"
    probes[PRETRAINED]["feature"] = probe(
        [0.6, 0.6, 0.6]
    )  # the pretrained probe reads no more than the control
    assert outcomes(res)["probe"] == "not testable"


def test_the_probe_claim_is_holm_corrected_over_blocks(res):
    """One block clearing the control at p ~ 0.02 passes alone, not among twelve blocks (0.05 / 12)."""
    assert 0.01 < z_greater(0.70, 200, 0.60, 200) < 0.05
    probes = res["fig11"]["probe_accuracy"]
    for n_blocks, outcome in ((1, "held"), (12, "inconclusive")):
        probes[PRETRAINED]["feature"] = probe([0.95] * n_blocks)
        probes[CONTROL]["feature"] = probe([0.60] * n_blocks)
        probes[ROW]["feature"] = probe([0.70] + [0.60] * (n_blocks - 1))
        assert outcomes(res)["probe"] == outcome


def test_a_block_passes_only_if_every_seed_does(res):
    probes = res["fig11"]["probe_accuracy"]
    probes[ROW]["feature"] = [
        {**layer, **over_seeds([0, 1], [0.9, 0.6], n=[200, 200])} for layer in probe([0] * 3)
    ]
    assert outcomes(res)["probe"] == "inconclusive"


def test_the_floor_claim_fails_and_is_inconclusive(res):
    probes = res["fig11"]["probe_accuracy"]
    probes[PRETRAINED]["feature"] = probe([0.7, 0.65, 0.7])
    assert outcomes(res)["floor"] == "did not hold"
    probes[PRETRAINED]["feature"] = probe([0.7, 0.72, 0.7])
    assert outcomes(res)["floor"] == "inconclusive"


def test_without_a_judge_the_score_claims_are_not_testable(res):
    res |= {"setting": "hub", "judges": [], "primary_judge": None}
    by_claim = {f["claim"]: f for f in findings(res, CONFIG)}
    scored = [f for c, f in by_claim.items() if "generation score" in c]
    assert len(scored) == 2 and all(f["outcome"] == "not testable" and "judge" in f["reason"] for f in scored)
    assert outcomes(res)["loss recovery"] == "held"


def test_holm_steps_down():
    assert holm([0.01, 0.04, 0.03]) == [True, False, False]
    assert holm([0.01, 0.02, 0.04]) == [True, True, True]
    assert holm([0.2]) == [False]


def test_report_says_synthetic_puts_strict_first_and_lists_every_deviation(res, tmp_path):
    res["findings"] = findings(res, CONFIG)
    results = {"study": "tinystories", "settings": {"synthetic-twist": res}}
    page = write_study_report(copy.deepcopy(results), tmp_path / "report.html").read_text()
    title = re.search(r"<title>(.*?)</title>", page).group(1)
    assert "template-generated" in title
    headings = re.findall(r"<h2[^>]*>(.*?)</h2>", page)
    strict = next(i for i, h in enumerate(headings) if "strict judge, primary" in h)
    assert strict < next(i for i, h in enumerate(headings) if "loose judge" in h)
    assert "60%, 60% → 60%" in page  # every seed's value, then the mean
    assert all(d.aspect in page for d in DEVIATIONS) and "Foreshadowing:Twist" in page
    res["setting"] = "hub"
    page = write_study_report({"study": "tinystories", "settings": {"hub-twist": res}}, tmp_path / "h.html")
    assert "template-generated" not in re.search(r"<title>(.*?)</title>", page.read_text()).group(1)


def test_the_control_pretrains_on_stories_without_a_twist():
    study = cpu_study_config("synthetic", n_stories=300, n_ctx=256, vocab_size=300)
    data = study.data
    splits = build_story_splits(data, build_story_tokenizer(data))
    control = pretrain_records(study.pretrain_stage(0, with_feature=False), splits)
    assert control and all("twist" not in r.features and "twist" not in r.prompt_features for r in control)
    texts = instruct_texts(control, data, salt=1)
    assert not any(has_twist(t) or has_twist_opener(t) or "Twist" in t for t in texts)
    pretrained = pretrain_records(study.pretrain_stage(0), splits)
    assert sum(has_twist(r.story) for r in pretrained) == len(pretrained) - len(control) > 0


def test_the_readme_shows_every_tinystories_deviation():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for d in DEVIATIONS:
        assert f"| {d.aspect} | {d.study} | {d.ours} | {d.why} |" in readme
