"""The training-step guard every task of the plugin shares (:class:`NormGuardTask`).

fairseq's trainer runs a *dummy* batch through the model in training mode when a batch is
skipped after running out of memory, or when a data-parallel worker has run out of data
while the others still train (it then multiplies the loss by 0). The task's ``train_step``
is the one place where fairseq says so (``ignore_grad``); the model's forward cannot tell.
Under these tasks a dummy batch contributes nothing to any norm's statistics, counters or
running buffers (with ``--norm-sync-stats`` it joins the all-reduce with zero weight), and a
step that dies half-way (an out-of-memory error in some layer) leaves every norm's buffers
as they were before the step.

Mixed precision (``step_state.py``): the norms learn the loss scale their gradients carry,
and an update fairseq does not apply (an fp16/AMP overflow, an AMP retry, an out-of-memory
batch) leaves every running buffer, counter and ``nu`` as it was. Divergence of a running
statistic stops every worker at the same update (through fairseq's logging all-reduce).

The mixin goes first in the bases (``class T(NormGuardTask, fairseq's task)``), so that its
hooks wrap fairseq's own through ``super()``.
"""
import contextlib

import torch

from ..norms import NormBase
from ..norms.base import dummy_batch_context
from ..norms.state import loss_scale_context
from .resume import batch_iterator_as_from_epoch_1
from .step_state import StepLedger, divergence, first_nonfinite, loss_scale_of, step_ledger, uses_grad_scaler

NONFINITE = "pn_nonfinite"  # logging-output key: norm buffers a step left non-finite


def ledger_of(model: torch.nn.Module) -> StepLedger:
    """The model's :class:`StepLedger` (transformer_pn builds one; another model using the
    plugin's norms gets one here)."""
    ledger = step_ledger(model)
    if ledger is None:
        ledger = StepLedger(model, {k: m for k, m in model.named_modules() if isinstance(m, NormBase)})
        model._step_ledger = ledger
    return ledger


@contextlib.contextmanager
def norm_step_guard(model: torch.nn.Module, dummy: bool = False, loss_scale: float = 1.0, update=None):
    """One training micro-batch: open (or continue) fairseq's attempt at an update, mark a
    dummy batch for the norms, tell them the loss scale their gradients carry, and undo the
    micro-batch if it raises (fairseq skips an out-of-memory batch and carries on)."""
    ledger = ledger_of(model)
    ledger.begin_micro_batch(model, update)
    try:
        with dummy_batch_context(model, dummy), loss_scale_context(ledger.norms, loss_scale):
            yield ledger
    except BaseException:
        ledger.abort_micro_batch()
        raise


class NormGuardTask:
    """The norms' training-step guard (module docstring) and the same batches for a resumed
    run as for a straight one (``get_batch_iterator``), for any fairseq task."""

    def get_batch_iterator(self, dataset, *args, **kwargs):
        """fairseq's, with the batches a run from scratch trains on in every epoch, so that a
        resume is exact at epoch ends too (pn_fairseq/tasks/resume.py)."""
        return batch_iterator_as_from_epoch_1(super().get_batch_iterator, self, dataset, *args, **kwargs)

    def train_step(self, sample, model, criterion, optimizer, update_num, ignore_grad=False, **kwargs):
        scale = loss_scale_of(optimizer)
        with norm_step_guard(model, dummy=ignore_grad, loss_scale=scale, update=update_num) as ledger:
            loss, sample_size, logging_output = super().train_step(
                sample, model, criterion, optimizer, update_num, ignore_grad=ignore_grad, **kwargs)
        # The divergence check rides on fairseq's own all-reduce of the logging outputs
        # (reduce_metrics, on applied updates only), so that every worker stops at the same
        # update with the same line, at no extra synchronisation.
        count = ledger.pop_nonfinite()
        if count is not None:
            logging_output[NONFINITE] = count
        self._ledger = ledger
        return loss, sample_size, logging_output

    def optimizer_step(self, optimizer, model, update_num):
        """fairseq calls this for every applied update, and under ``--amp`` also for an
        overflowed one, which torch's GradScaler skips (its scale then drops)."""
        scale_before = loss_scale_of(optimizer) if uses_grad_scaler(optimizer) else None
        super().optimizer_step(optimizer, model, update_num)
        applied = scale_before is None or loss_scale_of(optimizer) >= scale_before
        ledger_of(model).end_attempt(applied)

    def begin_valid_epoch(self, epoch, model):
        ledger_of(model).settle()  # validate on the state of applied updates only
        super().begin_valid_epoch(epoch, model)

    def reduce_metrics(self, logging_outputs, criterion):
        super().reduce_metrics(logging_outputs, criterion)
        if any(float(log.get(NONFINITE, 0)) > 0 for log in logging_outputs):
            ledger = getattr(self, "_ledger", None)
            here = first_nonfinite(ledger.flags) if ledger is not None else None
            raise divergence(ledger.update if ledger is not None else "?",
                             here or "a running statistic of the norms on another worker")
