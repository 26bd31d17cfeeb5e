"""Dynamic Tanh (Zhu, Chen, He, LeCun & Liu, 2025, "Transformers without Normalization", CVPR).

``y = gamma * tanh(alpha * x) + beta``: no statistics at all; ``alpha`` is one learned scalar
per layer (init ``alpha_init``, the paper's default 0.5, Sec. 4 / Algorithm 1), ``gamma``
(``weight``, init 1) and ``beta`` (``bias``, init 0) are per channel.
"""
import math
from typing import Optional

import torch
import torch.nn as nn

from .rms_norm import compute_dtype
from .validation import check_bool


class DyT(nn.Module):
    """``y = weight * tanh(alpha * x) + bias``, element-wise.

    Args: ``x: T x B x C``, ``B x T x C`` or ``N x C``; ``pad_mask`` (``B x T``) is accepted and ignored
    (element-wise). Under fp16/bf16 the computation runs in float32 and the output has the
    input's dtype.
    """

    def __init__(self, embed_dim: int, alpha_init: float = 0.5, batch_first: bool = False):
        super().__init__()
        check_bool("batch_first", batch_first)
        self.batch_first = batch_first  # element-wise: any layout
        if not (isinstance(alpha_init, (int, float)) and not isinstance(alpha_init, bool)
                and math.isfinite(alpha_init) and alpha_init > 0):
            raise ValueError(f"alpha_init must be a finite number > 0; got {alpha_init!r}")
        self.embed_dim = embed_dim
        self.alpha_init = float(alpha_init)
        self.alpha = nn.Parameter(torch.full((1,), float(alpha_init)))
        self.weight = nn.Parameter(torch.ones(embed_dim))
        self.bias = nn.Parameter(torch.zeros(embed_dim))

    def forward(self, x: torch.Tensor, pad_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        dt = compute_dtype(x)
        y = torch.tanh(self.alpha.to(dt) * x.to(dt)) * self.weight.to(dt) + self.bias.to(dt)
        return y.to(x.dtype)

    def extra_repr(self) -> str:
        return f"{self.embed_dim}, alpha_init={self.alpha_init}"
