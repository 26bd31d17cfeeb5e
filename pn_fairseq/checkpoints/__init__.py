"""Reading, writing, averaging and folding fairseq checkpoints.

- :mod:`.serialization`: the allow-list that lets ``torch.load(weights_only=True)`` read fairseq
  checkpoints, and atomic copies of ``checkpoint_last.pt`` / ``checkpoint_best.pt``;
- :mod:`.files`: find (``checkpoint{N}.pt``, their update counts), load, check layouts,
  average, save;
- :mod:`.fold`: ``pn-fold``, eval-mode norms folded into the linear layers they feed.

May import :mod:`pn_common`, :mod:`pn_fairseq.hooks`, :mod:`pn_fairseq.norms` and
:mod:`pn_fairseq.models` (folding rebuilds a model's norms); never evaluation, analysis or the
command-line tools.
"""
