"""ftmech's interpretability library: is a fine-tuned capability removed, or only wrapped?

Re-exports only, resolved on first use (PEP 562), so ``import interp`` and its light submodules (configs,
errors, the command line's helpers) load without torch; ``interp.build_model`` and the rest import their
module when first read. Everything else stays in its submodule (e.g. ``interp.pruning.wanda_scores``,
``interp.stats.wilson_ci``).
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from interp import hooks
    from interp.activations import collect_activations
    from interp.audit import AuditEvidence, AuditThresholds, audit
    from interp.batches import Batch, EvalSet
    from interp.checkpoints import load_checkpoint, save_checkpoint
    from interp.diffing import kl_by_position, weight_diff
    from interp.evaluation import evaluate
    from interp.masks import learn_mask
    from interp.models import ModelConfig, build_model
    from interp.patching import patch_across_models
    from interp.probing import ProbeConfig, probe_layers, train_probe
    from interp.pruning import prune_by_saliency
    from interp.reports import write_report
    from interp.revival import revival_curve
    from interp.training import TrainConfig, train

_EXPORTS = {
    "hooks": "interp.hooks",
    "collect_activations": "interp.activations",
    "AuditEvidence": "interp.audit",
    "AuditThresholds": "interp.audit",
    "audit": "interp.audit",
    "Batch": "interp.batches",
    "EvalSet": "interp.batches",
    "load_checkpoint": "interp.checkpoints",
    "save_checkpoint": "interp.checkpoints",
    "kl_by_position": "interp.diffing",
    "weight_diff": "interp.diffing",
    "evaluate": "interp.evaluation",
    "learn_mask": "interp.masks",
    "ModelConfig": "interp.models",
    "build_model": "interp.models",
    "patch_across_models": "interp.patching",
    "ProbeConfig": "interp.probing",
    "probe_layers": "interp.probing",
    "train_probe": "interp.probing",
    "prune_by_saliency": "interp.pruning",
    "write_report": "interp.reports",
    "revival_curve": "interp.revival",
    "TrainConfig": "interp.training",
    "train": "interp.training",
}
__all__ = [
    "AuditEvidence",
    "AuditThresholds",
    "Batch",
    "EvalSet",
    "ModelConfig",
    "ProbeConfig",
    "TrainConfig",
    "audit",
    "build_model",
    "collect_activations",
    "evaluate",
    "hooks",
    "kl_by_position",
    "learn_mask",
    "load_checkpoint",
    "patch_across_models",
    "probe_layers",
    "prune_by_saliency",
    "revival_curve",
    "save_checkpoint",
    "train",
    "train_probe",
    "weight_diff",
    "write_report",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'interp' has no attribute {name!r}")
    module = importlib.import_module(_EXPORTS[name])
    value = module if module.__name__ == f"interp.{name}" else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
