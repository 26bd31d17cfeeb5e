"""RMSNorm (Zhang & Sennrich, 2019, "Root Mean Square Layer Normalization", NeurIPS).

``y = g * x / sqrt(mean_C(x^2) + eps)  [+ b]`` per position, through PyTorch's own
``torch.nn.functional.rms_norm``.
"""
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .validation import check_bool, check_eps

HALF = (torch.float16, torch.bfloat16)


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """float32 for fp16/bf16 inputs (the per-position reduction must not run in half
    precision), the input's own dtype otherwise (float32, float64)."""
    return torch.float32 if x.dtype in HALF else x.dtype


class RMSNorm(nn.Module):
    """``y = weight * x / sqrt(mean_c x^2 + eps) (+ bias)`` over the last dimension.

    Args: ``x: T x B x C``, ``B x T x C`` or ``N x C``; ``pad_mask`` (``B x T``) is accepted and ignored,
    since each position is normalized on its own. ``weight`` (per-channel gain, init 1);
    ``bias`` only with ``bias=True`` (the paper's RMSNorm has none). Under fp16/bf16 the
    computation runs in float32 and the output has the input's dtype.
    """

    def __init__(self, embed_dim: int, eps: float = 1e-6, bias: bool = False, batch_first: bool = False):
        super().__init__()
        check_eps(eps)
        check_bool("batch_first", batch_first)
        self.batch_first = batch_first  # per position: any layout
        if not isinstance(bias, bool):
            raise ValueError(f"bias must be True or False; got {bias!r}")
        self.normalized_shape = (embed_dim,)
        self.eps = float(eps)
        self.weight = nn.Parameter(torch.ones(embed_dim))
        if bias:
            self.bias = nn.Parameter(torch.zeros(embed_dim))
        else:
            self.register_parameter("bias", None)

    def forward(self, x: torch.Tensor, pad_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        dt = compute_dtype(x)
        y = F.rms_norm(x.to(dt), self.normalized_shape, self.weight.to(dt), self.eps)
        if self.bias is not None:
            y = y + self.bias.to(dt)
        return y.to(x.dtype)

    def extra_repr(self) -> str:
        return f"{self.normalized_shape[0]}, eps={self.eps}, bias={self.bias is not None}"
