"""Normalization layers, built by name: ``build_norm("power", 512, warmup_updates=8000)``, or
put in place of a model's LayerNorms: ``replace_norms(model, "power", batch_first=True)``
(docs/own-model.md). Importing this package imports no fairseq.

| name      | layer                                                     |
|-----------|-----------------------------------------------------------|
| `layer`   | LayerNorm                                                 |
| `batch`   | masked BatchNorm (`variant`: `reference` / `paper`)       |
| `power_v` | PN-V, batch quadratic mean                                |
| `power`   | PN, running quadratic mean (`variant`: `reference` / `paper`) |
| `rms`     | RMSNorm (Zhang & Sennrich, 2019), per position            |
| `scale`   | ScaleNorm (Nguyen & Salazar, 2019), per position          |
| `dyt`     | Dynamic Tanh (Zhu et al., 2025), element-wise             |
"""
from .base import NormBase, dummy_batch_context, pad_mask_context
from .batch_norm import BatchNorm
from .dyt import DyT
from .layer_norm import LayerNorm
from .power_norm import PowerNorm
from .power_norm_v import PowerNormV
from .registry import build_norm, norm_choices, register_norm
from .replace import replace_norms
from .rms_norm import RMSNorm
from .scale_norm import ScaleNorm
from .state import loss_scale_context

register_norm("layer")(LayerNorm)
register_norm("batch")(BatchNorm)
register_norm("power_v")(PowerNormV)
register_norm("power")(PowerNorm)
register_norm("rms")(RMSNorm)
register_norm("scale")(ScaleNorm)
register_norm("dyt")(DyT)

NORM_CHOICES = norm_choices()

__all__ = [
    "BatchNorm", "DyT", "LayerNorm", "NORM_CHOICES", "NormBase", "PowerNorm", "PowerNormV", "RMSNorm", "ScaleNorm",
    "build_norm", "dummy_batch_context", "loss_scale_context", "norm_choices", "pad_mask_context", "register_norm",
    "replace_norms",
]
