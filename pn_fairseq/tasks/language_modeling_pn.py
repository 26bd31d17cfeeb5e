"""``--task language_modeling_pn``: fairseq's ``language_modeling`` task with the norms'
training-step guard (:mod:`.norm_guard`), for ``transformer_lm_pn`` models."""
from fairseq.tasks import register_task
from fairseq.tasks.language_modeling import LanguageModelingConfig, LanguageModelingTask

from .norm_guard import NormGuardTask


@register_task("language_modeling_pn", dataclass=LanguageModelingConfig)
class LanguageModelingPNTask(NormGuardTask, LanguageModelingTask):
    """fairseq's language-modeling task under the norms' training-step guard."""
