"""Make ``fairseq-train --user-dir pn_fairseq --help`` list the plugin's flags.

fairseq's ``parse_args_and_arch`` handles ``--help`` in its first parsing pass, before it
adds any model's flags, so stock fairseq never lists model flags. fairseq imports the
``--user-dir`` before building its parser; at that moment we register an exit hook that
appends the plugin's group after fairseq's own help text (argparse exits right after
printing it).
"""
import argparse
import atexit
import os
import sys

_registered = False


def _is_fairseq_help(argv):
    prog = os.path.basename(argv[0]) if argv else ""
    return prog.startswith("fairseq-") and any(a in ("-h", "--help") for a in argv[1:])


def plugin_help_text() -> str:
    from .models.architectures import ARCHITECTURES
    from .models.norm_options import add_norm_args

    parser = argparse.ArgumentParser(prog="pn_fairseq", add_help=False, usage=argparse.SUPPRESS)
    add_norm_args(parser)
    body = parser.format_help().strip("\n")
    archs = ", ".join(ARCHITECTURES)
    return (f"\npn_fairseq plugin (model transformer_pn; --arch one of: {archs}):\n"
            "  the model also takes every flag of fairseq's 'transformer' model.\n" + body + "\n")


def register_help_hook(argv=None):
    global _registered
    if not _registered and _is_fairseq_help(sys.argv if argv is None else argv):
        atexit.register(lambda: print(plugin_help_text()))
        _registered = True
