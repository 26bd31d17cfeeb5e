"""The norms' state across fairseq's training steps: only updates that fairseq applies move it.

fairseq's trainer makes one *attempt* at an update: ``zero_grad``, then ``task.train_step`` for
each micro-batch (forward and backward; the norms move their running statistics here), then
gradient clipping and ``task.optimizer_step``. An attempt is thrown away, its gradients zeroed,
when:

* the gradients overflow under ``--fp16`` / ``--memory-efficient-fp16`` (clipping raises
  ``OverflowError``; ``optimizer_step`` is never called; the loss scale halves);
* they overflow under ``--amp`` (``optimizer_step`` runs, but torch's ``GradScaler`` skips the
  step and halves its scale; fairseq then retries the same batch up to twice);
* a micro-batch runs out of memory (with one worker the whole update is skipped; with several,
  the micro-batches before it are dropped).

:class:`StepLedger` keeps the norms' state at the start of each attempt and puts it back when
the attempt is thrown away, so that a skipped step, a retried batch or an out-of-memory batch
leaves every running buffer, counter and ``nu`` as it was, and a non-finite gradient of a
skipped step never stays in a buffer. An attempt ends unapplied when its gradients are gone
(every parameter's ``grad`` is None: fairseq's ``zero_grad`` sets them so) without an applied
``optimizer_step`` in between; the ledger notices at the next micro-batch, before validation
and before the model's state is saved.
"""
import re
from typing import Dict, Optional

import torch
import torch.nn as nn

from ..hooks.errors import NormDivergence
from ..norms import NormBase

_SUBLAYER = {"self_attn_layer_norm": "attn", "encoder_attn_layer_norm": "cross", "final_layer_norm": "ffn"}


# Where RoBERTa (fairseq's roberta / roberta_pn) keeps its encoder stack and its other norms.
_ROBERTA_STACK = "encoder.sentence_encoder."
_OTHER = {"encoder.layernorm_embedding": "enc.embed", "decoder.layernorm_embedding": "dec.embed",
          "encoder.lm_head.layer_norm": "lm_head"}


def short_name(module_path: str) -> str:
    """``encoder.layers.3.final_layer_norm`` -> ``enc3.ffn``; ``decoder.layer_norm`` -> ``dec.final``;
    RoBERTa's ``encoder.sentence_encoder.layers.0.self_attn_layer_norm`` -> ``enc0.attn``, its
    ``...layernorm_embedding`` -> ``enc.embed``, ``encoder.lm_head.layer_norm`` -> ``lm_head``. Other
    paths are kept whole."""
    if module_path.startswith(_ROBERTA_STACK):
        module_path = "encoder." + module_path[len(_ROBERTA_STACK):]
    m = re.fullmatch(r"(encoder|decoder)\.layers\.(\d+)\.(\w+)", module_path)
    if m:
        return f"{m.group(1)[:3]}{m.group(2)}.{_SUBLAYER.get(m.group(3), m.group(3))}"
    m = re.fullmatch(r"(encoder|decoder)\.layer_norm", module_path)
    return f"{m.group(1)[:3]}.final" if m else _OTHER.get(module_path, module_path)


def divergence(update, where: str) -> NormDivergence:
    """The one-line error of a run whose norm statistic stopped being finite."""
    return NormDivergence(
        f"training diverged at update {update}: {where} is no longer finite. "
        "Rerun with --log-norm-stats and plot the statistics that led there with 'pn-analyze stats RUN_DIR'; "
        "a lower --lr, longer warm-up or --clip-norm may keep the run stable")


def first_nonfinite(entries):
    """``"running_psi2 of the norm enc1.ffn (encoder.layers.1.final_layer_norm)"`` for the first
    false flag of ``entries`` (``(module path, buffer, flag)``; one host sync), or None."""
    if not entries or bool(torch.stack([flag for _, _, flag in entries]).all()):
        return None
    path, name, _ = next(e for e in entries if not bool(e[2]))
    return f"{name} of the norm {short_name(path)} ({path})"


def loss_scale_of(optimizer) -> float:
    """The factor fairseq multiplies the loss by before ``backward``: the dynamic loss scale of
    ``--fp16`` / ``--memory-efficient-fp16`` (``scaler.loss_scale``) or of ``--amp`` (torch's
    ``GradScaler``), 1 otherwise."""
    scaler = getattr(optimizer, "scaler", None)
    if scaler is None:
        return 1.0
    if hasattr(scaler, "loss_scale"):
        return float(scaler.loss_scale)
    if hasattr(scaler, "get_scale"):
        return float(scaler.get_scale())  # a disabled GradScaler (CPU) says 1.0
    return 1.0


def uses_grad_scaler(optimizer) -> bool:
    """``--amp``: fairseq calls ``optimizer_step`` even for an overflowed step (GradScaler skips it)."""
    return hasattr(getattr(optimizer, "scaler", None), "get_scale")


def gradients_cleared(model: nn.Module) -> bool:
    """True when no parameter holds a gradient: fairseq zeroed them (a new attempt)."""
    return all(p.grad is None for p in model.parameters() if p.requires_grad)


class StepLedger:
    """Snapshots of the norms' state (buffers and host counters) for fairseq's attempts at an
    update, kept by the model (``model._step_ledger``) and driven by ``translation_pn``.
    ``norms``: ``{module path: norm}``."""

    def __init__(self, model: nn.Module, norms: Dict[str, NormBase]):
        self._model_ref = [model]  # a list, so that the model does not register itself as a submodule
        self.paths, self.norms = list(norms), list(norms.values())
        self.attempt: Optional[list] = None  # the state when the open attempt began
        self.micro_batch: Optional[list] = None  # the state when the current micro-batch began
        self.update = None  # fairseq's update number of the open attempt
        self.flags = []  # (module path, buffer, finiteness flag) the attempt's micro-batches left

    def _capture(self):
        return [n.capture_state() for n in self.norms]

    def _restore(self, state):
        for n, s in zip(self.norms, state):
            n.restore_state(s)
            n.pop_finite_flags()  # the flags of a discarded forward/backward say nothing
        self.flags = []

    def begin_micro_batch(self, model: nn.Module, update=None):
        """Before a micro-batch's forward: close an attempt fairseq threw away, open a new one."""
        if not self.norms:
            return
        new_attempt = gradients_cleared(model)
        if new_attempt and self.attempt is not None:
            self._restore(self.attempt)
        self.micro_batch = self._capture()
        if new_attempt:
            self.attempt, self.flags = self.micro_batch, []
        self.update = update

    def abort_micro_batch(self):
        """The micro-batch raised (out of memory): undo what it moved."""
        if self.micro_batch is not None:
            self._restore(self.micro_batch)

    def end_attempt(self, applied: bool):
        """After ``optimizer_step``: keep the attempt's state if the update was applied."""
        if not applied and self.attempt is not None:
            self._restore(self.attempt)
        self.attempt = self.micro_batch = None

    def settle(self):
        """Before the state is read (validation, a checkpoint): an attempt whose gradients fairseq
        has zeroed without applying them is undone now rather than at the next micro-batch."""
        if self.attempt is not None and gradients_cleared(self._model_ref[0]):
            self._restore(self.attempt)
            self.attempt = self.micro_batch = None

    def pop_nonfinite(self) -> Optional[torch.Tensor]:
        """A 0-dim tensor counting the running buffers the last micro-batch left non-finite (no
        host sync), their names kept in ``flags``; None without batch-statistics norms. A
        micro-batch that moved nothing (a dummy batch) gives 0: fairseq's fast logging sync
        all-reduces the keys of each worker's outputs, which must be the same on every worker."""
        if not self.norms:
            return None
        entries = [(path, name, flag) for path, n in zip(self.paths, self.norms) for name, flag in n.pop_finite_flags()]
        self.flags += entries
        if not entries:
            return torch.zeros((), dtype=torch.long, device=self.norms[0].weight.device)
        return (~torch.stack([flag for _, _, flag in entries])).sum()


def step_ledger(model: nn.Module) -> Optional[StepLedger]:
    """The ledger of ``model`` (through fairseq's distributed wrappers), or None."""
    return getattr(model, "_step_ledger", None)
