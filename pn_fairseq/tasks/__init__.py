"""fairseq tasks of the plugin: ``translation_pn``, fairseq's translation task with the
normalization layers' training-step guard.

- :mod:`.translation_pn`: the task (its ``train_step`` / ``optimizer_step`` hooks);
- :mod:`.step_state`: what a skipped or retried update must undo in the norms' state;
- :mod:`.resume`: batches of a resumed run drawn as a run from scratch draws them.

May import :mod:`pn_fairseq.norms` and :mod:`pn_fairseq.hooks`; never models or tools.
"""
from .translation_pn import TranslationPNTask  # noqa: F401
