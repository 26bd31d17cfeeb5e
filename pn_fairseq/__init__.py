"""pn_fairseq: normalization schemes for fairseq Transformers (``--user-dir pn_fairseq``).

With fairseq imported (under ``--user-dir`` it always is; a script that imports fairseq after
the plugin gets it the moment fairseq's own ``__init__`` has run), the plugin registers the
``transformer_pn`` model, its architectures, the ``translation_pn`` task and its optimizer and
LR schedulers; allow-lists the classes fairseq checkpoints contain so that torch >= 2.6 loads
them with ``weights_only=True``; makes fairseq's checkpoint copies atomic; and lists the
plugin's flags under ``fairseq-* --help``. (The allow-list comes as soon as torch is imported.)
Until then nothing imports fairseq (nor torch), so the light tools (``pn-score``,
``pn-results``, ``pn-plot``) start in a fraction of a second
(:mod:`pn_fairseq.hooks.after_import`). Inside ``fairseq-*`` commands the import also reports
bad input in one line and refuses torchrun launches that would train independent copies. The
layering of the packages: docs/development.md "Layout".
"""

from .hooks.after_import import call_after_import
from .hooks.errors import install_cli_excepthook
from .hooks.import_logging import warnings_only_while_importing
from .hooks.launch_check import check_launch, check_restore_file

install_cli_excepthook()
check_launch()
check_restore_file()


def _allow_checkpoint_globals():
    from .checkpoints.serialization import allow_fairseq_checkpoint_globals

    allow_fairseq_checkpoint_globals()


def _register_with_fairseq():
    from .checkpoints.serialization import make_fairseq_checkpoint_copies_atomic
    from .hooks.numpy_compat import restore_numpy_compat_long

    make_fairseq_checkpoint_copies_atomic()
    restore_numpy_compat_long()  # fairseq 0.12's np.compat.long under numpy 2 (hooks/numpy_compat.py)

    # The modules that register, not their packages: when a package's first line (`import
    # fairseq`) set this off, the package is still half-run and importing it again gives nothing.
    from .tasks import translation_pn, language_modeling_pn, masked_lm_pn  # noqa: F401
    from .models import transformer_pn, architectures, transformer_lm_pn, lm_architectures, roberta_pn, roberta_architectures  # noqa: F401
    from .optim import epoch_step, preln_schedules, radam  # noqa: F401

    from .hooks.help import register_help_hook
    from .models.help_text import plugin_help_text

    register_help_hook(plugin_help_text)


# `import pn_fairseq` then `torch.load(a fairseq checkpoint)` works, as it always has.
call_after_import("torch", _allow_checkpoint_globals)
# fairseq's package import, and the submodules this imports, log at import time (import_logging).
call_after_import("fairseq", _register_with_fairseq, around=warnings_only_while_importing)
