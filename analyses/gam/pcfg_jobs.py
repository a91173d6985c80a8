"""PCFG jobs of the GAM study: pretraining either architecture at a chosen window, and the audit of a pair.

Fine-tuning and reverse fine-tuning are the PCFG study's own jobs (``analyses.pcfg.jobs``): they read the task
and the architecture from the checkpoint, so they run on a GAM unchanged.
"""

import dataclasses
from pathlib import Path

from interp.audit import audit
from interp.audit_evidence import EvidenceConfig, collect_evidence
from interp.config import from_dict
from interp.jsonio import write_json
from interp.models import ModelConfig
from interp.relearning import RelearnConfig
from procedural_tasks.pcfg_capability import counting_capability
from procedural_tasks.pcfg_protocols import PretrainConfig, load_pcfg_model, run_pretrain, study_preset
from procedural_tasks.pcfg_tasks import parse_prior

AUDIT_FILE = "audit.json"


def job_pretrain(
    *,
    out_dir: Path,
    preset: str,
    model: dict,
    window: int,
    region: int,
    prior: str,
    seed: int,
    lr: float,
    steps: int,
    device: str,
) -> dict:
    """Pretrain ``model`` on the PCFG counting mixture at ``window``/``region`` with the preset's recipe."""
    sp = study_preset(preset)
    task = dataclasses.replace(sp.task, window=window, region=region, prior=parse_prior(prior))
    config = PretrainConfig(
        task=task,
        model=dataclasses.replace(from_dict(ModelConfig, model), seed=seed),
        train=sp.train_config("pretrain", lr=lr, seed=seed, device=device, steps=steps),
        eval_n=sp.eval_n,
    )
    resume = (out_dir / "resume" / "state.json").is_file()
    result = run_pretrain(config, out_dir, resume=resume, progress=False)
    return {name: e["accuracy"] for name, e in result.history[-1]["eval"].items()}


def job_audit(
    *,
    out_dir: Path,
    base: str,
    finetuned: str,
    reference: str,
    seed: int,
    n_eval: int,
    relearn_steps: int,
    device: str,
) -> dict:
    """The audit's evidence and verdict for counting a: pretrained vs fine-tuned, against the never-had-it
    (Scr.+FT) model; probes, pruning, patching and relearning as ``ftmech audit`` measures them."""
    base_model, _, task = load_pcfg_model(base, device=device)
    capability = counting_capability(task, n_eval=n_eval, n_train=n_eval, seed=60_000 + seed)
    evidence, details = collect_evidence(
        base_model,
        load_pcfg_model(finetuned, device=device)[0],
        capability,
        reference=load_pcfg_model(reference, device=device)[0],
        config=EvidenceConfig(relearn=RelearnConfig(steps=relearn_steps, seed=seed)),
        seed=seed,
    )
    verdict = audit(evidence)
    write_json(
        out_dir / AUDIT_FILE,
        {"evidence": evidence.to_json(), "verdict": verdict.to_json(), "details": details},
    )
    return {"label": verdict.label}
