"""Make ``fairseq-train --user-dir pn_fairseq --help`` list the plugin's flags.

fairseq's ``parse_args_and_arch`` handles ``--help`` in its first parsing pass, before it
adds any model's flags, so stock fairseq never lists model flags. fairseq imports the
``--user-dir`` before building its parser; at that moment we register an exit hook that
appends the plugin's group after fairseq's own help text (argparse exits right after
printing it).
"""
import atexit
import os
import sys

_registered = False


def _is_fairseq_help(argv):
    prog = os.path.basename(argv[0]) if argv else ""
    return prog.startswith("fairseq-") and any(a in ("-h", "--help") for a in argv[1:])


def register_help_hook(help_text, argv=None):
    """Print ``help_text()`` after fairseq's own help when this process is ``fairseq-* --help``.

    ``help_text`` is a callable (:func:`pn_fairseq.models.help_text.plugin_help_text`), called only
    then: the hook knows nothing of the models it describes."""
    global _registered
    if not _registered and _is_fairseq_help(sys.argv if argv is None else argv):
        atexit.register(lambda: print(help_text()))
        _registered = True
