"""The GAM study's plan: throughput and language modelling for both architectures, PCFG counting at the cpu
preset's window and at a window a GAM covers, and there the wrapper protocol for both architectures."""

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from analyses.gam.config import GAMStudyConfig
from analyses.gam.lm import resolve_corpus
from interp.config import to_dict
from interp.lr_levels import lr_for_level
from interp.sweeps import Planner
from procedural_tasks.pcfg_protocols import study_preset

ARCHS = ("transformer", "gam")
# The cost comparison's models, by name: (architecture, attention pattern materialised). The study trains the
# transformer on fused attention (SDPA keeps no N x N pattern); the paper's transformer materialises it.
THROUGHPUT = {
    "transformer": ("transformer", False),
    "transformer_materialised": ("transformer", True),
    "gam": ("gam", False),
}
PCFG = "analyses.pcfg.jobs"
FT_LEVEL = "M"  # eta_M (main text): eta_PT / 10, the PCFG study's fine-tuning and reverse LR


@dataclass(frozen=True)
class Plan:
    """The jobs, and which directory holds which run (keys: (arch, ...))."""

    planner: Planner
    corpus: str
    throughput: dict[str, Path]  # THROUGHPUT's names
    lm: dict[tuple[str, int], Path]
    pcfg: dict[tuple[str, str, int], Path]  # (arch, run, seed): window runs and the wrapper protocol
    models: dict[str, dict[str, Any]]  # "transformer", "gam" (paper kernel), "gam_covering"


def covered_seq_len(config: GAMStudyConfig) -> int:
    """Tokens of a PCFG sequence at the covered window."""
    task = study_preset(config.pcfg_preset).task
    return dataclasses.replace(task, window=config.covered_window, region=config.covered_region).seq_len


def plan_study(config: GAMStudyConfig, root: Path) -> Plan:
    """Every job of the study with its content-addressed directory under ``root``."""
    planner = Planner(root, identity={"pcfg_preset": to_dict(study_preset(config.pcfg_preset))})
    models = {
        "transformer": to_dict(config.transformer_model()),
        "gam": to_dict(config.gam_model()),
        "gam_covering": to_dict(config.gam_model(config.covering_kernel(covered_seq_len(config)))),
    }
    corpus = resolve_corpus(config.corpus)
    throughput = {
        name: planner.add(
            "throughput",
            "analyses.gam.lm:job_throughput",
            {"model": models[arch], "materialise_attention": materialise, "lengths": list(config.lengths)}
            | {"batch_size": config.throughput_batch, "steps": config.throughput_steps}
            | {"vocab": config.lm_vocab, "device": config.device},
        )
        for name, (arch, materialise) in THROUGHPUT.items()
    }
    lm_common = {"corpus": corpus, "n_stories": config.n_stories, "vocab": config.lm_vocab}
    lm_common |= {"seq_len": config.lm_seq_len, "batch_size": config.lm_batch_size, "steps": config.lm_steps}
    lm_common |= {"lr": config.lm_lr, "evals": config.lm_evals, "val_chunks": config.lm_val_chunks}
    lm = {
        (arch, seed): planner.add(
            "lm",
            "analyses.gam.lm:job_lm",
            {**lm_common, "model": models[arch], "seed": seed, "device": config.device},
            steps=config.lm_steps,
        )
        for arch in ARCHS
        for seed in config.seeds
    }
    pcfg: dict[tuple[str, str, int], Path] = {}
    for seed in config.seeds:
        pcfg |= _plan_pcfg(planner, config, models, seed)
    return Plan(planner, corpus, throughput, lm, pcfg, models)


def _plan_pcfg(
    planner: Planner, config: GAMStudyConfig, models: dict[str, dict], seed: int
) -> dict[tuple[str, str, int], Path]:
    """The cpu-window GAM run, and at the covered window both architectures' wrapper protocol."""
    base = {"preset": config.pcfg_preset, "seed": seed, "lr": config.pretrain_lr, "device": config.device}
    base["steps"] = config.pretrain_steps
    sp = study_preset(config.pcfg_preset)
    cpu_window = {"window": sp.task.window, "region": sp.task.region, "prior": "low"}
    covered = {"window": config.covered_window, "region": config.covered_region}
    dirs = {
        ("gam", "cpu_window", seed): planner.add(
            "pretrain",
            "analyses.gam.pcfg_jobs:job_pretrain",
            {**base, **cpu_window, "model": models["gam"]},
            steps=config.pretrain_steps,
        )
    }
    stage = {"preset": config.pcfg_preset, "seed": seed, "device": config.device}
    ft_lr = lr_for_level(FT_LEVEL, config.pretrain_lr)
    for arch, model in (("transformer", models["transformer"]), ("gam", models["gam_covering"])):
        pre = {
            prior: planner.add(
                "pretrain",
                "analyses.gam.pcfg_jobs:job_pretrain",
                {**base, **covered, "prior": prior, "model": model},
                steps=config.pretrain_steps,
            )
            for prior in ("low", "medium", "only_b")
        }
        ft = {
            prior: planner.add(
                "finetune",
                f"{PCFG}:job_finetune",
                {**stage, "base": str(pre[prior]), "lr": ft_lr, "lr_level": FT_LEVEL}
                | {"lr_labelling": "main_text", "c_tr": 1.0, "q": 1},
                [pre[prior]],
                steps=sp.finetune_steps,
            )
            for prior in ("low", "medium")
        }
        reverse = {**stage, "lr": ft_lr, "lr_level": FT_LEVEL, "threshold_frac": 0.9, "from_scratch": False}
        reverse["reference"] = str(pre["low"])
        rev_ft = planner.add(
            "reverse",
            f"{PCFG}:job_reverse",
            {**reverse, "start": str(ft["low"])},
            [ft["low"], pre["low"]],
            steps=sp.reverse_steps,
        )
        control_steps = config.control_reverse_factor * sp.reverse_steps
        rev_ctrl = planner.add(
            "reverse",
            f"{PCFG}:job_reverse",
            {**reverse, "start": str(pre["only_b"]), "steps": control_steps},
            [pre["only_b"], pre["low"]],
            steps=control_steps,
        )
        audit_dir = planner.add(
            "audit",
            "analyses.gam.pcfg_jobs:job_audit",
            {
                "base": str(pre["low"]),
                "finetuned": str(ft["low"]),
                "reference": str(pre["only_b"]),
                "seed": seed,
            }
            | {"n_eval": config.audit_n, "relearn_steps": config.relearn_steps, "device": config.device},
            [pre["low"], ft["low"], pre["only_b"]],
        )
        runs = {"pt_low": pre["low"], "pt_medium": pre["medium"], "pt_control": pre["only_b"]}
        runs |= {"ft_low": ft["low"], "ft_medium": ft["medium"], "rev_ft": rev_ft, "rev_control": rev_ctrl}
        runs |= {"audit": audit_dir}
        dirs |= {(arch, run, seed): path for run, path in runs.items()}
    return dirs
