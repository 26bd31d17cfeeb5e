"""Normalization layers, built by name: ``build_norm("power", 512, warmup_updates=8000)``.

| name      | layer                                                     |
|-----------|-----------------------------------------------------------|
| `layer`   | LayerNorm                                                 |
| `batch`   | masked BatchNorm (`variant`: `reference` / `paper`)       |
| `power_v` | PN-V, batch quadratic mean                                |
| `power`   | PN, running quadratic mean (`variant`: `reference` / `paper`) |
"""
from .base import NormBase, dummy_batch_context, pad_mask_context
from .batch_norm import BatchNorm
from .layer_norm import LayerNorm
from .power_norm import PowerNorm
from .power_norm_v import PowerNormV
from .registry import build_norm, norm_choices, register_norm

register_norm("layer")(LayerNorm)
register_norm("batch")(BatchNorm)
register_norm("power_v")(PowerNormV)
register_norm("power")(PowerNorm)

NORM_CHOICES = norm_choices()

__all__ = [
    "BatchNorm", "LayerNorm", "NORM_CHOICES", "NormBase", "PowerNorm", "PowerNormV",
    "build_norm", "dummy_batch_context", "norm_choices", "pad_mask_context", "register_norm",
]
