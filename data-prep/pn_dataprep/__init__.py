"""Data preparation helpers called by the ``data-prep/prepare-*.sh`` scripts.

Each module mirrors one tool of the fairseq/Moses recipes with pip-installable packages
(sacremoses, subword-nmt) so that no perl and no ``git clone`` is needed:

- :mod:`.moses`: tokenizer.perl, normalize-punctuation.perl, remove-non-printing-char.perl,
  lowercase.perl
- :mod:`.extract`: the grep/sed lines that strip IWSLT tags and pull ``<seg>`` text out of
  xml/sgm files; the tokenized language-modeling files copied out of their archives, checked
- :mod:`.clean`: clean-corpus-n.perl
- :mod:`.bpe`: subword-nmt learn_bpe / apply_bpe, joint and parallel
- :mod:`.checks`: checksums, expected split sizes, ``prep.json`` (translation and ``--only-source``
  language-modeling data)
- :mod:`.fetch`: downloads
- :mod:`.synthetic`: the seeded German-like/English-like demo corpus
- :mod:`.textio`: line files, parallel line maps (written through :mod:`pn_common.atomic`)

The scripts run them as ``python -m pn_dataprep <command>`` (:mod:`.cli`). The package is
separate from the ``pn_fairseq`` plugin and imports neither torch nor fairseq, so each call
starts in a fraction of a second. It imports nothing of ``pn_fairseq`` (nor the other way round);
both write files through the bottom-layer :mod:`pn_common.atomic`.
"""
