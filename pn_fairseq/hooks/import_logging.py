"""Keep fairseq's import-time logging out of a process that has not set up logging.

Importing fairseq's models runs ``logging.basicConfig(level=DEBUG)`` in
``fairseq/models/wav2vec/wav2vec2_classification.py``; its tasks then log at INFO (``Please
install tensorboardX``), so every ``pn-*`` tool and every script that imports the plugin printed
``INFO:fairseq.tasks.text_to_speech:...`` on stderr, and the root logger was left at DEBUG.
Inside ``fairseq-*`` commands logging is configured before the plugin is imported, and this
changes nothing there.
"""
import contextlib
import logging
import sys


@contextlib.contextmanager
def warnings_only_while_importing():
    """While the block runs, an unconfigured root logger gets a temporary stderr handler for
    WARNING and above: ``basicConfig`` then does nothing, INFO is dropped, warnings still show.
    Afterwards the root logger is as it was (no handler, its level unchanged)."""
    root = logging.getLogger()
    if root.handlers:
        yield
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.WARNING)
    level = root.level
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
