"""Fused training paths of PN, PN-V and BN: the same results as the eager autograd
functions in ``functional.py`` (their reference, tested against them), in one pass over
memory each way for PN and two for PN-V / BN, through the C kernels in ``kernels/``.

The algebra that makes one pass enough. With ``z = xs * r_f`` (``r_f`` the forward's
``1/sqrt(psi2 + eps)``, known before the batch is read except in PN's warm-up):

* PN: ``g~ = gamma dy - nu z`` and ``dxs = g~ r_b`` give ``dxs = dy (gamma r_b) - xs (nu r_f r_b)``,
  which needs no batch statistic; ``nu``'s update ``mean[g~ z] = gamma r_f mean[dy xs] -
  nu r_f^2 mean[xs^2]`` needs ``mean[xs^2]``, a by-product of the forward, and ``sum dy xs``,
  which is also ``dgamma / r_f``. So the backward is one pass producing ``dx`` and the sums.
* PN-V / BN: the exact gradient ``(g - mean[g] - z mean[g z]) rstd`` needs two column sums
  before ``dx``: one pass for the sums, one for ``dx`` (the same holds for the forward).
  BN's sums are taken about a shift (the running mean in the forward, the batch mean in
  the backward), so that variances of channels with a large mean do not cancel.

Only plain single-process float32 CPU training goes through here; dummy batches,
``sync_stats`` all-reduces, float64 and CUDA use the eager path (``NormBase.use_fused``).
``--log-norm-stats`` records the same statistics as the eager path, from these sums.
"""
from typing import Optional

import torch
from torch.autograd.function import once_differentiable

from . import kernels


def _f32(t: torch.Tensor) -> torch.Tensor:
    return t.to(torch.float32).contiguous()


def real_count(w_rows: Optional[torch.Tensor], n: int) -> float:
    return float(n) if w_rows is None else float(w_rows.sum())


def row_weights(keep: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    """The kernels' ``w_rows: N`` (1.0 = real token) from ``keep: N`` bool, None for no padding."""
    return None if keep is None else keep.float()


class PowerNormFusedFn(torch.autograd.Function):
    """PN's training step (both variants). ``norm`` supplies the warm-up logic and buffers
    (``PowerNorm._advance``); ``x: N x C`` float32, ``keep: N`` bool (True = real token) or
    None (no padding). Saves ``x`` (which the caller holds anyway), ``w_rows`` and the group
    factors ``r: N x G``."""

    @staticmethod
    def forward(ctx, x, weight, bias, norm, keep):
        x, w_rows = x.contiguous(), row_weights(keep)
        n_rows, groups, eps = x.shape[0], norm.groups, norm.eps
        reference = norm.variant == "reference"
        m = real_count(w_rows, n_rows)
        psi2_prev = norm.running_psi2.to(torch.float32, copy=True)
        rstd_prev = torch.rsqrt(psi2_prev + eps)
        batch_fwd = reference and not norm.causal and norm.in_warmup(norm.k + 1)[0]
        stats = (False, True, reference)
        if batch_fwd:  # the forward divides by this batch's statistic: read the batch first
            _, _, s2, s2_all, r = kernels.forward(x, groups, eps, w_rows, stats=stats)
            psi2_b = (s2 / m).to(torch.float32)
            fwd_rstd, bkw_rstd = norm._advance(psi2_b, psi2_prev)
            y, *_ = kernels.forward(x, groups, eps, w_rows, a=_f32(weight * fwd_rstd), b=_f32(bias), r=r)
        else:
            y, _, s2, s2_all, r = kernels.forward(x, groups, eps, w_rows, stats=stats,
                                               a=_f32(weight * rstd_prev), b=_f32(bias))
            fwd_rstd, bkw_rstd = norm._advance((s2 / m).to(torch.float32), psi2_prev)
        # mean over the rows nu's update averages over: all rows (released code) or real tokens.
        ctx.mean_sq = ((s2_all / n_rows) if reference else (s2 / m)).to(torch.float32)
        ctx.save_for_backward(x, w_rows, weight, r)
        ctx.norm, ctx.fwd_rstd, ctx.bkw_rstd = norm, fwd_rstd, bkw_rstd
        ctx.rows = n_rows if reference else m
        ctx.loss_scale = norm.loss_scale
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        x, w_rows, weight, r = ctx.saved_tensors
        norm, r_f, r_b = ctx.norm, ctx.fwd_rstd, ctx.bkw_rstd
        reference = norm.variant == "reference"
        nu = norm.running_nu
        nu_prev = nu.to(torch.float32, copy=True)
        # dy carries fairseq's loss scale S; nu is in true-gradient units (functional.PowerNormFn).
        s = ctx.loss_scale
        c1 = _f32(weight * r_b)
        c2 = _f32(nu_prev * r_f * r_b if s == 1.0 else nu_prev * r_f * r_b * s)
        dx, sdy, _, sdyx, sdyx_all = kernels.backward(
            _f32(grad_out), x, norm.groups, norm.eps, w_rows,
            sums=(True, False, True, reference), c1=c1, c2=c2, r=r)
        sdyx_rows = sdyx_all if reference else sdyx
        with torch.no_grad():
            mean_gz = (weight.double() * r_f.double() * sdyx_rows / (ctx.rows * s)
                       - nu_prev.double() * r_f.double() ** 2 * ctx.mean_sq.double())
            norm._move_nu(mean_gz.to(torch.float32))
        dweight = (sdyx * r_f.double()).to(weight.dtype)
        return dx, dweight, sdy.to(weight.dtype), None, None


class BatchStatNormFusedFn(torch.autograd.Function):
    """PN-V (``center=False``) and BN ``paper`` (``center=True``) training step: batch
    statistics over real tokens, exact backward; padding rows are transformed like the
    others and get ``dx = gamma dy rstd`` (as ``functional.BatchStatNormFn``).
    ``norm._advance_batch(mean, var, n)`` moves the running buffers."""

    @staticmethod
    def forward(ctx, x, weight, bias, norm, keep, center: bool):
        x, w_rows = x.contiguous(), row_weights(keep)
        m = real_count(w_rows, x.shape[0])
        shift = norm.running_mean.to(torch.float32).contiguous() if center else None
        _, s1, s2, *_ = kernels.forward(x, 0, norm.eps, w_rows, shift, stats=(center, True, False))
        if center:
            d = s1 / m
            mu = shift.double() + d
            var = (s2 / m - d * d).clamp_min(0.0)
        else:
            mu, var = None, s2 / m
        rstd = torch.rsqrt(var + norm.eps)
        norm._advance_batch(None if mu is None else mu.float(), var.float(), m)
        a = weight.double() * rstd
        b = bias.double() - (mu * a if center else 0.0)
        y, *_ = kernels.forward(x, 0, norm.eps, a=_f32(a), b=_f32(b))
        ctx.save_for_backward(x, w_rows, weight)
        ctx.mu, ctx.rstd, ctx.m, ctx.center = (None if mu is None else _f32(mu)), rstd, m, center
        ctx.norm = norm
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        x, w_rows, weight = ctx.saved_tensors
        dy = _f32(grad_out)
        _, sdy, _, sdyz_raw, _ = kernels.backward(dy, x, 0, ctx.norm.eps, w_rows, ctx.mu, sums=(True, False, True, False))
        s, m, gamma = ctx.rstd, ctx.m, weight.double()
        sdyz = sdyz_raw * s  # sum_real dy * z
        m2 = gamma * sdyz / m  # mean_M[g z]
        c2 = s * s * m2
        if ctx.center:
            m1 = gamma * sdy / m  # mean_M[g]
            c3 = ctx.mu.double() * c2 - s * m1
        else:
            c3 = None
        norm = ctx.norm
        if norm.logging_stats:  # the spec's backward statistics, as functional.BatchStatNormFn logs them
            norm.record("g_sigma2" if ctx.center else "g_psi2", torch.linalg.vector_norm(m2).float() / norm.loss_scale)
            if ctx.center:
                norm.record("g_mu", torch.linalg.vector_norm(m1).float() / norm.loss_scale)
        dx, *_ = kernels.backward(dy, x, 0, ctx.norm.eps, w_rows, c1=_f32(gamma * s), c2=_f32(c2),
                                  c3=None if c3 is None else _f32(c3), pad_mode=1)
        return dx, sdyz.to(weight.dtype), sdy.to(weight.dtype), None, None, None


class BatchNormReferenceFusedFn(torch.autograd.Function):
    """BN ``reference`` training step: each row divided by its RMS (``xs = x r``), padding
    rows filled with the real tokens' mean ``mu``, then batch norm over all ``N`` rows
    (biased variance ``sum_real (xs - mu)^2 / N``); the backward is the exact gradient of
    that composition (``functional`` has it through autograd): with ``s = rstd``,
    ``m1 = mean_all[dy]``, ``m2 = sum_real[dy z] / N`` and ``P`` padding rows, a real row
    gets ``dxs = gamma s (dy - m1 - z m2) + gamma s (sum_pad dy - P m1) / M`` (the last
    term through the filled ``mu``), then the RMS scaling's gradient; padding rows get 0."""

    @staticmethod
    def forward(ctx, x, weight, bias, norm, keep):
        x, w_rows = x.contiguous(), row_weights(keep)
        n, eps = x.shape[0], norm.eps
        m = real_count(w_rows, n)
        shift = norm.running_mean.to(torch.float32).contiguous()
        _, s1, s2, _, r = kernels.forward(x, 1, eps, w_rows, shift, stats=(True, True, False))
        d = s1 / m
        mu = shift.double() + d
        var = ((s2 - s1 * d) / n).clamp_min(0.0)  # padding rows equal mu: they add nothing
        rstd = torch.rsqrt(var + eps)
        norm._advance_batch(mu.float(), var.float(), float(n))
        a = weight.double() * rstd
        y, *_ = kernels.forward(x, 1, eps, w_rows, a=_f32(a), b=_f32(bias.double() - mu * a),
                                pad_value=None if w_rows is None else _f32(bias), r=r)
        ctx.save_for_backward(x, w_rows, weight, r)
        ctx.mu, ctx.rstd, ctx.m, ctx.norm = _f32(mu), rstd, m, norm
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        x, w_rows, weight, r = ctx.saved_tensors
        n, eps = x.shape[0], ctx.norm.eps
        dy = _f32(grad_out)
        _, sdy, sdy_all, sdyx, _ = kernels.backward(dy, x, 1, eps, w_rows, ctx.mu, sums=(True, True, True, False), r=r)
        s, m, gamma, mu = ctx.rstd, ctx.m, weight.double(), ctx.mu.double()
        sdyz = sdyx * s  # sum_real dy z; padding rows have z = 0
        m1 = sdy_all / n
        m2 = sdyz / n
        c1 = gamma * s
        c2 = gamma * s * s * m2
        pad_term = gamma * s * ((sdy_all - sdy) - (n - m) * m1) / m
        c3 = c2 * mu - gamma * s * m1 + pad_term
        norm = ctx.norm
        if norm.logging_stats:  # as BatchNorm._log_backward: mean_M[g], mean_M[g z] over real tokens
            norm.record("g_mu", torch.linalg.vector_norm(gamma * sdy / m).float() / norm.loss_scale)
            norm.record("g_sigma2", torch.linalg.vector_norm(gamma * sdyz / m).float() / norm.loss_scale)
        dx, *_ = kernels.backward(dy, x, 1, eps, w_rows, c1=_f32(c1), c2=_f32(c2), c3=_f32(c3), pad_mode=2, r=r)
        return dx, sdyz.to(weight.dtype), sdy_all.to(weight.dtype), None, None
