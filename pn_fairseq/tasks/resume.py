"""Exact resume from any checkpoint, epoch ends included.

fairseq's task builds the training batches once per process and reuses them every epoch
(only their order is reshuffled, with ``--seed + epoch``); but it draws the tie-break among
equally long sentences, i.e. which sentences share a batch, with ``--seed + E0``, where E0 is
the epoch the process *started* in. A run from scratch starts in epoch 1; a run resumed from
a checkpoint of epoch E (``checkpoint_last.pt`` saved at the end of epoch E-1 says "epoch E,
0 batches done") starts in E and trains on other batches from then on: different losses
from the first update after the resume (fairseq-fixed 0.12.3.1, stock ``--task
translation`` too). A resume in the middle of epoch 1 was exact only because E0 = 1 there.

:func:`batch_iterator_as_from_epoch_1` builds the batches as a run from scratch does (E0 =
1) and then moves the iterator to the requested epoch through its own ``load_state_dict``,
so that every process of a run, first or resumed, trains on the same batches in the same
order. Nothing changes for a run from scratch, nor where fairseq rebuilds the batches every
epoch anyway (``--update-epoch-batch-itr``, sharded data, ``rebuild_batches``): both
straight and resumed runs then build epoch E's batches in epoch E.
"""


def _batches_reused_across_epochs(task, dataset, kwargs) -> bool:
    """Whether fairseq will build this dataset's batches once and reuse them every epoch
    (the conditions of ``FairseqTask.get_batch_iterator``)."""
    return (not kwargs.get("disable_iterator_cache", False)
            and not kwargs.get("update_epoch_batch_itr", False)
            and not getattr(task.cfg, "rebuild_batches", False)
            and task.can_reuse_epoch_itr(dataset))


def batch_iterator_as_from_epoch_1(get_batch_iterator, task, dataset, *args, **kwargs):
    """``task.get_batch_iterator(dataset, ...)`` (fairseq's, passed as ``get_batch_iterator``)
    whose batches are those a run from scratch trains on, whatever ``epoch`` it starts at."""
    epoch = kwargs.get("epoch", 1)
    if (args or epoch <= 1 or dataset in task.dataset_to_epoch_iter
            or not _batches_reused_across_epochs(task, dataset, kwargs)):
        return get_batch_iterator(dataset, *args, **kwargs)
    itr = get_batch_iterator(dataset, **{**kwargs, "epoch": 1})
    dataset.set_epoch(epoch)  # where fairseq's own call would have left the dataset
    # "epoch E, nothing consumed yet": what the iterator would say had it been built in E.
    itr.load_state_dict({"version": 2, "epoch": epoch, "iterations_in_epoch": 0, "shuffle": True})
    return itr
