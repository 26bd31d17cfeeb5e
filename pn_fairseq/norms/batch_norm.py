"""BN: batch normalization over the non-padding positions (spec, "BN")."""
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .base import NormBase, flatten, masked_mean, num_kept, stat_dtype
from .functional import BatchStatNormFn, rms_scale
from .validation import check_choice, check_eps, check_unit_interval

VARIANTS = ("reference", "paper")


class BatchNorm(NormBase):
    """Masked batch norm.

    ``variant="paper"`` (paper Algorithm 1): ``y = gamma * (x - mu_B) / sqrt(sigma2_B + eps)
    + beta`` with mean and biased variance over real tokens, exact backward through both;
    running ``mu``, ``sigma2`` (unbiased, ``n/(n-1)``) with ``momentum``.
    ``variant="reference"`` (the released code behind Table 1's BN row): each position is
    first divided by its RMS over all C channels; padding positions are then filled with
    the batch mean and ordinary batch norm runs over all ``T * B`` rows.

    Shapes: ``x: T x B x C`` with ``pad_mask: B x T`` (True = pad), or ``x: N x C``.
    Buffers ``running_mean`` / ``running_var`` / ``num_batches_tracked`` are named as in
    ``torch.nn.BatchNorm1d``.
    """

    def __init__(self, embed_dim: int, variant: str = "reference", momentum: float = 0.05, eps: float = 1e-5):
        super().__init__()
        check_choice("variant", variant, VARIANTS)
        check_unit_interval("momentum", momentum, closed_right=True)
        check_eps(eps)
        self.embed_dim, self.variant, self.momentum, self.eps = embed_dim, variant, momentum, eps
        self.weight = nn.Parameter(torch.ones(embed_dim))
        self.bias = nn.Parameter(torch.zeros(embed_dim))
        self.register_buffer("running_mean", torch.zeros(embed_dim))
        self.register_buffer("running_var", torch.ones(embed_dim))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    # Names used in the spec.
    mu = property(lambda self: self.running_mean)
    sigma2 = property(lambda self: self.running_var)

    def extra_repr(self):
        return f"{self.embed_dim}, variant={self.variant}, momentum={self.momentum}, eps={self.eps}"

    def forward(self, x: torch.Tensor, pad_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        x2d, keep = flatten(x, self.resolve_mask(pad_mask))
        sd = stat_dtype(x)
        xf = x2d.to(sd)
        w, b = self.weight.to(sd), self.bias.to(sd)
        if self.variant == "reference":
            y = self._forward_reference(rms_scale(xf, 1, self.eps), keep, w, b)
        elif self.training:
            y = self._forward_paper_train(xf, keep, w, b)
        else:
            y = F.batch_norm(xf, self.running_mean.to(sd), self.running_var.to(sd), w, b, False, 0.0, self.eps)
        return y.to(x.dtype).reshape(x.shape)

    def _forward_paper_train(self, xf, keep, w, b):
        with torch.no_grad():
            mu = masked_mean(xf, keep)
            var = masked_mean((xf - mu).pow(2), keep)
            n = num_kept(xf, keep)
            self.running_mean.mul_(1 - self.momentum).add_(mu.to(self.running_mean.dtype), alpha=self.momentum)
            unbiased = var * (n / (n - 1)) if n > 1 else var
            self.running_var.mul_(1 - self.momentum).add_(unbiased.to(self.running_var.dtype), alpha=self.momentum)
            self.num_batches_tracked.add_(1)
        return BatchStatNormFn.apply(xf, keep, w, b, mu, torch.rsqrt(var + self.eps), True)

    def _forward_reference(self, xs, keep, w, b):
        if not self.training:
            return F.batch_norm(xs, self.running_mean.to(xs.dtype), self.running_var.to(xs.dtype), w, b, False, 0.0, self.eps)
        if keep is not None:
            # Differentiable fill, as the released code: padding rows become the batch mean,
            # so the mean over all T*B rows is mu_B while the variance is divided by T*B.
            xs = torch.where(keep[:, None], xs, masked_mean(xs, keep))
        self.num_batches_tracked.add_(1)
        if xs.dtype == self.running_mean.dtype:
            return F.batch_norm(xs, self.running_mean, self.running_var, w, b, True, self.momentum, self.eps)
        # float64 input with float32 buffers (or the reverse): update in the input dtype.
        rm, rv = self.running_mean.to(xs.dtype), self.running_var.to(xs.dtype)
        y = F.batch_norm(xs, rm, rv, w, b, True, self.momentum, self.eps)
        with torch.no_grad():
            self.running_mean.copy_(rm)
            self.running_var.copy_(rv)
        return y
