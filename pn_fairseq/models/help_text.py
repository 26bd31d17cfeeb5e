"""The plugin's section of ``fairseq-train --help`` (printed by :mod:`pn_fairseq.hooks.help`)."""
import argparse

from .architectures import ARCHITECTURES
from .norm_options import add_norm_args


def plugin_help_text() -> str:
    parser = argparse.ArgumentParser(prog="pn_fairseq", add_help=False, usage=argparse.SUPPRESS)
    add_norm_args(parser)
    body = parser.format_help().strip("\n")
    archs = ", ".join(ARCHITECTURES)
    return (f"\npn_fairseq plugin (model transformer_pn; --arch one of: {archs}):\n"
            "  the model also takes every flag of fairseq's 'transformer' model.\n" + body + "\n")
