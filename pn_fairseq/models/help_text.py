"""The plugin's section of ``fairseq-train --help`` (printed by :mod:`pn_fairseq.hooks.help`)."""
import argparse

from .architectures import ARCHITECTURES
from .lm_architectures import ARCHITECTURES as LM_ARCHITECTURES
from .norm_options import add_norm_args
from .roberta_architectures import ARCHITECTURES as ROBERTA_ARCHITECTURES


def plugin_help_text() -> str:
    parser = argparse.ArgumentParser(prog="pn_fairseq", add_help=False, usage=argparse.SUPPRESS)
    add_norm_args(parser)
    body = parser.format_help().strip("\n")
    models = (("transformer_pn", ARCHITECTURES, "transformer", "translation_pn"),
              ("transformer_lm_pn", LM_ARCHITECTURES, "transformer_lm", "language_modeling_pn"),
              ("roberta_pn", ROBERTA_ARCHITECTURES, "roberta", "masked_lm_pn"))
    lines = [f"  {model} (--task {task}; every flag of fairseq's '{base}' model too); --arch one of: "
             f"{', '.join(archs)}" for model, archs, base, task in models]
    return "\npn_fairseq plugin models:\n" + "\n".join(lines) + "\n" + body + "\n"
