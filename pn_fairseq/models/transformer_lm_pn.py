"""``transformer_lm_pn``: fairseq's decoder-only language model with registry-built norms.

A language model has one stack, so ``--norm-type`` sets every norm of it (the layers' two
norms, the final norm of a pre-norm model, ``--layernorm-embedding``'s); ``--decoder-norm-type``
does not apply and is refused. Checkpoint parameter names are fairseq's ``transformer_lm``
names (``decoder.layers.0.self_attn_layer_norm.weight``, ...).

Causality: in training mode a norm that divides by batch statistics (BN, PN-V, PN during its
warm-up) pools every position of the batch, so a position's output depends on later tokens of
its own sequence (docs/language-models.md measures it). Building such a model warns once;
``--pn-causal`` makes PN normalize by earlier batches' statistics only.
"""
import contextlib
import logging
from unittest import mock

from fairseq.models import register_model
from fairseq.models import transformer_lm as fairseq_lm
from fairseq.models.transformer import TransformerConfig
from fairseq.models.transformer_lm import TransformerLanguageModel, TransformerLanguageModelConfig
from fairseq.dataclass.utils import gen_parser_from_dataclass

from ..hooks.errors import PNUserError
from .fixnorm import FixNormEmbedding
from .norm_options import BATCH_STAT_NORMS, add_norm_args, fill_norm_defaults
from .pn_model import NormModel, training_command
from .transformer_pn import PNTransformerDecoder

logger = logging.getLogger(__name__)


class PNLanguageModelDecoder(PNTransformerDecoder):
    """The decoder fairseq's ``TransformerLanguageModel.build_model`` builds from ``args``
    (fairseq's legacy ``TransformerDecoder`` signature), with the plugin's norms.

    ``prev_output_tokens: B x T`` (the LM's input); norms see its padding (``B x T``, True = pad).
    """

    def __init__(self, args, dictionary, embed_tokens, no_encoder_attn=False, output_projection=None):
        self.args = args  # fairseq's legacy decoder keeps it; tools read decoder.args
        super().__init__(TransformerConfig.from_namespace(args), dictionary, embed_tokens,
                         no_encoder_attn=no_encoder_attn, output_projection=output_projection)


@contextlib.contextmanager
def _plugin_decoder():
    """fairseq's ``TransformerLanguageModel.build_model`` builds its decoder inline from the
    module's ``TransformerDecoder`` name and offers no hook (fairseq-notes); for the length of
    one build that name is the plugin's decoder, so the embedding, the decoder and their random
    initialisation come about exactly as in fairseq's own build."""
    with mock.patch.object(fairseq_lm, "TransformerDecoder", PNLanguageModelDecoder):
        yield


def check_lm_norm_args(args):
    """One stack: ``--norm-type`` decides every norm; refuse the flags that do not apply."""
    args.norm_type = getattr(args, "norm_type", None) or "layer"
    decoder = getattr(args, "decoder_norm_type", None)
    if decoder is not None and decoder != args.norm_type:
        raise PNUserError(
            f"--decoder-norm-type {decoder} does not apply to a language model (one stack): "
            f"use --norm-type {decoder}")
    args.decoder_norm_type = args.norm_type
    if getattr(args, "deepnorm", False):
        raise PNUserError(
            "--deepnorm does not apply to transformer_lm_pn (DeepNorm's constants are defined for "
            "encoder-decoder and encoder-only stacks): drop --deepnorm")
    if getattr(args, "pn_causal", False) and args.norm_type != "power":
        raise PNUserError(f"--pn-causal applies to --norm-type power only (this model: {args.norm_type}): drop it")
    causal_pn = args.norm_type == "power" and getattr(args, "pn_causal", False)
    if args.norm_type in BATCH_STAT_NORMS and not causal_pn and training_command():
        logger.warning(
            "--norm-type %s in a causal language model: in training mode its batch statistics pool every "
            "position, so an output depends on later tokens of its own sequence (training loss too low; "
            "eval mode is unaffected); %s docs/language-models.md has the measured size",
            args.norm_type, "--norm-type power --pn-causal avoids it;" if args.norm_type != "batch" else "")


@register_model("transformer_lm_pn")
class TransformerLMPNModel(NormModel, TransformerLanguageModel):
    """fairseq's ``transformer_lm`` with ``--norm-type`` choosing every norm."""

    guard_task_name = "language_modeling_pn"

    @classmethod
    def add_args(cls, parser):
        # fairseq's transformer_lm flags from its dataclass, then the plugin's norm flags.
        gen_parser_from_dataclass(parser, TransformerLanguageModelConfig(), delete_default=True)
        add_norm_args(parser)

    @classmethod
    def norm_flag(cls, name):
        return "--norm-type"

    @classmethod
    def build_model(cls, args, task):
        check_lm_norm_args(args)  # before the defaults fill --decoder-norm-type in
        fill_norm_defaults(args, causal_stack=True)
        with _plugin_decoder():
            model = super().build_model(args, task)
        return cls.attach_norms(model, args, task)

    @classmethod
    def build_embedding(cls, args, dictionary, embed_dim, path=None):
        emb = super().build_embedding(args, dictionary, embed_dim, path)
        return FixNormEmbedding.from_embedding(emb) if getattr(args, "fixnorm", False) else emb
