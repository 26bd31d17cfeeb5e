"""PN: power normalization with running statistics (paper Definition 3 / Algorithm 2)."""
from typing import Optional

import torch
import torch.nn as nn

from .base import NormBase, flatten, masked_mean, stat_dtype
from .functional import PowerNormFn, group_rms, rms_scale, scale_groups
from .validation import check_choice, check_eps, check_groups, check_unit_interval, check_warmup

VARIANTS = ("reference", "paper")


class PowerNorm(NormBase):
    """Power normalization: divide by a running quadratic mean, approximate backward.

    ``variant="paper"``: Algorithm 2 as published. Forward divides by ``psi2_{t-1}``; the
    backward is ``(g - nu_{t-1} z) / sqrt(psi2_{t-1} + eps)``, then ``nu`` moves by
    ``(1 - alpha_bkw) * mean_M[g~ z]``; ``psi2`` moves by ``(1 - alpha_fwd)`` towards the
    batch's ``mean_M[x^2]``.

    ``variant="reference"`` (default; the released code that produced Table 1) differs in
    six observable ways (spec): group scaling of each position by the RMS of its
    ``groups`` channel groups first; batch statistics in the forward for the first
    ``warmup_updates`` training calls; a cumulative average before the EMA while
    ``k < warmup_updates``; the backward divides by the *batch* quadratic mean; ``nu``'s
    mean runs over all ``T * B`` positions, padding included.

    Shapes: ``x: T x B x C`` with ``pad_mask: B x T`` (True = pad), or ``x: N x C``.
    Buffers: ``running_psi2`` (init 1), ``running_nu`` (init 0; the paper's ``nu`` in both
    variants), ``num_batches_tracked`` (``k``, training-mode forward calls).
    """

    def __init__(
        self,
        embed_dim: int,
        variant: str = "reference",
        alpha_fwd: float = 0.9,
        alpha_bkw: float = 0.9,
        warmup_updates: int = 0,
        groups: int = 1,
        eps: float = 1e-5,
    ):
        super().__init__()
        check_choice("variant", variant, VARIANTS)
        check_unit_interval("alpha_fwd", alpha_fwd)
        check_unit_interval("alpha_bkw", alpha_bkw)
        check_warmup(warmup_updates)
        check_groups(embed_dim, groups)
        check_eps(eps)
        self.embed_dim, self.variant, self.eps = embed_dim, variant, eps
        self.alpha_fwd, self.alpha_bkw = alpha_fwd, alpha_bkw
        self.warmup_updates, self.groups = warmup_updates, groups
        self.weight = nn.Parameter(torch.ones(embed_dim))
        self.bias = nn.Parameter(torch.zeros(embed_dim))
        self.register_buffer("running_psi2", torch.ones(embed_dim))
        self.register_buffer("running_nu", torch.zeros(embed_dim))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))
        # Host-side copy of k, so the warm-up branch costs no device sync per call.
        self._k: Optional[int] = None

    psi2 = property(lambda self: self.running_psi2)
    nu = property(lambda self: self.running_nu)

    @property
    def k(self) -> int:
        if self._k is None:
            self._k = int(self.num_batches_tracked)
        return self._k

    def _load_from_state_dict(self, *args, **kwargs):
        self._k = None
        super()._load_from_state_dict(*args, **kwargs)

    def extra_repr(self):
        s = f"{self.embed_dim}, variant={self.variant}, alpha_fwd={self.alpha_fwd}, alpha_bkw={self.alpha_bkw}"
        if self.variant == "reference":
            s += f", warmup_updates={self.warmup_updates}, groups={self.groups}"
        return s + f", eps={self.eps}"

    def forward(self, x: torch.Tensor, pad_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        x2d, keep = flatten(x, self.resolve_mask(pad_mask))
        sd = stat_dtype(x)
        xf = x2d.to(sd)
        w, b = self.weight.to(sd), self.bias.to(sd)
        reference = self.variant == "reference"
        if not self.training:
            if reference:
                xf = rms_scale(xf, self.groups, self.eps)
            y = torch.addcmul(b, xf * torch.rsqrt(self.running_psi2.to(sd) + self.eps), w)
            return y.to(x.dtype).reshape(x.shape)

        with torch.no_grad():
            r = xs = None
            if reference:
                r = group_rms(xf, self.groups, self.eps)
                xs = scale_groups(xf, r)
            fwd_rstd, bkw_rstd = self._update_statistics(xs if reference else xf, keep)
        y = PowerNormFn.apply(
            xf, xs, r, keep, w, b, fwd_rstd, bkw_rstd, self.running_nu, self.alpha_bkw, reference
        )
        return y.to(x.dtype).reshape(x.shape)

    @torch.no_grad()
    def _update_statistics(self, xf: torch.Tensor, keep: Optional[torch.Tensor]):
        """Advance k and psi2; return the forward and backward ``1/sqrt(. + eps)`` (``C``)."""
        self._k = k = self.k + 1
        self.num_batches_tracked.fill_(k)
        psi2_b = masked_mean(xf * xf, keep)
        psi2 = self.running_psi2
        psi2_prev = psi2.to(xf.dtype, copy=True)  # psi2 is updated in place below
        rstd_b = torch.rsqrt(psi2_b + self.eps)
        rstd_prev = torch.rsqrt(psi2_prev + self.eps)

        if self.variant == "reference":
            W = self.warmup_updates
            fwd_rstd = rstd_b if k <= W else rstd_prev
            bkw_rstd = rstd_b
            if k < W:
                psi2.mul_((k - 1) / k).add_(psi2_b.to(psi2.dtype), alpha=1.0 / k)
        else:
            fwd_rstd = bkw_rstd = rstd_prev
        psi2.mul_(self.alpha_fwd).add_(psi2_b.to(psi2.dtype), alpha=1.0 - self.alpha_fwd)
        return fwd_rstd, bkw_rstd
