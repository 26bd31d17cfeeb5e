"""PN-V: power normalization with batch statistics (paper Definition 1)."""
from typing import Optional

import torch
import torch.nn as nn

from .base import NormBase, autocast_off, dist_per_channel, stat_dtype
from .functional import BatchStatNormFn
from .fused import BatchStatNormFusedFn
from .validation import check_eps, check_unit_interval


class PowerNormV(NormBase):
    """``y = gamma * x / sqrt(psi2_B + eps) + beta`` with ``psi2_B = mean_M[x^2]`` over real
    tokens (no mean-centring), exact backward through ``psi2_B``:
    ``dL/dx = (g - z * mean_M[g z]) / sqrt(psi2_B + eps)``, ``g = gamma * dL/dy``.

    Running buffer ``running_psi2 <- (1 - momentum) running_psi2 + momentum * psi2_B``
    (init 1) is what inference divides by; a batch whose ``psi2_B`` is not finite leaves it
    and ``num_batches_tracked`` as they were and counts in ``nonfinite_skips``. ``impl``:
    ``"fused"`` (default, ``fused.py`` where it applies) or ``"eager"``
    (``functional.BatchStatNormFn``, the reference).
    Shapes: ``x: T x B x C`` with ``pad_mask: B x T`` (True = pad), or ``x: N x C``;
    ``batch_first=True``: ``x: B x T x C``.
    """

    def __init__(self, embed_dim: int, momentum: float = 0.05, eps: float = 1e-5, sync_stats: bool = False,
                 impl: str = "fused", batch_first: bool = False):
        super().__init__(sync_stats, impl, batch_first)
        check_unit_interval("momentum", momentum, closed_right=True)
        check_eps(eps)
        self.embed_dim, self.momentum, self.eps = embed_dim, momentum, eps
        self.weight = nn.Parameter(torch.ones(embed_dim))
        self.bias = nn.Parameter(torch.zeros(embed_dim))
        self.register_buffer("running_psi2", torch.ones(embed_dim))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    psi2 = property(lambda self: self.running_psi2)

    def extra_repr(self):
        return (f"{self.embed_dim}, momentum={self.momentum}, eps={self.eps}" + (", sync_stats=True" if self.sync_stats else "")
                + self.layout_repr())

    def forward(self, x: torch.Tensor, pad_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        with autocast_off(x):
            return self._forward(x, pad_mask)

    def _forward(self, x: torch.Tensor, pad_mask: Optional[torch.Tensor]) -> torch.Tensor:
        x2d, keep = self.flatten(x, pad_mask)
        sd = stat_dtype(x)
        xf = x2d.to(sd)
        w, b = self.weight.to(sd), self.bias.to(sd)
        group = self.sync_group() if self.training else None
        if self.use_fused(xf, group):
            y = BatchStatNormFusedFn.apply(xf, w, b, self, keep, False)
        elif self.training:
            with torch.no_grad():
                psi2_b = self.batch_quadratic_mean(xf, keep, group)
                if psi2_b is not None:
                    self._advance_batch(None, psi2_b, None)
                else:  # a dummy batch: normalize by the running statistic, move nothing
                    psi2_b = self.running_psi2.to(sd)
            y = BatchStatNormFn.apply(xf, keep, w, b, None, torch.rsqrt(psi2_b + self.eps), False,
                                      not self.dummy_batch, group, self)
        else:
            y = torch.addcmul(b, xf * torch.rsqrt(self.running_psi2.to(sd) + self.eps), w)
        return y.to(x.dtype).reshape(x.shape)

    @torch.no_grad()
    def _advance_batch(self, mu, psi2_b: torch.Tensor, count: float):
        """Move the running buffer towards this batch's ``psi2_B`` unless it is not finite."""
        self.record("psi2_dist", dist_per_channel(psi2_b, self.running_psi2))
        psi2 = self.running_psi2
        self.commit((psi2_b,), {"running_psi2": torch.add(psi2 * (1 - self.momentum), psi2_b.to(psi2.dtype),
                                                           alpha=self.momentum)})
