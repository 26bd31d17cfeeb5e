"""ScaleNorm (Nguyen & Salazar, 2019, "Transformers without Tears: Improving the
Normalization of Self-Attention", IWSLT 2019).

``y = g * x / max(||x||_2, eps)`` per position, with one learned scalar ``g`` per layer
initialised to ``sqrt(C)`` (the paper, Sec. 2.3, and the authors' code,
github.com/tnq177/transformers_without_tears ``layers.py``: ``ScaleNorm(embed_dim ** 0.5)``,
``eps=1e-5``, ``norm.clamp(min=eps)``).
"""
import math
from typing import Optional

import torch
import torch.nn as nn

from .rms_norm import compute_dtype
from .validation import check_bool, check_eps


class ScaleNorm(nn.Module):
    """``y = scale * x / max(||x||_2, eps)`` over the last dimension.

    Args: ``x: T x B x C``, ``B x T x C`` or ``N x C``; ``pad_mask`` (``B x T``) is accepted and ignored
    (each position is normalized on its own). ``scale`` is a one-element parameter,
    initialised to ``sqrt(embed_dim)`` unless ``scale_init`` is given. Under fp16/bf16 the
    norm is computed in float32 and the output has the input's dtype.
    """

    def __init__(self, embed_dim: int, eps: float = 1e-5, scale_init: Optional[float] = None,
                 batch_first: bool = False):
        super().__init__()
        check_eps(eps)
        check_bool("batch_first", batch_first)
        self.batch_first = batch_first  # per position: any layout
        if scale_init is None:
            scale_init = math.sqrt(embed_dim)
        if not (isinstance(scale_init, (int, float)) and math.isfinite(scale_init) and scale_init > 0):
            raise ValueError(f"scale_init must be a finite number > 0; got {scale_init!r}")
        self.embed_dim = embed_dim
        self.eps = float(eps)
        self.scale = nn.Parameter(torch.full((1,), float(scale_init)))

    def forward(self, x: torch.Tensor, pad_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        dt = compute_dtype(x)
        xf = x.to(dt)
        norm = torch.linalg.vector_norm(xf, dim=-1, keepdim=True).clamp(min=self.eps)
        return (self.scale.to(dt) * xf / norm).to(x.dtype)

    def extra_repr(self) -> str:
        return f"{self.embed_dim}, eps={self.eps}"
