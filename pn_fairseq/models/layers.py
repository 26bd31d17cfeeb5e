"""fairseq's transformer layers with registry-built norms that see the padding mask.

Only ``__init__`` (swap the norms, keeping fairseq's attribute names and hence checkpoint
keys) and ``forward`` (hand the mask to the norms, then run fairseq's own forward) change.
"""
from fairseq.distributed import fsdp_wrap
from fairseq.modules.checkpoint_activations import checkpoint_wrapper
from fairseq.modules.transformer_layer import TransformerDecoderLayerBase, TransformerEncoderLayerBase

from ..norms import pad_mask_context
from ..norms.state import checkpoint_phase, recompute_context
from .deepnorm import DeepNormResidual
from .norm_options import build_side_norm


def wrap_layer(layer, cfg):
    """Re-apply fairseq's activation checkpointing / FSDP wrapping, which its own
    ``build_*_layer`` does and an override would otherwise skip. A checkpointed layer's
    norms see its recomputed forward as a replay (``norms/state.py``)."""
    checkpoint = cfg.checkpoint_activations
    if checkpoint:
        layer = checkpoint_wrapper(layer, offload_to_cpu=cfg.offload_activations)
    return fsdp_wrap(layer, min_num_params=cfg.min_params_to_wrap if not checkpoint else 0)


class PNTransformerEncoderLayer(DeepNormResidual, TransformerEncoderLayerBase):
    """Encoder layer whose two norms come from ``--norm-type``.

    ``x: T x B x C``; ``encoder_padding_mask: B x T`` (True = pad) or None (no padding).
    """

    def __init__(self, cfg, return_fc=False):
        super().__init__(cfg, return_fc=return_fc)
        heads = cfg.encoder.attention_heads
        self.self_attn_layer_norm = build_side_norm(cfg, "encoder", self.embed_dim, heads)
        self.final_layer_norm = build_side_norm(cfg, "encoder", self.embed_dim, heads)
        self.setup_deepnorm(cfg, "encoder")  # --deepnorm only (pn_fairseq/models/deepnorm.py)

    def forward(self, x, encoder_padding_mask, attn_mask=None):
        norms = (self.self_attn_layer_norm, self.final_layer_norm)
        with pad_mask_context(norms, encoder_padding_mask), recompute_context(norms, checkpoint_phase(self)):
            return super().forward(x, encoder_padding_mask, attn_mask=attn_mask)


class PNTransformerDecoderLayer(DeepNormResidual, TransformerDecoderLayerBase):
    """Decoder layer whose norms come from ``--decoder-norm-type``.

    The norms see ``self_attn_padding_mask: B x T`` (target padding; ``B x 1`` when decoding
    incrementally).
    """

    def __init__(self, cfg, no_encoder_attn=False, add_bias_kv=False, add_zero_attn=False):
        super().__init__(cfg, no_encoder_attn, add_bias_kv, add_zero_attn)
        heads = cfg.decoder.attention_heads
        self.self_attn_layer_norm = build_side_norm(cfg, "decoder", self.embed_dim, heads)
        if self.encoder_attn_layer_norm is not None:
            self.encoder_attn_layer_norm = build_side_norm(cfg, "decoder", self.embed_dim, heads)
        self.final_layer_norm = build_side_norm(cfg, "decoder", self.embed_dim, heads)
        self.setup_deepnorm(cfg, "decoder")  # --deepnorm only (pn_fairseq/models/deepnorm.py)

    def forward(self, x, *args, self_attn_padding_mask=None, **kwargs):
        norms = (self.self_attn_layer_norm, self.encoder_attn_layer_norm, self.final_layer_norm)
        with pad_mask_context(norms, self_attn_padding_mask), recompute_context(norms, checkpoint_phase(self)):
            return super().forward(x, *args, self_attn_padding_mask=self_attn_padding_mask, **kwargs)
