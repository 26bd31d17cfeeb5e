"""``--task translation_pn``: fairseq's ``translation`` task whose training step keeps the
batch-statistics norms' state honest.

fairseq's trainer runs a *dummy* batch through the model in training mode when a batch is
skipped after running out of memory, or when a data-parallel worker has run out of data
while the others still train (it then multiplies the loss by 0). The task's ``train_step``
is the one place where fairseq says so (``ignore_grad``); the model's forward cannot tell.
Under this task a dummy batch contributes nothing to any norm's statistics, counters or
running buffers (with ``--norm-sync-stats`` it joins the all-reduce with zero weight), and a
step that dies half-way (an out-of-memory error in some layer) leaves every norm's buffers
as they were before the step.
"""
import contextlib

import torch
from fairseq.tasks import register_task
from fairseq.tasks.translation import TranslationConfig, TranslationTask

from ..norms import NormBase
from ..norms.base import dummy_batch_context
from .resume import batch_iterator_as_from_epoch_1


@contextlib.contextmanager
def norm_step_guard(model: torch.nn.Module, dummy: bool = False):
    """One training micro-batch: mark a dummy batch for the norms, and restore the norms'
    buffers if the step raises (fairseq skips an out-of-memory batch and carries on)."""
    norms = [m for m in model.modules() if isinstance(m, NormBase)]
    saved = [{k: b.clone() for k, b in m.named_buffers(recurse=False)} for m in norms]
    try:
        with dummy_batch_context(model, dummy):
            yield
    except BaseException:
        with torch.no_grad():
            for m, state in zip(norms, saved):
                for k, b in state.items():
                    getattr(m, k).copy_(b)
                if hasattr(m, "_k"):
                    m._k = None  # host copy of the counter: re-read from the restored buffer
        raise


@register_task("translation_pn", dataclass=TranslationConfig)
class TranslationPNTask(TranslationTask):
    """fairseq's translation task with the norms' training-step guard (module docstring) and
    the same batches for a resumed run as for a straight one (``get_batch_iterator``)."""

    def get_batch_iterator(self, dataset, *args, **kwargs):
        """fairseq's, with the batches a run from scratch trains on in every epoch, so that a
        resume is exact at epoch ends too (pn_fairseq/tasks/resume.py)."""
        return batch_iterator_as_from_epoch_1(super().get_batch_iterator, self, dataset, *args, **kwargs)

    def train_step(self, sample, model, criterion, optimizer, update_num, ignore_grad=False, **kwargs):
        with norm_step_guard(model, dummy=ignore_grad):
            return super().train_step(sample, model, criterion, optimizer, update_num, ignore_grad=ignore_grad, **kwargs)
