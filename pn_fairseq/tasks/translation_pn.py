"""``--task translation_pn``: fairseq's ``translation`` task with the norms' training-step
guard (:mod:`.norm_guard`: dummy batches, skipped and retried updates, divergence, exact resume).
"""
from fairseq.tasks import register_task
from fairseq.tasks.translation import TranslationConfig, TranslationTask

from .norm_guard import NormGuardTask, ledger_of, norm_step_guard  # noqa: F401  (re-exported: tests, tools)


@register_task("translation_pn", dataclass=TranslationConfig)
class TranslationPNTask(NormGuardTask, TranslationTask):
    """fairseq's translation task under the norms' training-step guard."""
