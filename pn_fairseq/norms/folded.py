"""What ``pn-fold`` leaves of an eval-mode BN / PN-V / PN: the parameter-free part.

In eval mode those norms are ``y = a * s(x) + c`` per channel, ``s`` being the reference
variants' group RMS scaling (or the identity); :mod:`pn_fairseq.checkpoints.fold` moves ``a`` and ``c``
into the linear layers the norm feeds, and this module computes the remaining ``s``.
It is not in the ``build_norm`` registry, so ``--norm-type`` does not offer it for
training: it is built only from a checkpoint config that ``pn-fold`` rewrote
(``norm_type = "folded"``, ``folded_groups = G``).
"""
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..hooks.errors import PNUserError
from .validation import check_eps, check_groups

FOLDED = "folded"
HALF = (torch.float16, torch.bfloat16)


class FoldedNorm(nn.Module):
    """``y = s(x)``: each position's ``groups`` contiguous channel groups divided by their
    RMS (``x * rsqrt(mean_group(x^2) + eps)``, what ``functional.rms_scale`` computes in the
    unfolded reference PN / BN, here through PyTorch's fused ``F.rms_norm`` on the grouped
    view, so that decoding pays one kernel for it, as LayerNorm does), or ``y = x`` for
    ``groups=0``. No parameters, no buffers.

    Args: ``x: T x B x C`` or ``N x C``; ``pad_mask`` (``B x T``) is accepted and ignored,
    as the eval-mode norms it replaces ignore it. Under fp16/bf16 the scaling runs in
    float32 (a sum of squares overflows fp16) and the output has the input's dtype.
    Training mode raises: the statistics the norm would have learned from are gone.
    """

    def __init__(self, embed_dim: int, groups: int = 0, eps: float = 1e-5):
        super().__init__()
        check_groups(embed_dim, groups, allow_zero=True)
        check_eps(eps)
        self.embed_dim, self.groups, self.eps = embed_dim, groups, float(eps)

    def forward(self, x: torch.Tensor, pad_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        if self.training:
            raise PNUserError(
                "this model's norms were folded by pn-fold and hold no statistics, so it can only decode; "
                "train or fine-tune from the checkpoint that pn-fold read")
        if self.groups == 0:
            return x
        xg = x.reshape(-1, self.groups, self.embed_dim // self.groups)
        y = F.rms_norm(xg.float() if x.dtype in HALF else xg, xg.shape[-1:], eps=self.eps)
        return y.to(x.dtype).reshape(x.shape)

    def extra_repr(self) -> str:
        return f"{self.embed_dim}, groups={self.groups}, eps={self.eps}"
