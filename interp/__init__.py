"""ftmech's interpretability library: is a fine-tuned capability removed, or only wrapped?

Re-exports only; importing this package has no side effects. Everything else stays in its
submodule (e.g. ``interp.pruning.wanda_scores``, ``interp.stats.wilson_ci``).
"""

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
