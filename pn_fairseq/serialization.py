"""Let torch >= 2.6 (``weights_only=True`` by default) load fairseq checkpoints.

fairseq's trainer pickles a few plain-Python objects next to the tensors (the legacy
``argparse.Namespace`` of the model config, and containers from its meters). Rather than
turning ``weights_only`` off, which would let a checkpoint run arbitrary code, we
allow-list exactly those classes. The list was read off real checkpoints written by
``fairseq-train`` with ``torch.serialization.get_unsafe_globals_in_checkpoint``.
"""
import argparse

import torch

# Every global a fairseq-fixed 0.12.3.1 checkpoint (legacy-arg model, Adam, inverse_sqrt,
# meters, also after averaging) references beyond what weights_only allows by default.
FAIRSEQ_CHECKPOINT_GLOBALS = [argparse.Namespace]


def allow_fairseq_checkpoint_globals():
    """Register the classes fairseq checkpoints contain as safe for ``torch.load``."""
    add = getattr(torch.serialization, "add_safe_globals", None)
    if add is not None:  # torch < 2.4 has no allow-list and loads everything anyway
        add(FAIRSEQ_CHECKPOINT_GLOBALS)
