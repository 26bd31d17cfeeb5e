"""Autograd functions with hand-written backward passes for the batch-statistics norms.

All take the flattened ``x: N x C`` already in the statistics dtype (float32/float64) and
``keep: N`` (bool, True = real token, or None when nothing is padded). Each saves a single
``N x C`` tensor (the normalized ``z``) for backward.

Padding rows are transformed like the others, but their upstream gradient is kept out of
every batch statistic and out of ``dgamma`` / ``dbeta``: in training a padding output is
treated as ``gamma * (x - mu) / sigma + beta`` with *constant* statistics, so its input
gradient is ``gamma * dL/dy / sigma`` and nothing it does reaches a real token. At real
tokens the result is exactly the autograd gradient whenever padding outputs receive no
gradient (as in fairseq, where attention masks them).
"""
from typing import Optional

import torch
from torch.autograd.function import once_differentiable

from .base import masked_mean


def _masked_sum(t: torch.Tensor, keep: Optional[torch.Tensor]) -> torch.Tensor:
    if keep is None:
        return t.sum(0)
    return torch.where(keep[:, None], t, t.new_zeros(())).sum(0)


class BatchStatNormFn(torch.autograd.Function):
    """``y = gamma * (x - mu_B) * rstd_B + beta`` with exact backward through mu_B, rstd_B.

    ``center=False`` gives PN-V (``mu_B = 0``, ``rstd_B = 1/sqrt(psi2_B + eps)``); the
    backward then reduces to ``(g - z * mean_M[g z]) * rstd`` (spec, PN-V), and with
    ``center=True`` to BN's ``(g - mean_M[g] - z * mean_M[g z]) * rstd``.
    Inputs ``mu: C`` (ignored when not centring) and ``rstd: C`` are computed by the caller
    without gradient; this function supplies their gradient analytically.
    """

    @staticmethod
    def forward(ctx, x, keep, weight, bias, mu, rstd, center: bool):
        z = (x - mu) * rstd if center else x * rstd
        ctx.save_for_backward(z, keep, weight, rstd)
        ctx.center = center
        return torch.addcmul(bias, z, weight)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        z, keep, weight, rstd = ctx.saved_tensors
        gy = grad_out.to(z.dtype)
        g = gy * weight
        proj = masked_mean(g * z, keep)
        # Exact gradient through the statistics at real tokens.
        inner = g - z * proj
        if ctx.center:
            inner = inner - masked_mean(g, keep)
        if keep is not None:
            inner = torch.where(keep[:, None], inner, g)
        dx = inner * rstd
        dweight = _masked_sum(gy * z, keep)
        dbias = _masked_sum(gy, keep)
        return dx, None, dweight, dbias, None, None, None


class PowerNormFn(torch.autograd.Function):
    """PN's forward ``y = gamma * x * fwd_rstd + beta`` and approximate backward.

    Backward (spec, PN): ``g~ = g - nu * z``; ``dx = g~ * bkw_rstd`` at every position;
    then ``nu += (1 - alpha_bkw) * mean[g~ * z]``, updated in place, the mean taken over
    real tokens (``nu_over_all=False``, paper) or over all ``N`` rows (released code).
    ``nu: C`` is the layer's buffer itself, read at backward time (= ``nu_{t-1}``).
    """

    @staticmethod
    def forward(ctx, x, keep, weight, bias, fwd_rstd, bkw_rstd, nu, alpha_bkw: float, nu_over_all: bool):
        z = x * fwd_rstd
        ctx.save_for_backward(z, keep, weight, bkw_rstd)
        ctx.nu = nu
        ctx.alpha_bkw = alpha_bkw
        ctx.nu_over_all = nu_over_all
        return torch.addcmul(bias, z, weight)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        z, keep, weight, bkw_rstd = ctx.saved_tensors
        nu = ctx.nu
        gy = grad_out.to(z.dtype)
        g_tilde = gy * weight - nu.to(z.dtype) * z
        dx = g_tilde * bkw_rstd
        with torch.no_grad():
            stat = masked_mean(g_tilde * z, None if ctx.nu_over_all else keep)
            nu.add_(stat.to(nu.dtype), alpha=1.0 - ctx.alpha_bkw)
        dweight = _masked_sum(gy * z, keep)
        dbias = _masked_sum(gy, keep)
        return dx, None, dweight, dbias, None, None, None, None, None
