"""The ``transformer_pn`` model: fairseq's Transformer with registry-built norms.

Checkpoint parameter names are fairseq's (``encoder.layers.0.self_attn_layer_norm.weight``,
``encoder.layer_norm.weight``, ...); batch-statistics norms add their running buffers.
"""
from fairseq.models import register_model
from fairseq.models.transformer import (
    TransformerConfig,
    TransformerDecoderBase,
    TransformerEncoderBase,
    TransformerModel,
)

from ..norms import pad_mask_context
from .fixnorm import FixNormEmbedding, FixNormLinear
from .layers import PNTransformerDecoderLayer, PNTransformerEncoderLayer, wrap_layer
from .norm_options import add_norm_args, build_side_norm, fill_norm_defaults
from .pn_model import NormModel, norm_kind_in_state, vocabulary_differences  # noqa: F401  (tests import them here)


class PNTransformerEncoder(TransformerEncoderBase):
    """Encoder whose layer norms, final norm (pre-norm) and embedding norm (``--layernorm-embedding``;
    it sees ``B x T x C`` with the ``B x T`` padding mask) follow ``--norm-type``."""

    def __init__(self, cfg, dictionary, embed_tokens, return_fc=False):
        super().__init__(cfg, dictionary, embed_tokens, return_fc=return_fc)
        if self.layer_norm is not None:
            self.layer_norm = build_side_norm(cfg, "encoder", embed_tokens.embedding_dim, cfg.encoder.attention_heads)
        if self.layernorm_embedding is not None:
            self.layernorm_embedding = build_side_norm(
                cfg, "encoder", embed_tokens.embedding_dim, cfg.encoder.attention_heads, batch_first=True)

    def build_encoder_layer(self, cfg):
        return wrap_layer(PNTransformerEncoderLayer(cfg, return_fc=self.return_fc), cfg)

    def forward_scriptable(self, src_tokens, src_lengths=None, return_all_hiddens=False, token_embeddings=None):
        # src_tokens: B x T; the final norm sees the same padding as the layers.
        with pad_mask_context([self.layer_norm, self.layernorm_embedding], src_tokens.eq(self.padding_idx)):
            return super().forward_scriptable(src_tokens, src_lengths, return_all_hiddens, token_embeddings)


class PNTransformerDecoder(TransformerDecoderBase):
    """Decoder whose norms, the embedding norm (``--layernorm-embedding``, ``B x T x C``) included,
    follow ``--decoder-norm-type`` (LayerNorm by default)."""

    def __init__(self, cfg, dictionary, embed_tokens, no_encoder_attn=False, output_projection=None):
        super().__init__(cfg, dictionary, embed_tokens, no_encoder_attn=no_encoder_attn,
                         output_projection=output_projection)
        if self.layer_norm is not None:
            self.layer_norm = build_side_norm(cfg, "decoder", self.embed_dim, cfg.decoder.attention_heads)
        if self.layernorm_embedding is not None:
            self.layernorm_embedding = build_side_norm(cfg, "decoder", self.embed_dim, cfg.decoder.attention_heads,
                                                       batch_first=True)

    def build_decoder_layer(self, cfg, no_encoder_attn=False):
        return wrap_layer(PNTransformerDecoderLayer(cfg, no_encoder_attn), cfg)

    def build_output_projection(self, cfg, dictionary, embed_tokens):
        super().build_output_projection(cfg, dictionary, embed_tokens)
        # --fixnorm: a projection tied to the embeddings uses their unit-length rows too.
        if getattr(cfg, "fixnorm", False) and self.share_input_output_embed and self.output_projection is not None:
            self.output_projection = FixNormLinear.tied_to(self.embed_tokens.weight)

    def extract_features_scriptable(self, prev_output_tokens, encoder_out, incremental_state=None, *args, **kwargs):
        # prev_output_tokens: B x T; incremental decoding only feeds the last column.
        tokens = prev_output_tokens[:, -1:] if incremental_state is not None else prev_output_tokens
        with pad_mask_context([self.layer_norm, self.layernorm_embedding], tokens.eq(self.padding_idx)):
            return super().extract_features_scriptable(prev_output_tokens, encoder_out, incremental_state, *args, **kwargs)


@register_model("transformer_pn")
class TransformerPNModel(NormModel, TransformerModel):
    """Transformer with selectable normalization (LN, BN, PN-V, PN); see ``--norm-type``."""

    @classmethod
    def add_args(cls, parser):
        super().add_args(parser)
        add_norm_args(parser)

    @classmethod
    def build_model(cls, args, task):
        fill_norm_defaults(args)
        return cls.attach_norms(super().build_model(args, task), args, task)

    @classmethod
    def build_embedding(cls, args, dictionary, embed_dim, path=None):
        emb = super().build_embedding(args, dictionary, embed_dim, path)
        return FixNormEmbedding.from_embedding(emb) if getattr(args, "fixnorm", False) else emb

    @classmethod
    def build_encoder(cls, args, src_dict, embed_tokens):
        return PNTransformerEncoder(TransformerConfig.from_namespace(args), src_dict, embed_tokens)

    @classmethod
    def build_decoder(cls, args, tgt_dict, embed_tokens):
        cfg = TransformerConfig.from_namespace(args)
        return PNTransformerDecoder(cfg, tgt_dict, embed_tokens, no_encoder_attn=cfg.no_cross_attention)
