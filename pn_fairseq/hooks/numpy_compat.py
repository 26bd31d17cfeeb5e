"""``numpy.compat.long`` for fairseq 0.12 under numpy 2.

fairseq-fixed 0.12.3.1 still names ``np.compat.long`` in two places: ``TokenBlockDataset`` with
``--sample-break-mode eos`` (the language-modeling task's sentence blocks, and the dataset that
``fairseq-interactive`` / ``fairseq-generate`` build for a language model's prefixes) and
``LanguagePairDataset``'s length bucketing. numpy 2 removed ``numpy.compat``, so those paths
die with an AttributeError. numpy 1.x defined ``compat.long = int``; the plugin puts that one
name back, only where numpy lacks it, inside fairseq processes that load the plugin.
"""
import types


def restore_numpy_compat_long():
    import numpy as np

    if getattr(np, "compat", None) is None:
        np.compat = types.SimpleNamespace(long=int)
