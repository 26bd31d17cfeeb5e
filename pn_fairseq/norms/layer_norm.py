"""LN: LayerNorm with the norms' common signature (the padding mask is irrelevant to it)."""
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .validation import check_bool


class LayerNorm(nn.LayerNorm):
    """``y = gamma * (x - mean_c x) / sqrt(var_c x + eps) + beta`` per position.

    Args: ``x: T x B x C`` or ``N x C``; ``pad_mask`` (``B x T``) is accepted and ignored,
    since each position is normalized on its own. Parameters are named ``weight`` /
    ``bias`` like fairseq's LayerNorm, so checkpoints keep fairseq's names. ``batch_first``
    (``x: B x T x C``) is accepted for the norms' common signature and changes nothing.
    """

    def __init__(self, embed_dim: int, eps: float = 1e-5, elementwise_affine: bool = True, batch_first: bool = False):
        if eps <= 0:
            raise ValueError(f"eps must be > 0, got {eps}")
        check_bool("batch_first", batch_first)
        super().__init__(embed_dim, eps=eps, elementwise_affine=elementwise_affine)
        self.batch_first = batch_first

    def forward(self, x: torch.Tensor, pad_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
