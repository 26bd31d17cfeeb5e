"""``--task masked_lm_pn``: fairseq's ``masked_lm`` task with the norms' training-step guard
(:mod:`.norm_guard`), for ``roberta_pn`` models."""
from fairseq.tasks import register_task
from fairseq.tasks.masked_lm import MaskedLMConfig, MaskedLMTask

from .norm_guard import NormGuardTask


@register_task("masked_lm_pn", dataclass=MaskedLMConfig)
class MaskedLMPNTask(NormGuardTask, MaskedLMTask):
    """fairseq's masked-LM task under the norms' training-step guard."""
