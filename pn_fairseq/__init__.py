"""pn_fairseq: normalization schemes for fairseq Transformers (``--user-dir pn_fairseq``).

Importing the package registers the ``transformer_pn`` model, its architectures and the
plugin's LR scheduler, and allow-lists the classes fairseq checkpoints contain so that
torch >= 2.6 loads them with ``weights_only=True``.
"""
from .serialization import allow_fairseq_checkpoint_globals

allow_fairseq_checkpoint_globals()

from . import models, optim  # noqa: E402,F401

from .help import register_help_hook  # noqa: E402

register_help_hook()
