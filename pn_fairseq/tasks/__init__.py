"""fairseq tasks of the plugin: ``translation_pn`` (fairseq's translation task with the
normalization layers' training-step guard)."""
from .translation_pn import TranslationPNTask, norm_step_guard  # noqa: F401
