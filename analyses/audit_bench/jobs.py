"""The benchmark's jobs: each case x seed measures audit evidence on a model pair whose answer is known.

Tracr pairs are built in the job (``procedural_tasks.tracr_audit_cases``); PCFG pairs come from the PCFG
study's own pretraining and fine-tuning jobs, content-addressed under the benchmark's directory.
"""

from pathlib import Path

from analyses.audit_bench.config import PCFG_CASES, TRACR_CASES, AuditBenchConfig
from interp.audit_evidence import EvidenceConfig, collect_evidence
from interp.config import from_dict, to_dict
from interp.jsonio import write_json
from interp.lr_levels import lr_for_level
from interp.relearning import RelearnConfig
from interp.sweeps import Job, Planner
from procedural_tasks.pcfg_capability import counting_capability
from procedural_tasks.pcfg_protocols import load_pcfg_model, study_preset
from procedural_tasks.tracr_audit_cases import base_model, case_models, counter_capability

PRETRAIN_LR = 1e-3
EVIDENCE_FILE = "evidence.json"


def _record(out_dir: Path, family: str, case: str, seed: int, truth: str, how: str, measured) -> dict:
    evidence, details = measured
    write_json(
        out_dir / EVIDENCE_FILE,
        {"family": family, "case": case, "seed": seed, "truth": truth, "how": how}
        | {"evidence": evidence.to_json(), "details": details},
    )
    return {"case": case, "seed": seed}


def _evidence_config(relearn: dict) -> EvidenceConfig:
    """The audit's default evidence; a pair whose behaviour is intact is decided by behaviour alone."""
    return EvidenceConfig(relearn=from_dict(RelearnConfig, relearn), skip_if_intact=True)


def job_tracr_case(
    *, out_dir: Path, case: str, seed: int, n_eval: int, train_steps: int, relearn: dict
) -> dict:
    """Build one Tracr pair and measure its audit evidence (reference: a re-initialised copy)."""
    base, finetuned = case_models(case, seed, train_steps=train_steps)
    capability = counter_capability(base_model(seed)[1], n_eval=n_eval, seed=seed)
    measured = collect_evidence(
        base, finetuned, capability, config=_evidence_config(relearn), seed=seed, name=f"tracr/{case}"
    )
    return _record(out_dir, "tracr", case, seed, *TRACR_CASES[case], measured)


def job_pcfg_case(
    *,
    out_dir: Path,
    case: str,
    seed: int,
    base: str,
    finetuned: str,
    reference: str,
    n_eval: int,
    relearn: dict,
    device: str,
) -> dict:
    """Measure the audit evidence of one PCFG pair against a never-had-it (Scr.+FT base) reference."""
    base_model_, _, task = load_pcfg_model(base, device=device)
    ft_model = load_pcfg_model(finetuned, device=device)[0]
    ref_model = load_pcfg_model(reference, device=device)[0]
    capability = counting_capability(task, n_eval=n_eval, n_train=n_eval, seed=60_000 + seed)
    measured = collect_evidence(
        base_model_,
        ft_model,
        capability,
        reference=ref_model,
        config=_evidence_config(relearn),
        seed=seed,
        name=f"pcfg/{case}",
    )
    return _record(out_dir, "pcfg", case, seed, *PCFG_CASES[case], measured)


def _pcfg_models(config: AuditBenchConfig, root: Path, add) -> dict[tuple[str, int], Path]:
    """Pretrained (low prior), control (never counts a) and FT(low, eta_M, C_Tr=1) directories per seed."""
    common = {"preset": config.pcfg_preset, "device": config.device}
    dirs: dict[tuple[str, int], Path] = {}
    for seed in config.seeds:
        for name, prior in (("pretrained", "low"), ("control", "only_b")):
            kwargs = {**common, "prior": prior, "seed": seed, "lr": PRETRAIN_LR}
            if config.pcfg_pretrain_steps is not None:
                kwargs["steps"] = config.pcfg_pretrain_steps
            steps = kwargs.get("steps", study_preset(config.pcfg_preset).pretrain_steps_for(prior))
            dirs[name, seed] = add("pretrain", "analyses.pcfg.jobs:job_pretrain", kwargs, [], steps=steps)
        if "wrapped" in config.pcfg_cases:
            kwargs = {**common, "base": str(dirs["pretrained", seed]), "seed": seed}
            kwargs |= {"lr": lr_for_level("M", PRETRAIN_LR), "lr_level": "M", "lr_labelling": "main_text"}
            kwargs |= {"c_tr": 1.0, "q": 1}
            dirs["finetuned", seed] = add(
                "finetune",
                "analyses.pcfg.jobs:job_finetune",
                kwargs,
                [dirs["pretrained", seed]],
                steps=study_preset(config.pcfg_preset).finetune_steps,
            )
    return dirs


def plan(config: AuditBenchConfig, root: Path) -> tuple[list[Job], list[Path]]:
    """Every job of the benchmark, and the case directories whose evidence the results read."""
    planner = Planner(root)
    add = planner.add
    cases: list[Path] = []
    for case in config.tracr_cases:
        for seed in config.seeds:
            kwargs = {
                "case": case,
                "seed": seed,
                "n_eval": config.n_eval,
                "train_steps": config.tracr_train_steps,
            }
            cases.append(
                add(
                    "tracr",
                    f"{__name__}:job_tracr_case",
                    kwargs | {"relearn": to_dict(config.tracr_relearn)},
                    [],
                    steps=config.tracr_train_steps,
                )
            )
    if config.pcfg_cases:
        dirs = _pcfg_models(config, root, add)
        seeds = list(config.seeds)
        for case in config.pcfg_cases:
            for i, seed in enumerate(seeds):
                finetuned = {
                    "intact": dirs["pretrained", seed],
                    "wrapped": dirs.get(("finetuned", seed)),
                    "never_had_it": dirs["control", seed],
                }[case]
                reference = dirs["control", seeds[(i + 1) % len(seeds)] if case == "never_had_it" else seed]
                kwargs = {"case": case, "seed": seed, "n_eval": config.n_eval, "device": config.device}
                kwargs |= {
                    "base": str(dirs["pretrained", seed]),
                    "finetuned": str(finetuned),
                    "reference": str(reference),
                }
                deps = list(dict.fromkeys([dirs["pretrained", seed], finetuned, reference]))
                cases.append(
                    add(
                        "pcfg",
                        f"{__name__}:job_pcfg_case",
                        kwargs | {"relearn": to_dict(config.pcfg_relearn)},
                        deps,
                    )
                )
    return planner.jobs, cases
