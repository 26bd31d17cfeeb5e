"""Named architectures: ``transformer_{row}{size}``.

Rows (which norm, where): ``postln`` post-norm LayerNorm; ``preln`` pre-norm LayerNorm;
``bn`` / ``pnv`` / ``pn``: the pre-norm model with the encoder's norms replaced by BN / PN-V /
PN (the decoder keeps LayerNorm, as in the paper's released scripts). Beyond the two papers:
``rms`` / ``scale`` / ``dyt``: pre-norm with RMSNorm / ScaleNorm / Dynamic Tanh in the encoder
*and* the decoder (per-position norms, as their papers used them); ``deepnorm``: post-norm
LayerNorm with DeepNorm's residual scaling and initialisation (``--deepnorm``,
pn_fairseq/models/deepnorm.py), which combines with any ``--norm-type``.
Sizes: base (fairseq's ``transformer``), ``_iwslt_de_en`` (6+6, 512/1024, 4 heads) and
``_wmt_en_de_big`` (1024/4096, 16 heads, dropout 0.3); both with attention and activation
dropout 0.1 as in the reference scripts. Each is a thin defaults function chained to
fairseq's own; command-line flags still override every value.
"""
from fairseq.models import register_model_architecture
from fairseq.models.transformer.transformer_legacy import (
    base_architecture,
    transformer_iwslt_de_en,
    transformer_vaswani_wmt_en_de_big,
)

# row -> (encoder norm, pre-norm?); the decoder keeps LayerNorm unless ROW_EXTRAS says otherwise
ROWS = {
    "postln": ("layer", False),
    "preln": ("layer", True),
    "bn": ("batch", True),
    "pnv": ("power_v", True),
    "pn": ("power", True),
    # Beyond the two papers (docs/usage.md "Beyond the two papers").
    "rms": ("rms", True),
    "scale": ("scale", True),
    "dyt": ("dyt", True),
    "deepnorm": ("layer", False),
}
# row -> further defaults: the per-position norms replace the decoder's norms too, as their
# papers did; deepnorm turns on DeepNorm's residual scaling and initialisation.
ROW_EXTRAS = {
    "rms": dict(decoder_norm_type="rms"),
    "scale": dict(decoder_norm_type="scale"),
    "dyt": dict(decoder_norm_type="dyt"),
    "deepnorm": dict(deepnorm=True),
}


def _dropouts_01(args):
    args.attention_dropout = getattr(args, "attention_dropout", 0.1)
    args.activation_dropout = getattr(args, "activation_dropout", 0.1)


def _iwslt(args):
    _dropouts_01(args)
    transformer_iwslt_de_en(args)


def _wmt_big(args):
    _dropouts_01(args)
    transformer_vaswani_wmt_en_de_big(args)


SIZES = {"": base_architecture, "_iwslt_de_en": _iwslt, "_wmt_en_de_big": _wmt_big}


def _make_arch(norm_type, pre_norm, size_fn, decoder_norm_type="layer", deepnorm=False):
    def arch(args):
        args.norm_type = getattr(args, "norm_type", norm_type)
        args.decoder_norm_type = getattr(args, "decoder_norm_type", decoder_norm_type)
        if deepnorm and getattr(args, "deepnorm", None) is None:
            args.deepnorm = True
        args.encoder_normalize_before = getattr(args, "encoder_normalize_before", pre_norm)
        args.decoder_normalize_before = getattr(args, "decoder_normalize_before", pre_norm)
        size_fn(args)

    return arch


ARCHITECTURES = {}
for _row, (_norm, _pre) in ROWS.items():
    for _suffix, _size in SIZES.items():
        _name = f"transformer_{_row}{_suffix}"
        ARCHITECTURES[_name] = register_model_architecture("transformer_pn", _name)(_make_arch(_norm, _pre, _size, **ROW_EXTRAS.get(_row, {})))
