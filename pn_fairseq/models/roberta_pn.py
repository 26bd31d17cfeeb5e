"""``roberta_pn``: fairseq's RoBERTa (BERT's masked-LM encoder) with registry-built norms.

``--norm-type`` sets every norm of the encoder stack: both norms of each layer, the final norm
of a pre-norm model and the embedding norm (``layernorm_embedding``, BERT's post-norm only),
as the PowerNorm authors' released RoBERTa changes did. The LM head's norm
(``encoder.lm_head.layer_norm``) stays LayerNorm, as theirs did, unless
``--lm-head-norm-type`` chooses another. Checkpoint parameter names are fairseq's ``roberta``
names (``encoder.sentence_encoder.layernorm_embedding.weight``, ...); batch-statistics norms
add their running buffers.

Shapes: the embedding norm runs on ``B x T x C`` before fairseq's transpose (built
``batch_first``) and sees ``src_tokens``' padding (``B x T``, True = pad); the layers' norms
take ``T x B x C``; the LM head's norm takes the masked positions' ``N x C`` (every position's
``B x T x C``, padding masked, when the criterion passes no masked positions).
"""
from unittest import mock

from fairseq.models import register_model
from fairseq.models.roberta import model as fairseq_roberta
from fairseq.models.roberta.model import RobertaEncoder, RobertaModel
from fairseq.models.transformer import TransformerConfig
from fairseq.modules.transformer_sentence_encoder import init_bert_params

from ..hooks.errors import PNUserError
from ..norms import NORM_CHOICES, pad_mask_context
from .norm_options import add_norm_args, build_side_norm, fill_norm_defaults
from .pn_model import NormModel
from .transformer_pn import PNTransformerEncoder


class PNRobertaSentenceEncoder(PNTransformerEncoder):
    """The stack ``RobertaEncoder.build_encoder`` builds (fairseq's legacy ``TransformerEncoder``
    signature, ``args``): :class:`PNTransformerEncoder`, whose embedding norm follows ``--norm-type``
    too (``src_tokens: B x T``; the embedding norm takes ``B x T x C`` with their padding mask)."""

    def __init__(self, args, dictionary, embed_tokens):
        self.args = args  # fairseq's legacy encoder keeps it
        cfg = TransformerConfig.from_namespace(args)
        super().__init__(cfg, dictionary, embed_tokens)


class _HeadNormArgs:
    """``args`` as ``build_side_norm`` reads them for the LM head: ``--lm-head-norm-type`` in
    place of ``--norm-type``, every other norm option shared."""

    def __init__(self, args):
        self._args = args
        self.norm_type = args.lm_head_norm_type

    def __getattr__(self, name):
        return getattr(self._args, name)


class PNRobertaEncoder(RobertaEncoder):
    """fairseq's ``RobertaEncoder`` built with the plugin's stack and LM-head norm."""

    def build_encoder(self, args, dictionary, embed_tokens):
        encoder = PNRobertaSentenceEncoder(args, dictionary, embed_tokens)
        encoder.apply(init_bert_params)  # as fairseq's build_encoder
        return encoder

    def build_lm_head(self, embed_dim, output_dim, activation_fn, weight):
        head = super().build_lm_head(embed_dim, output_dim, activation_fn, weight)
        head.layer_norm = build_side_norm(_HeadNormArgs(self.args), "encoder", embed_dim,
                                          self.args.encoder_attention_heads, batch_first=True)
        return head

    def forward(self, src_tokens, features_only=False, return_all_hiddens=False, masked_tokens=None, **unused):
        # Without masked positions the head sees every position (B x T x C): mask the padding.
        head_pad = src_tokens.eq(self.sentence_encoder.padding_idx) if masked_tokens is None else None
        with pad_mask_context([self.lm_head.layer_norm], head_pad):
            return super().forward(src_tokens, features_only, return_all_hiddens, masked_tokens, **unused)


def check_roberta_norm_args(args):
    """Refuse the norm flags that have no place in an encoder-only masked LM."""
    decoder = getattr(args, "decoder_norm_type", None)
    if decoder not in (None, "layer"):  # "layer": the default every saved config carries
        raise PNUserError(
            f"--decoder-norm-type {decoder} does not apply to roberta_pn (an encoder, no decoder): use --norm-type "
            f"{decoder} (every encoder norm, the embedding norm included) or --lm-head-norm-type {decoder}")
    if getattr(args, "pn_causal", False):
        raise PNUserError(
            "--pn-causal does not apply to roberta_pn: its encoder is bidirectional, so batch statistics pool only "
            "inputs that self-attention already shows every position: drop it")
    if getattr(args, "deepnorm", False):
        raise PNUserError(
            "--deepnorm does not apply to roberta_pn (the plugin has DeepNet's encoder-decoder constants only, and "
            "RoBERTa re-initialises every linear layer with BERT's init after the build): drop --deepnorm")
    if getattr(args, "fixnorm", False):
        raise PNUserError("--fixnorm does not apply to roberta_pn (its embedding is RoBERTa's, tied to the LM "
                          "head's output): drop --fixnorm")
    if getattr(args, "lm_head_norm_type", None) is None:
        args.lm_head_norm_type = "layer"


@register_model("roberta_pn")
class RobertaPNModel(NormModel, RobertaModel):
    """fairseq's ``roberta`` with ``--norm-type`` choosing every encoder norm and
    ``--lm-head-norm-type`` the LM head's."""

    guard_task_name = "masked_lm_pn"

    @classmethod
    def add_args(cls, parser):
        RobertaModel.add_args(parser)
        add_norm_args(parser)
        parser.add_argument("--lm-head-norm-type", choices=NORM_CHOICES,
                            help="norm of the masked-LM head (encoder.lm_head.layer_norm, over the masked positions; "
                                 "default: layer, as the PowerNorm authors' RoBERTa kept it)")
        # fairseq's roberta reads these (TransformerConfig) but its add_args never offers them.
        parser.add_argument("--checkpoint-activations", action="store_true",
                            help="recompute each encoder layer's activations in the backward (saves memory; "
                                 "the norms' statistics move once per step)")
        parser.add_argument("--offload-activations", action="store_true",
                            help="with --checkpoint-activations, keep the saved activations in CPU memory")

    @classmethod
    def norm_flag(cls, name):
        return "--lm-head-norm-type" if ".lm_head." in f".{name}." else "--norm-type"

    @classmethod
    def build_model(cls, args, task):
        check_roberta_norm_args(args)
        fill_norm_defaults(args)
        # fairseq's build_model builds RobertaEncoder inline (fairseq-notes); for one build that
        # name is the plugin's encoder, so everything else, random initialisation included,
        # comes about exactly as in fairseq's own build.
        with mock.patch.object(fairseq_roberta, "RobertaEncoder", PNRobertaEncoder):
            model = super().build_model(args, task)
        return cls.attach_norms(model, args, task)
