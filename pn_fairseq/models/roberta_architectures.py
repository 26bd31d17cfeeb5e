"""Named architectures of ``roberta_pn``: ``roberta_pn{size}`` (BERT's post-norm with the
embedding norm, fairseq's ``roberta``) and ``roberta_pn_prenorm{size}`` (pre-norm with a final
norm and no embedding norm, fairseq's ``roberta_prenorm``). Sizes: fairseq's base (``""`` and
``_base``: 12 layers, 768/3072, 12 heads) and ``_large`` (24 layers, 1024/4096, 16 heads), and
``_small`` (4 layers, 256/1024, 4 heads; the plugin's, for Multi30k-size runs on a CPU).
``--norm-type`` picks the norm (default LayerNorm); explicit flags override every default.
"""
from fairseq.models import register_model_architecture
from fairseq.models.roberta.model import base_architecture, roberta_large_architecture
from fairseq.utils import safe_getattr


def small_architecture(args):
    args.encoder_layers = safe_getattr(args, "encoder_layers", 4)
    args.encoder_embed_dim = safe_getattr(args, "encoder_embed_dim", 256)
    args.encoder_ffn_embed_dim = safe_getattr(args, "encoder_ffn_embed_dim", 1024)
    args.encoder_attention_heads = safe_getattr(args, "encoder_attention_heads", 4)
    base_architecture(args)


SIZES = {"": base_architecture, "_base": base_architecture, "_large": roberta_large_architecture,
         "_small": small_architecture}
PLACEMENTS = {"": False, "_prenorm": True}  # name part -> pre-norm?


def _make_arch(size_fn, pre_norm):
    def arch(args):
        if pre_norm:  # fairseq's roberta_prenorm, before the size fills in the rest
            args.layernorm_embedding = safe_getattr(args, "layernorm_embedding", False)
            args.encoder_normalize_before = safe_getattr(args, "encoder_normalize_before", True)
        size_fn(args)

    return arch


ARCHITECTURES = {}
for _placement, _pre in PLACEMENTS.items():
    for _suffix, _size in SIZES.items():
        _name = f"roberta_pn{_placement}{_suffix}"
        ARCHITECTURES[_name] = register_model_architecture("roberta_pn", _name)(_make_arch(_size, _pre))
