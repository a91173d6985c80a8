"""Mechanistic analyses of one seed of the PCFG study, and their aggregation with the wrapper audit.

Per seed, as separate jobs so that they pack onto the workers: ``job_probes`` fits linear probes for count(a)
and count(b) at ART on every residual-stream site (Fig. 8) of every model, with the control task, a
random-init floor and the pretrained ceiling; ``job_model_analysis``, once per fine-tuned model, draws its
one-shot saliency pruning curves (Fig. 7) beside a random-unit baseline, the weight change, attention to a vs
b tokens and cross-model patching between the pretrained and the fine-tuned model (localisation), and
measures the audit's evidence. ``seed_analysis`` joins them, the probe evidence taken from the probes job;
the audit itself runs after aggregation, when the revival speed-ups of every seed are known.
"""

import dataclasses
import warnings
from pathlib import Path
from typing import Any

import torch

from analyses.pcfg.config import setting_name
from interp import hooks
from interp.audit import AuditEvidence, AuditThresholds, audit
from interp.audit_evidence import EvidenceConfig, collect_evidence, evidence_ranking
from interp.config import from_dict
from interp.diffing import attention_diff, key_mask, weight_diff
from interp.jsonio import write_json
from interp.models import build_model
from interp.patching import patch_across_models
from interp.probing import ProbeConfig, probe_layers
from interp.pruning import UnitScores, pruning_curve, random_scores
from interp.stats import aggregate
from procedural_tasks.pcfg_capability import counting_capability
from procedural_tasks.pcfg_protocols import counting_eval_sets, load_pcfg_model, study_preset
from procedural_tasks.pcfg_tasks import SampleSpec

PROBE_N = {"cpu": 1000, "paper": 4000, "tiny": 80}
# scikit-learn logistic regression: a fraction of the time of the study's AdamW probe, which is
# ProbeConfig(backend="torch"); results.json records the probe config used.
PROBE_CONFIG = ProbeConfig(backend="sklearn", max_iter=500)
PRUNE_KS = (0, 1, 2, 3, 4, 5, 7, 10, 15, 20)
PROBES = "probes"  # analysis_jobs' key of the probes job
CONTROL = "Scr.+FT base (control)"  # the probed name of the control's pretrained model
# The study's own measurements for the audit's probes (Fig. 8), pruning (saliency) and revival (its reverse
# fine-tuning); the audit measures the rest (behaviour, pruning halves against random units, patching).
EVIDENCE = EvidenceConfig(probe=None, prune_method="saliency", relearn=None)


def analysis_jobs(config, seed: int, pretrain: dict, finetune: dict) -> dict[str, dict[str, Any]]:
    """The JSON-native arguments of one seed's analysis jobs: under ``PROBES`` those of ``job_probes`` and,
    under each wrapped candidate's name (the C_Tr = 1 models), those of its ``job_model_analysis``."""
    wrapped = [s for s in config.finetune_grid if s[2] == 1.0]
    control = str(pretrain[seed, config.control_prior])
    jobs = {
        PROBES: {
            "seed": seed,
            "pretrained": {p: str(pretrain[seed, p]) for p in config.priors},
            "control": control,
            "finetuned": {setting_name(s): str(finetune[seed, s]) for s in wrapped},
            "n_probe": PROBE_N.get(config.preset, 1000),
        }
    }
    for setting in wrapped:
        jobs[setting_name(setting)] = {
            "seed": seed,
            "name": setting_name(setting),
            "prior": setting[0],
            "pretrained": str(pretrain[seed, setting[0]]),
            "finetuned": str(finetune[seed, setting]),
            "control": control,
            "q": config.q,
            "prune_ks": list(PRUNE_KS),
        }
    return jobs


def _probe(model, data, label: str, n_layers: int) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        result = probe_layers(
            model,
            data,
            hook_names=hooks.residual_stream(n_layers),
            label=label,
            position="answer",
            config=PROBE_CONFIG,
        )
    rows = result.to_json()["layers"]
    return {
        "accuracy": [r["test_accuracy"] for r in rows],
        "control": [r["control_accuracy"] for r in rows],
        "selectivity": [r["selectivity"] for r in rows],
        "majority_floor": rows[0]["majority_floor"],
        "n_test": rows[0]["n_test"],
    }


def _probed_models(
    pretrained: dict[str, str], control: str, finetuned: dict[str, str], seed: int, device: str
) -> tuple[dict[str, Any], Any, int]:
    """Every model of one seed by name (pretrained, control base, fine-tuned, random init), the task and
    the number of layers."""
    models, tasks = {}, {}
    for prior, path in pretrained.items():
        models[f"PT({prior})"], _, tasks[prior] = load_pcfg_model(path, device=device)
    models[CONTROL], control_info, _ = load_pcfg_model(control, device=device)
    for name, path in finetuned.items():
        models[name], _, _ = load_pcfg_model(path, device=device)
    random_config = dataclasses.replace(control_info.model_config, seed=10_000 + seed)
    models["random init"] = build_model(random_config, device=device)
    return models, next(iter(tasks.values())), random_config.n_layers


def _probes(models: dict, task, n_probe: int, seed: int, n_layers: int) -> dict:
    """Fig. 8: count(a) read on count-a inputs (O_PT) and count(b) on count-b inputs (O_FT), per model."""
    probe_a = task.batch(SampleSpec(family="count", operand="a"), n_probe, seed=20_000 + seed, step=0)
    probe_b = task.batch(SampleSpec(family="count", operand="b"), n_probe, seed=20_000 + seed, step=1)
    return {
        name: {
            "count_a": _probe(m, probe_a, "count_a", n_layers),
            "count_b": _probe(m, probe_b, "count_b", n_layers),
        }
        for name, m in models.items()
    }


def _pruning(model, eval_sets: dict, ranking: UnitScores, prune_ks, seed: int) -> dict:
    """Fig. 7: prune by ``ranking`` (saliency on count-a data), measure O_PT at C_Te=0 and O_FT at C_Te=1,
    beside random units."""
    prune_sets = [eval_sets[n] for n in ("count_a@cte0", "count_b@cte1")]
    curve = pruning_curve(model, None, prune_sets, ks=prune_ks, scores=ranking)
    random_units = random_scores(model, level=ranking.level, seed=seed)
    baseline = pruning_curve(model, None, prune_sets[:1], ks=prune_ks, scores=random_units)
    return {"saliency": curve.to_json(), "random_units": baseline.to_json()}


def _localisation(base, ft, task, pt_a0, n_layers: int) -> dict:
    """Weight change, attention to a vs b tokens, and patching of the pretrained model into the fine-tuned."""
    diff = weight_diff(base, ft).to_json()
    # weight matrices only: biases and norm gains have tiny norms, so their relative change says little
    matrices = [m for m in diff["matrices"] if len(m["shape"]) == 2]
    top = sorted(matrices, key=lambda m: m["relative"] or 0.0, reverse=True)[:5]
    tokens = pt_a0.batch.tokens
    groups = {"a": key_mask(tokens, [task.vocab.id("a")]), "b": key_mask(tokens, [task.vocab.id("b")])}
    # only text positions count as keys: the operand token itself is also 'a' or 'b'
    text = torch.zeros_like(groups["a"])
    text[:, task.config.text_slice] = True
    groups = {k: v & text for k, v in groups.items()}
    return {
        "weight_total_relative": diff["total_relative"],
        "weight_top": [
            {k: m[k] for k in ("name", "relative", "effective_rank", "top_sv_share")} for m in top
        ],
        "weight_by_matrix": {m["name"]: m["relative"] for m in matrices},
        "attention": attention_diff(base, ft, pt_a0, key_groups=groups).to_json(),
        "patch_pt_into_ft": patch_across_models(
            base, ft, pt_a0, hook_names=hooks.block_outputs(n_layers)
        ).to_json(),
    }


def _evidence(base, finetuned, control, capability, ranking: UnitScores, seed: int, name: str) -> dict:
    """The audit's evidence for one fine-tuned model, measured by ``interp.audit_evidence`` on the counting-a
    capability with the Scr.+FT base (pretrained never counting a) as the never-had-it reference. The probe
    evidence comes from the probes job (``seed_analysis``), revival from the study's reverse fine-tuning when
    the seeds are aggregated."""
    evidence, details = collect_evidence(
        base, finetuned, capability, reference=control, config=EVIDENCE, seed=seed, name=name, ranking=ranking
    )
    return {"evidence": evidence.to_json(), "details": details}


def job_probes(
    *,
    out_dir: Path,
    preset: str,
    device: str,
    seed: int,
    pretrained: dict[str, str],
    control: str,
    finetuned: dict[str, str],
    n_probe: int,
) -> dict:
    """Fig. 8's probes of every model of one seed; writes ``probes.json``."""
    models, task, n_layers = _probed_models(pretrained, control, finetuned, seed, device)
    result = {
        "seed": seed,
        "probe_config": dataclasses.asdict(PROBE_CONFIG),
        "layers": ["B0 (embed)"] + [f"B{i + 1}" for i in range(n_layers)],
        "probes": _probes(models, task, n_probe, seed, n_layers),
    }
    write_json(out_dir / "probes.json", result)
    return {"n_models": len(models)}


def job_model_analysis(
    *,
    out_dir: Path,
    preset: str,
    device: str,
    seed: int,
    name: str,
    prior: str,
    pretrained: str,
    finetuned: str,
    control: str,
    q: int,
    prune_ks: list[int],
) -> dict:
    """Pruning, diffing, patching and the audit's evidence for the fine-tuned model ``name`` against the model
    pretrained with ``prior``; writes ``model_analysis.json``."""
    sp = study_preset(preset)
    base, info, task = load_pcfg_model(pretrained, device=device)
    model, _, _ = load_pcfg_model(finetuned, device=device)
    reference, _, _ = load_pcfg_model(control, device=device)
    n_layers = info.model_config.n_layers
    eval_sets = {s.name: s for s in counting_eval_sets(task, sp.eval_n, q=q, seed=30_000 + seed)}
    n = sp.final_eval_n
    capability = counting_capability(task, n_eval=n, n_train=n, seed=50_000 + seed)
    ranking = evidence_ranking(model, capability, EVIDENCE)  # one ranking for Fig. 7 and the audit
    result = {
        "name": name,
        "prior": prior,
        "pruning": _pruning(model, eval_sets, ranking, prune_ks, seed),
        "localisation": _localisation(base, model, task, eval_sets["count_a@cte0"], n_layers),
        "evidence": _evidence(base, model, reference, capability, ranking, seed, name),
    }
    write_json(out_dir / "model_analysis.json", result)
    return {"prune_ranking": result["evidence"]["evidence"]["prune_ranking"]}


def seed_analysis(probes: dict, models: list[dict]) -> dict:
    """One seed's analysis from its probes job and its per-model jobs, each model's probe evidence filled in:
    the best-layer count(a) probe of the pretrained, fine-tuned and control models, over the random-init
    floor."""
    fits = probes["probes"]

    def best(model: str) -> float:
        return max(fits[model]["count_a"]["accuracy"])

    evidence = {}
    for m in models:
        name = m["name"]
        probed = {
            "probe_pt": best(f"PT({m['prior']})"),
            "probe_ft": best(name),
            "probe_reference": best(CONTROL),
            "probe_floor": max(best("random init"), fits[name]["count_a"]["majority_floor"]),
            "n_probe": fits[name]["count_a"]["n_test"],
        }
        evidence[name] = {"evidence": m["evidence"]["evidence"] | probed, "details": m["evidence"]["details"]}
    return probes | {
        "pruning": {m["name"]: m["pruning"] for m in models},
        "localisation": {m["name"]: m["localisation"] for m in models},
        "evidence": evidence,
    }


# --- aggregation over seeds ----------------------------------------------------------------------


def _stack(per_seed: list[list[float]]) -> dict:
    return {
        "per_seed": per_seed,
        "mean": [aggregate([s[i] for s in per_seed])["mean"] for i in range(len(per_seed[0]))],
    }


def _aggregate_pruning(analyses: list[dict]) -> dict:
    pruning = {}
    for name in analyses[0]["pruning"]:
        curves = [a["pruning"][name] for a in analyses]
        pruning[name] = {
            "ks": curves[0]["saliency"]["ks"],
            "accuracy": {
                s: [c["saliency"]["accuracy"][s] for c in curves] for s in curves[0]["saliency"]["accuracy"]
            },
            "random_units_a0": [c["random_units"]["accuracy"]["count_a@cte0"] for c in curves],
            "top_units": [c["saliency"]["units"][:10] for c in curves],
        }
    return pruning


def _aggregate_localisation(analyses: list[dict]) -> dict:
    localisation = {}
    for name in analyses[0]["localisation"]:
        locs = [a["localisation"][name] for a in analyses]
        top_patch = []
        for loc in locs:
            restored = {k: v for k, v in loc["patch_pt_into_ft"]["restored"].items() if v is not None}
            top_patch.append(max(restored, key=restored.get) if restored else None)
        localisation[name] = {
            "top_weight_change": [loc["weight_top"][0]["name"] for loc in locs],
            "weight_by_matrix": {
                k: [loc["weight_by_matrix"][k] for loc in locs] for k in locs[0]["weight_by_matrix"]
            },
            "top_patch": top_patch,
            "patch_restored": {
                k: [loc["patch_pt_into_ft"]["restored"][k] for loc in locs]
                for k in locs[0]["patch_pt_into_ft"]["restored"]
            },
            "attention_a_vs_b": [_attention_summary(loc["attention"]) for loc in locs],
        }
    return localisation


def _verdicts(analyses: list[dict], revival: dict, thresholds: AuditThresholds) -> dict:
    """The audit of each fine-tuned model over seeds; revival is the study's reverse fine-tuning against the
    Scr.+FT control where the study ran it (otherwise the audit judges without it)."""
    verdicts = {}
    for name in analyses[0]["evidence"]:
        speed = revival.get("speedups", {}).get(name, {}).get("Scr.+FT", {}).get("per_seed", [])
        items = []
        for i, a in enumerate(analyses):
            evidence = from_dict(AuditEvidence, a["evidence"][name]["evidence"])
            if i < len(speed):
                evidence = dataclasses.replace(
                    evidence,
                    revival_steps=speed[i]["steps"],
                    reference_revival_steps=speed[i]["control_steps"],
                    revival_horizon=speed[i]["horizon"],
                    reference_revival_horizon=speed[i]["control_horizon"],
                    reference_kind="Scr.+FT control",
                )
            items.append(evidence)
        verdicts[name] = audit(items, thresholds).to_json()
    return verdicts


def aggregate_analysis(
    analyses: list[dict], revival: dict, thresholds: AuditThresholds | None = None
) -> dict:
    """Probe and pruning curves over seeds, localisation summaries and the audit verdict per model."""
    thresholds = thresholds or AuditThresholds()
    first = analyses[0]
    probes = {
        model: {
            target: {
                key: _stack([a["probes"][model][target][key] for a in analyses])
                for key in ("accuracy", "selectivity")
            }
            for target in ("count_a", "count_b")
        }
        for model in first["probes"]
    }
    return {
        "layers": first["layers"],
        "probes": probes,
        "pruning": _aggregate_pruning(analyses),
        "localisation": _aggregate_localisation(analyses),
        "verdicts": _verdicts(analyses, revival, thresholds),
        "thresholds": dataclasses.asdict(thresholds),
    }


def _attention_summary(attention: dict) -> dict:
    """Per layer: the head-mean attention mass on a and on b tokens, pretrained vs fine-tuned."""
    out = {}
    for model in ("base", "finetuned"):
        out[model] = {
            g: [sum(heads) / len(heads) for heads in attention["mass"][model][g]] for g in ("a", "b")
        }
    return out
