"""What every model of the plugin does with its norms, whatever fairseq model it extends
(:class:`NormModel`, first in the bases: ``class M(NormModel, fairseq's model)``): attach the
statistics monitor and the step ledger at build time, refuse settings the norms cannot run
under, stop a diverged run, save only applied updates' state, and check a checkpoint's
vocabulary and norm types before torch's own loading would fail less clearly.
"""
import logging
import os
import sys

import torch.distributed as dist

from ..hooks.errors import PNUserError, VocabularyMismatch
from ..norms.registry import norm_name_of
from ..tasks.norm_guard import NormGuardTask
from ..tasks.step_state import StepLedger
from . import norm_monitor

logger = logging.getLogger(__name__)


def norm_kind_in_state(state_dict, prefix: str) -> str:
    """The norm type a checkpoint holds at ``prefix`` (``encoder.layers.0.final_layer_norm``),
    read off its buffers: PN keeps psi2 and nu, PN-V psi2 only, BN mean and variance; and off
    the per-position norms' parameters: DyT has alpha, ScaleNorm scale, RMSNorm no bias."""
    has = lambda name: f"{prefix}.{name}" in state_dict  # noqa: E731
    if has("running_nu"):
        return "power"
    if has("running_psi2"):
        return "power_v"
    if has("running_mean"):
        return "batch"
    if has("alpha"):
        return "dyt"
    if has("scale"):
        return "scale"
    if has("weight") and not has("bias"):
        return "rms"
    return "layer"


def vocabulary_differences(model, state_dict):
    """``[(side, checkpoint rows, model rows)]`` for the token embedding tables (one row per
    dictionary entry; ``*.embed_tokens``) whose sizes differ between ``state_dict`` and ``model``.
    ``side``: "source" for an encoder's table, "target" for a decoder's (translation's words)."""
    out = []
    # every name of a shared table (--share-all-embeddings: the encoder's and the decoder's)
    for name, module in model.named_modules(remove_duplicate=False):
        if not name.endswith("embed_tokens") or getattr(module, "weight", None) is None:
            continue
        key = name + ".weight"
        theirs = state_dict.get(key)
        if theirs is not None and theirs.dim() == 2 and theirs.shape[0] != module.weight.shape[0]:
            side = "target" if name.startswith("decoder") else "source"
            out.append((side, int(theirs.shape[0]), int(module.weight.shape[0])))
    return out


def training_command() -> bool:
    """Whether this process is fairseq-train (build-time warnings that only training needs)."""
    return bool(sys.argv) and os.path.basename(sys.argv[0]) == "fairseq-train"


class NormModel:
    """The norms' model-level hooks; see the module docstring. Subclasses name the flag that
    sets the norm at a parameter prefix (:meth:`norm_flag`) and the task that guards them."""

    guard_task_name = "translation_pn"

    @classmethod
    def norm_flag(cls, name: str) -> str:
        """The command-line flag that chose the norm at module ``name``."""
        return "--decoder-norm-type" if name.startswith("decoder") else "--norm-type"

    @classmethod
    def attach_norms(cls, model, args, task):
        """At build time: the monitor, the step ledger, refusals, the data-parallel group."""
        model._norms = norm_monitor.attach(model, bool(getattr(args, "log_norm_stats", False)))
        norms = list(model._norms.values())
        if norms and getattr(args, "ddp_backend", None) == "fully_sharded":
            raise PNUserError(
                "--ddp-backend fully_sharded casts the running statistics of BN/PN-V/PN to the training dtype "
                "(fp16 would overflow psi2 and lose nu's small updates): use --ddp-backend c10d (default), "
                "pytorch_ddp, legacy_ddp or no_c10d")
        model._step_ledger = StepLedger(model, model._norms)
        if any(n.sync_stats for n in norms) and dist.is_available() and dist.is_initialized():
            # fairseq's data-parallel group (the whole world unless model parallelism splits it).
            from fairseq.distributed import utils as distributed_utils

            group = distributed_utils.get_data_parallel_group()
            for n in norms:
                n.process_group = group
        if norms and training_command() and not isinstance(task, NormGuardTask):
            logger.warning(
                "--task %s: fairseq's dummy batches (an out-of-memory batch, a worker out of data) will move the "
                "running statistics of BN/PN-V/PN; use --task %s (the row scripts do)",
                getattr(args, "task", type(task).__name__), cls.guard_task_name)
        return model

    def set_num_updates(self, num_updates):
        """fairseq's hook before every training forward: first stop a run whose norms'
        statistics stopped being finite during the previous step, then pass the count on."""
        norms = getattr(self, "_norms", None)
        if norms:
            norm_monitor.check_finite(norms, getattr(self, "_last_update", num_updates))
        self._last_update = num_updates
        super().set_num_updates(num_updates)

    def state_dict(self, *args, **kwargs):
        """The state of applied updates: an attempt fairseq threw away (an fp16 overflow, an
        out-of-memory batch) is undone before a checkpoint reads the norms."""
        ledger = getattr(self, "_step_ledger", None)
        if ledger is not None:
            ledger.settle()
        return super().state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict, strict=True, model_cfg=None, args=None):
        """fairseq's loading, after checking that the checkpoint's vocabularies are this data's
        and that every norm of the checkpoint is of the type this model was built with
        (otherwise torch's size or key error would not say which data or flag differs)."""
        sizes = vocabulary_differences(self, state_dict)
        if sizes:
            raise VocabularyMismatch(sizes, training=training_command())
        for name, module in self.named_modules():
            mine = norm_name_of(module)
            if mine is None:
                continue
            theirs = norm_kind_in_state(state_dict, name)
            if theirs != mine and any(k.startswith(name + ".") for k in state_dict):
                flag = self.norm_flag(name)
                raise PNUserError(
                    f"the checkpoint holds a '{theirs}' norm at {name}, but this model was built with {flag} "
                    f"{mine}: pass {flag} {theirs} to use this checkpoint (or train into a new --save-dir)")
        return super().load_state_dict(state_dict, strict=strict, model_cfg=model_cfg, args=args)
