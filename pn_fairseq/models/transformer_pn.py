"""The ``transformer_pn`` model: fairseq's Transformer with registry-built norms.

Checkpoint parameter names are fairseq's (``encoder.layers.0.self_attn_layer_norm.weight``,
``encoder.layer_norm.weight``, ...); batch-statistics norms add their running buffers.
"""
import logging
import os
import sys

import torch.distributed as dist
from fairseq.models import register_model
from fairseq.models.transformer import (
    TransformerConfig,
    TransformerDecoderBase,
    TransformerEncoderBase,
    TransformerModel,
)

from ..hooks.errors import PNUserError, VocabularyMismatch
from ..norms import NormBase, pad_mask_context
from ..norms.registry import norm_name_of
from ..tasks.translation_pn import TranslationPNTask  # the module, not the package: see tasks/__init__.py
from ..tasks.step_state import StepLedger
from . import norm_monitor
from .fixnorm import FixNormEmbedding, FixNormLinear
from .layers import PNTransformerDecoderLayer, PNTransformerEncoderLayer, wrap_layer
from .norm_options import add_norm_args, build_side_norm, fill_norm_defaults


class PNTransformerEncoder(TransformerEncoderBase):
    """Encoder whose layer norms and final norm (pre-norm) follow ``--norm-type``."""

    def __init__(self, cfg, dictionary, embed_tokens, return_fc=False):
        super().__init__(cfg, dictionary, embed_tokens, return_fc=return_fc)
        if self.layer_norm is not None:
            self.layer_norm = build_side_norm(cfg, "encoder", embed_tokens.embedding_dim, cfg.encoder.attention_heads)

    def build_encoder_layer(self, cfg):
        return wrap_layer(PNTransformerEncoderLayer(cfg, return_fc=self.return_fc), cfg)

    def forward_scriptable(self, src_tokens, src_lengths=None, return_all_hiddens=False, token_embeddings=None):
        # src_tokens: B x T; the final norm sees the same padding as the layers.
        with pad_mask_context([self.layer_norm], src_tokens.eq(self.padding_idx)):
            return super().forward_scriptable(src_tokens, src_lengths, return_all_hiddens, token_embeddings)


class PNTransformerDecoder(TransformerDecoderBase):
    """Decoder whose norms follow ``--decoder-norm-type`` (LayerNorm by default)."""

    def __init__(self, cfg, dictionary, embed_tokens, no_encoder_attn=False, output_projection=None):
        super().__init__(cfg, dictionary, embed_tokens, no_encoder_attn=no_encoder_attn,
                         output_projection=output_projection)
        if self.layer_norm is not None:
            self.layer_norm = build_side_norm(cfg, "decoder", self.embed_dim, cfg.decoder.attention_heads)

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
        with pad_mask_context([self.layer_norm], tokens.eq(self.padding_idx)):
            return super().extract_features_scriptable(prev_output_tokens, encoder_out, incremental_state, *args, **kwargs)


logger = logging.getLogger(__name__)


def norm_kind_in_state(state_dict, prefix: str) -> str:
    """The norm type a checkpoint holds at ``prefix`` (``encoder.layers.0.final_layer_norm``),
    read off its buffers: PN keeps psi2 and nu, PN-V psi2 only, BN mean and variance; and off
    the per-position norms' parameters: DyT has alpha, ScaleNorm scale, RMSNorm no bias."""
    has = lambda name: f"{prefix}.{name}" in state_dict  # noqa: E731
    if has("running_nu"):
        return "power"
    if has("running_psi2"):
        return "power_v"
    if has("running_mean"):
        return "batch"
    if has("alpha"):
        return "dyt"
    if has("scale"):
        return "scale"
    if has("weight") and not has("bias"):
        return "rms"
    return "layer"


def vocabulary_differences(model, state_dict):
    """``[(side, checkpoint rows, model rows)]`` for the embedding tables (one row per
    dictionary entry) whose sizes differ between ``state_dict`` and ``model``."""
    sides = (("source", "encoder.embed_tokens.weight", model.encoder.embed_tokens.weight),
             ("target", "decoder.embed_tokens.weight", model.decoder.embed_tokens.weight))
    return [(side, int(state_dict[key].shape[0]), int(own.shape[0])) for side, key, own in sides
            if key in state_dict and state_dict[key].dim() == 2 and state_dict[key].shape[0] != own.shape[0]]


@register_model("transformer_pn")
class TransformerPNModel(TransformerModel):
    """Transformer with selectable normalization (LN, BN, PN-V, PN); see ``--norm-type``."""

    @classmethod
    def add_args(cls, parser):
        super().add_args(parser)
        add_norm_args(parser)

    @classmethod
    def build_model(cls, args, task):
        fill_norm_defaults(args)
        model = super().build_model(args, task)
        model._norms = norm_monitor.attach(model, bool(getattr(args, "log_norm_stats", False)))
        norms = list(model._norms.values())
        if norms and getattr(args, "ddp_backend", None) == "fully_sharded":
            raise PNUserError(
                "--ddp-backend fully_sharded casts the running statistics of BN/PN-V/PN to the training dtype "
                "(fp16 would overflow psi2 and lose nu's small updates): use --ddp-backend c10d (default), "
                "pytorch_ddp, legacy_ddp or no_c10d")
        model._step_ledger = StepLedger(model, model._norms)
        if any(n.sync_stats for n in norms) and dist.is_available() and dist.is_initialized():
            # fairseq's data-parallel group (the whole world unless model parallelism splits it).
            from fairseq.distributed import utils as distributed_utils

            group = distributed_utils.get_data_parallel_group()
            for n in norms:
                n.process_group = group
        training = os.path.basename(sys.argv[0]) == "fairseq-train" if sys.argv else False
        if norms and training and not isinstance(task, TranslationPNTask):
            logger.warning(
                "--task %s: fairseq's dummy batches (an out-of-memory batch, a worker out of data) will move the "
                "running statistics of BN/PN-V/PN; use --task translation_pn (the row scripts do)",
                getattr(args, "task", type(task).__name__))
        return model

    @classmethod
    def build_embedding(cls, args, dictionary, embed_dim, path=None):
        emb = super().build_embedding(args, dictionary, embed_dim, path)
        return FixNormEmbedding.from_embedding(emb) if getattr(args, "fixnorm", False) else emb

    def set_num_updates(self, num_updates):
        """fairseq's hook before every training forward: first stop a run whose norms'
        statistics stopped being finite during the previous step, then pass the count on."""
        norms = getattr(self, "_norms", None)
        if norms:
            norm_monitor.check_finite(norms, getattr(self, "_last_update", num_updates))
        self._last_update = num_updates
        super().set_num_updates(num_updates)

    def state_dict(self, *args, **kwargs):
        """The state of applied updates: an attempt fairseq threw away (an fp16 overflow, an
        out-of-memory batch) is undone before a checkpoint reads the norms."""
        ledger = getattr(self, "_step_ledger", None)
        if ledger is not None:
            ledger.settle()
        return super().state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict, strict=True, model_cfg=None, args=None):
        """fairseq's loading, after checking that the checkpoint's vocabularies are this data's
        and that every norm of the checkpoint is of the type this model was built with
        (otherwise torch's size or key error would not say which data or flag differs)."""
        sizes = vocabulary_differences(self, state_dict)
        if sizes:
            raise VocabularyMismatch(sizes, training=bool(sys.argv) and os.path.basename(sys.argv[0]) == "fairseq-train")
        for name, module in self.named_modules():
            mine = norm_name_of(module)
            if mine is None:
                continue
            theirs = norm_kind_in_state(state_dict, name)
            if theirs != mine and any(k.startswith(name + ".") for k in state_dict):
                side = "decoder" if name.startswith("decoder") else "encoder"
                flag = "--norm-type" if side == "encoder" else "--decoder-norm-type"
                raise PNUserError(
                    f"the checkpoint holds a '{theirs}' norm at {name}, but this model was built with {flag} "
                    f"{mine}: pass {flag} {theirs} to use this checkpoint (or train into a new --save-dir)")
        return super().load_state_dict(state_dict, strict=strict, model_cfg=model_cfg, args=args)

    @classmethod
    def build_encoder(cls, args, src_dict, embed_tokens):
        return PNTransformerEncoder(TransformerConfig.from_namespace(args), src_dict, embed_tokens)

    @classmethod
    def build_decoder(cls, args, tgt_dict, embed_tokens):
        cfg = TransformerConfig.from_namespace(args)
        return PNTransformerDecoder(cfg, tgt_dict, embed_tokens, no_encoder_attn=cfg.no_cross_attention)
