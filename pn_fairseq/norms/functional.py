"""Autograd functions with hand-written backward passes for the batch-statistics norms.

All take the flattened ``x: N x C`` already in the statistics dtype (float32/float64) and
``keep: N`` (bool, True = real token, or None when nothing is padded). Each saves a single
``N x C`` tensor (the normalized ``z``) for backward, and the backward passes work in place
so that they allocate two ``N x C`` temporaries (on CPU, fresh large buffers cost more
than the arithmetic).

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

from .base import all_reduce_sum, autocast_off, masked_mean, masked_sum


class BatchStatNormFn(torch.autograd.Function):
    """``y = gamma * (x - mu_B) * rstd_B + beta`` with exact backward through mu_B, rstd_B.

    ``center=False`` gives PN-V (``mu_B = 0``, ``rstd_B = 1/sqrt(psi2_B + eps)``); the
    backward then reduces to ``(g - z * mean_M[g z]) * rstd`` (spec, PN-V), and with
    ``center=True`` to BN's ``(g - mean_M[g] - z * mean_M[g z]) * rstd``.
    Inputs ``mu: C`` (ignored when not centring) and ``rstd: C`` are computed by the caller
    without gradient; this function supplies their gradient analytically.

    ``stats=False`` (this worker holds a dummy batch): it adds nothing to the backward's
    statistics; where no worker adds anything, the statistics are constants.
    ``group``: the backward's ``mean_M[g]`` and ``mean_M[g z]`` are taken over the real
    tokens of every worker of the group (sums and counts all-reduced), which is the exact
    gradient of the workers' summed loss through the synchronized statistics; the returned
    ``dgamma`` / ``dbeta`` stay local, since data parallelism sums parameter gradients itself.
    """

    @staticmethod
    def forward(ctx, x, keep, weight, bias, mu, rstd, center: bool, stats: bool = True, group=None, monitor=None):
        z = (x - mu) * rstd if center else x * rstd
        ctx.save_for_backward(z, keep, weight, rstd)
        ctx.center, ctx.stats, ctx.group, ctx.monitor = center, stats, group, monitor
        return torch.addcmul(bias, z, weight)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        with autocast_off(grad_out):
            return BatchStatNormFn._backward(ctx, grad_out)

    @staticmethod
    def _backward(ctx, grad_out):
        z, keep, weight, rstd = ctx.saved_tensors
        gy = grad_out.to(z.dtype)
        tmp = gy * z
        dweight = masked_sum(tmp, keep)
        dbias = masked_sum(gy, keep)
        n = keep.sum() if keep is not None else z.new_tensor(float(z.shape[0]))
        if not ctx.stats:
            sum_gz, sum_g, n = torch.zeros_like(dweight), torch.zeros_like(dbias), torch.zeros_like(n, dtype=z.dtype)
        else:
            sum_gz, sum_g = dweight, dbias
        if ctx.group is not None:
            sum_gz, sum_g, n = all_reduce_sum([sum_gz, sum_g, n.to(z.dtype).reshape(1)], ctx.group)
        if (ctx.group is not None or not ctx.stats) and float(n) == 0:
            # Nobody had a real token: the statistics were constants.
            return gy.mul_(weight).mul_(rstd), None, dweight, dbias, None, None, None, None, None, None
        # At real tokens: (g - [mean_M g] - z * mean_M[g z]) * rstd, g = gamma * dy.
        proj = (sum_gz * weight) / n
        if ctx.monitor is not None and ctx.monitor.logging_stats:
            # The spec's backward batch statistics: mean_M[g z] (g_sigma2 / g_psi2), mean_M[g] (g_mu),
            # in true-gradient units (the incoming gradient carries fairseq's loss scale).
            s = ctx.monitor.loss_scale
            ctx.monitor.record("g_sigma2" if ctx.center else "g_psi2", torch.linalg.vector_norm(proj) / s)
            if ctx.center:
                ctx.monitor.record("g_mu", torch.linalg.vector_norm(sum_g * weight / n) / s)
        inner = torch.mul(z, -proj, out=tmp)
        inner.addcmul_(gy, weight)
        if ctx.center:
            inner.sub_(sum_g * weight / n)
        if not ctx.stats:
            inner = gy * weight
        elif keep is not None:
            # Padding rows: the statistics are constants for them, dx = g * rstd (a select, not
            # boolean indexing, which would sync with the host).
            inner = torch.where(keep[:, None], inner, gy * weight)
        dx = inner.mul_(rstd)
        return dx, None, dweight, dbias, None, None, None, None, None, None


def group_rms(x: torch.Tensor, groups: int, eps: float) -> torch.Tensor:
    """``r: N x G``, the reciprocal RMS of each row's ``groups`` contiguous channel groups
    (``vector_norm`` reduces the contiguous last dimension without an ``N x C`` temporary;
    out-of-place on the small result so that autograd can also flow through it)."""
    n, c = x.shape
    norm = torch.linalg.vector_norm(x.reshape(n, groups, c // groups), dim=-1)
    return torch.rsqrt(norm.square() / (c // groups) + eps)


def scale_groups(x: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """``x: N x C`` with each channel group multiplied by its ``r: N x G`` entry."""
    n, c = x.shape
    return (x.reshape(n, r.shape[1], -1) * r.unsqueeze(-1)).reshape(n, c)


def rms_scale(x: torch.Tensor, groups: int, eps: float) -> torch.Tensor:
    """The released code's "layer/group scaling": each row of ``x: N x C`` divided by the
    RMS of each of its ``groups`` contiguous channel groups (plain autograd)."""
    return scale_groups(x, group_rms(x, groups, eps))


class PowerNormFn(torch.autograd.Function):
    """PN's forward ``y = gamma * xs * fwd_rstd + beta`` and approximate backward.

    ``xs`` is the input after the reference variant's group scaling ``xs = x * r`` (``r: N x G``
    from :func:`group_rms`, computed by the caller without gradient), or ``x`` itself when
    ``r`` is None (paper). This function owns ``xs`` and turns it into ``z`` in place.

    Backward (spec, PN): ``g~ = g - nu * z``; ``dxs = g~ * bkw_rstd`` at every position;
    then ``nu += (1 - alpha_bkw) * mean[g~ * z]``, updated in place, the mean taken over
    real tokens (``nu_over_all=False``, paper) or over all ``N`` rows (released code).
    ``nu: C`` is the layer's buffer itself, read at backward time (= ``nu_{t-1}``). The
    group scaling's exact gradient follows: ``dx = r * (dxs - xs * mean_group[dxs * xs])``.
    """

    @staticmethod
    def forward(ctx, x, xs, r, keep, weight, bias, fwd_rstd, bkw_rstd, nu, alpha_bkw: float, nu_over_all: bool,
                stats: bool = True, group=None, monitor=None):
        z = xs.mul_(fwd_rstd) if r is not None else x * fwd_rstd
        ctx.save_for_backward(z, r, keep, weight, fwd_rstd, bkw_rstd)
        ctx.nu, ctx.alpha_bkw, ctx.nu_over_all = nu, alpha_bkw, nu_over_all
        ctx.stats, ctx.group, ctx.monitor = stats, group, monitor
        ctx.loss_scale = monitor.loss_scale if monitor is not None else 1.0
        return torch.addcmul(bias, z, weight)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        with autocast_off(grad_out):
            return PowerNormFn._backward(ctx, grad_out)

    @staticmethod
    def _backward(ctx, grad_out):
        z, r, keep, weight, fwd_rstd, bkw_rstd = ctx.saved_tensors
        nu = ctx.nu
        gy = grad_out.to(z.dtype)
        # The incoming gradient is S times the true one (fairseq's loss scale S): nu lives in
        # true-gradient units, so S * g~ = gamma * dy - (S nu) * z is built in one buffer, the
        # returned gradient is S * g~ * rstd as autograd expects, and nu moves by mean[g~ z].
        s = ctx.loss_scale
        g_tilde = z * (-nu.to(z.dtype) if s == 1.0 else nu.to(z.dtype) * -s)
        g_tilde.addcmul_(gy, weight)
        tmp = g_tilde * z
        with torch.no_grad():
            _update_nu(ctx, nu, tmp if s == 1.0 else tmp / s, keep)
        torch.mul(gy, z, out=tmp)
        dweight = masked_sum(tmp, keep)
        dbias = masked_sum(gy, keep)
        dxs = g_tilde.mul_(bkw_rstd)
        nones = (None,) * 10
        if r is None:
            return (dxs, None, None, None, dweight, dbias) + nones
        n, groups = r.shape
        # xs = z / fwd_rstd is rebuilt in the temporary buffer rather than saved.
        inv_fwd = fwd_rstd.reciprocal()
        prod = torch.mul(z, inv_fwd, out=tmp).mul_(dxs)
        proj = prod.reshape(n, groups, -1).mean(-1, keepdim=True)
        xs_proj = torch.mul(z, inv_fwd, out=tmp).reshape(n, groups, -1).mul_(proj)
        dxs.reshape(n, groups, -1).sub_(xs_proj).mul_(r.unsqueeze(-1))
        return (dxs, None, None, None, dweight, dbias) + nones


def _update_nu(ctx, nu, gz, keep):
    """``nu += (1 - alpha_bkw) * mean[g~ z]`` over real tokens (or all rows), of every
    worker of ``ctx.group``; a batch without statistics (dummy) leaves ``nu`` alone."""
    rows = None if ctx.nu_over_all else keep
    if ctx.group is None:
        if ctx.stats:
            _move_nu(ctx, nu, masked_mean(gz, rows))
        return
    if ctx.stats:
        total = masked_sum(gz, rows)
        count = gz.new_tensor([float(gz.shape[0]) if rows is None else 0.0])
        if rows is not None:
            count = rows.sum().to(gz.dtype).reshape(1)
    else:
        total, count = torch.zeros_like(gz[0]), gz.new_zeros(1)
    total, count = all_reduce_sum([total, count], ctx.group)
    if float(count) > 0:
        _move_nu(ctx, nu, total / count)


def _move_nu(ctx, nu, mean_gz):
    move_nu(nu, mean_gz, ctx.alpha_bkw, ctx.monitor, ctx.stats)


def move_nu(nu, mean_gz, alpha_bkw: float, monitor=None, record: bool = True):
    """``nu += (1 - alpha_bkw) * mean_gz`` in place, unless ``mean_gz`` is not finite (an inf
    gradient that the loss scaler will skip): then ``nu`` stays and ``monitor`` (the layer)
    counts the skip. ``monitor`` also logs the step and watches ``nu`` for divergence."""
    # add(alpha=) exactly as before monitoring existed: training stays bit-identical.
    new = torch.add(nu, mean_gz.to(nu.dtype), alpha=1.0 - alpha_bkw)
    if monitor is None:
        nu.copy_(torch.where(torch.isfinite(mean_gz).all(), new, nu))
        return
    if record and monitor.logging_stats:
        monitor.record("nu_update", torch.linalg.vector_norm(mean_gz) * (1.0 - alpha_bkw))
    monitor.commit((mean_gz,), {"running_nu": new}, count=False)
