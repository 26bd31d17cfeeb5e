"""Scoring, comparing and drawing finished runs: what ``pn-score``, ``pn-results`` and ``pn-plot`` do.

- :mod:`.scoring`: BLEU of fairseq-generate output as each paper reports it;
- :mod:`.significance`: paired bootstrap of rows against a baseline row, per seed pair and pooled;
- :mod:`.results`: the ``results.json`` contract; collecting runs, seeds, the Table 1 layout;
- :mod:`.row_state`: whether a run directory's training and results still answer a row
  script's command (reuse, continue, re-decode or stop);
- :mod:`.curves`: validation curves from ``train.log``, the BLEU- and perplexity-per-row plots;
- :mod:`.figures`: one colour per row in every figure, BLEU axes from 0;
- :mod:`.lm_results`: the language-model rows' ``results-lm.json`` (written, read back checked);
- :mod:`.lm_tables`: their perplexity tables, comparison with a baseline row over seeds, plot data.
- :mod:`.lm_bootstrap`: paired bootstrap of LM rows over test blocks (per-block losses);
- :mod:`.mlm_results`, :mod:`.mlm_tables`: the masked-LM rows' ``results-mlm.json`` and their
  validation-loss tables and curves (updates to reach a reference row's final loss).
- :mod:`.seed_groups`: what lm_tables and mlm_tables share: finding their results files, grouping
  seeds (unfinished and missing ones), per-seed curves.

May import :mod:`pn_common`, :mod:`pn_fairseq.hooks` and :mod:`pn_fairseq.checkpoints`; never
norms or models (a finished run is read from its files), analysis or the command-line tools.
"""
