"""The bottom layer of the project: what both ``pn_dataprep`` and ``pn_fairseq`` use.

- :mod:`.atomic`: atomic file output (a temporary file beside the target, renamed on success).

It may import the standard library only, and nothing imports from it upwards: ``import
pn_fairseq`` registers fairseq models (torch, fairseq) and data preparation must start without
them, so the one shared writer cannot live in either package.
"""
