"""Console tools (``pn-average-checkpoints``, ``pn-score``, ``pn-results``, ``pn-plot``) and the
row scripts' ``python -m pn_fairseq.cli.row_results``.

Each module here only parses arguments, sets up logging and turns errors into exit codes;
the work is done by the packages below it: :mod:`pn_fairseq.checkpoints`,
:mod:`pn_fairseq.evaluation`, :mod:`pn_fairseq.analysis`. Every output
file is written through :func:`pn_common.atomic.atomic_output`, so an interrupted run never
leaves a truncated checkpoint, JSON or PNG where a later step would pick it up.
"""
import logging


def quiet_library_logging():
    """Undo a DEBUG root logger left by importing fairseq's models before the plugin.

    ``fairseq/models/wav2vec/wav2vec2_classification.py`` calls
    ``logging.basicConfig(level=DEBUG)`` at import time, after which matplotlib and others flood
    stderr. The plugin's own import prevents it (:mod:`pn_fairseq.hooks.import_logging`); this
    covers a process that imported fairseq first. These tools report with print(), so warnings
    are all they need from the logging system.
    """
    root = logging.getLogger()
    if root.level < logging.WARNING:
        root.setLevel(logging.WARNING)


def seed_list(text):
    """argparse type of ``--seeds 1,2,3`` (pn-results, pn-plot)."""
    import argparse

    try:
        return tuple(int(s) for s in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a comma-separated list of seeds, e.g. 1,2,3") from None
