"""Named architectures of ``transformer_lm_pn``: ``transformer_lm_pn{size}`` (pre-norm, as
fairseq's ``transformer_lm`` forces) and ``transformer_lm_pn_postln{size}`` (post-norm, the
placement of PowerNorm's language-model baseline; no final norm, as fairseq's decoder builds
none without ``normalize_before``). fairseq's ``base_lm_architecture`` sets
``decoder_normalize_before = True`` unconditionally, so the post-norm architectures set it back
after calling it. Sizes are fairseq's: base (``transformer_lm``: 6 layers, 512/2048, 8 heads),
``_gpt2_tiny`` (2 layers, 64/256, 2 heads), ``_gpt2_small`` (12 layers, 768/3072, 12 heads),
``_big`` (12 layers, 1024/4096, 16 heads). ``--norm-type`` picks the norm (default LayerNorm).
"""
from fairseq.models import register_model_architecture
from fairseq.models.transformer_lm import (
    base_lm_architecture,
    transformer_lm_big,
    transformer_lm_gpt2_small,
    transformer_lm_gpt2_tiny,
)

SIZES = {"": base_lm_architecture, "_gpt2_tiny": transformer_lm_gpt2_tiny,
         "_gpt2_small": transformer_lm_gpt2_small, "_big": transformer_lm_big}
PLACEMENTS = {"": True, "_postln": False}  # name part -> pre-norm?


def _make_arch(size_fn, pre_norm):
    def arch(args):
        args.norm_type = getattr(args, "norm_type", "layer")
        size_fn(args)
        args.decoder_normalize_before = pre_norm

    return arch


ARCHITECTURES = {}
for _placement, _pre in PLACEMENTS.items():
    for _suffix, _size in SIZES.items():
        _name = f"transformer_lm_pn{_placement}{_suffix}"
        ARCHITECTURES[_name] = register_model_architecture("transformer_lm_pn", _name)(_make_arch(_size, _pre))
