"""pn_fairseq: normalization schemes for fairseq Transformers (``--user-dir pn_fairseq``).

Importing the package registers the ``transformer_pn`` model, its architectures, the
``translation_pn`` task and the plugin's optimizer and LR schedulers; allow-lists the classes
fairseq checkpoints contain so that torch >= 2.6 loads them with ``weights_only=True``; makes
fairseq's checkpoint copies atomic; and, inside ``fairseq-*`` commands, reports bad input in one
line, refuses torchrun launches that would train independent copies and lists the plugin's
flags under ``--help``. The layering of the packages: README, "Layout".
"""

from .hooks.import_logging import warnings_only_while_importing

# fairseq is first imported below (its package import pulls in all its models and tasks).
with warnings_only_while_importing():
    from .hooks.errors import install_cli_excepthook
    from .hooks.launch_check import check_launch, check_restore_file
    from .checkpoints.serialization import allow_fairseq_checkpoint_globals, make_fairseq_checkpoint_copies_atomic

    install_cli_excepthook()
    check_launch()
    check_restore_file()
    allow_fairseq_checkpoint_globals()
    make_fairseq_checkpoint_copies_atomic()

    from . import models, optim, tasks  # noqa: F401

    from .hooks.help import register_help_hook
    from .models.help_text import plugin_help_text

    register_help_hook(plugin_help_text)
