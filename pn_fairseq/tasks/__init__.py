"""fairseq tasks of the plugin: fairseq's own under the normalization layers' training-step
guard.

- :mod:`.norm_guard`: the guard (the ``train_step`` / ``optimizer_step`` hooks), one mixin;
- :mod:`.translation_pn`, :mod:`.language_modeling_pn`, :mod:`.masked_lm_pn`: the tasks;
- :mod:`.step_state`: what a skipped or retried update must undo in the norms' state;
- :mod:`.resume`: batches of a resumed run drawn as a run from scratch draws them.

May import :mod:`pn_fairseq.norms` and :mod:`pn_fairseq.hooks`; never models or tools.
"""
# fairseq before this package's modules: the plugin registers with fairseq the moment fairseq's
# import finishes (pn_fairseq/__init__.py), and that imports them, whole, before this goes on.
import fairseq  # noqa: F401,E402
from .translation_pn import TranslationPNTask  # noqa: F401
from .language_modeling_pn import LanguageModelingPNTask  # noqa: F401
from .masked_lm_pn import MaskedLMPNTask  # noqa: F401
