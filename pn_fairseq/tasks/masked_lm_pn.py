"""``--task masked_lm_pn``: fairseq's ``masked_lm`` task with the norms' training-step guard
(:mod:`.norm_guard`), for ``roberta_pn`` models, and with dynamic masking that holds.

fairseq's ``MaskTokensDataset`` draws each sample's mask from ``(seed, epoch, index)`` and
learns the epoch through ``set_epoch``, which fairseq calls on the dataset of the main process.
fairseq 0.12 also keeps its data-loader workers alive across epochs (``persistent_workers``,
with ``--num-workers`` >= 1, the default being 1): the workers hold a copy of the dataset made
when they started, never see a later ``set_epoch``, and so mask every epoch as the first one
(static masking, each mask seen every epoch) -- until a resumed process starts new workers in
epoch E and switches to epoch E's masks. This task turns persistent workers off, so that each
epoch's workers start from the dataset as ``set_epoch`` left it: every epoch gets its own masks,
as RoBERTa intends, and a resumed run masks as a straight one.
"""
from dataclasses import dataclass, field

from fairseq.tasks import register_task
from fairseq.tasks.masked_lm import MaskedLMConfig, MaskedLMTask

from .norm_guard import NormGuardTask


@dataclass
class MaskedLMPNConfig(MaskedLMConfig):
    # FairseqTask.get_batch_iterator reads this name from the task's config (default True).
    persistent_workers: bool = field(default=False, metadata={
        "help": "keep the data-loader workers alive across epochs (fairseq's default); off here because a "
                "persistent worker never sees the epoch and masks every epoch with epoch 1's masks"})


@register_task("masked_lm_pn", dataclass=MaskedLMPNConfig)
class MaskedLMPNTask(NormGuardTask, MaskedLMTask):
    """fairseq's masked-LM task under the norms' training-step guard, with fresh masks every
    epoch whatever ``--num-workers`` is."""
