"""BN: batch normalization over the non-padding positions (spec, "BN")."""
from typing import Optional

import torch
import torch.nn as nn
import torch.distributed.nn.functional as dist_nn
import torch.nn.functional as F

from .base import NormBase, all_reduce_sum, autocast_off, dist_per_channel, masked_mean, num_kept, stat_dtype
from .functional import BatchStatNormFn, rms_scale
from .fused import BatchNormReferenceFusedFn, BatchStatNormFusedFn
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
    ``torch.nn.BatchNorm1d``; ``num_batches_tracked`` counts the batches whose statistics
    entered them, ``nonfinite_skips`` those whose statistics were not finite and did not
    (``NormBase``). ``impl``: ``"fused"`` (default, ``fused.py`` where it applies) or
    ``"eager"`` (the reference it is tested against). ``batch_first``: ``x: B x T x C``.
    """

    def __init__(self, embed_dim: int, variant: str = "reference", momentum: float = 0.05, eps: float = 1e-5,
                 sync_stats: bool = False, impl: str = "fused", batch_first: bool = False):
        super().__init__(sync_stats, impl, batch_first)
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
        s = f"{self.embed_dim}, variant={self.variant}, momentum={self.momentum}, eps={self.eps}"
        return s + (", sync_stats=True" if self.sync_stats else "") + self.layout_repr()

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
            if self.variant == "reference":
                y = BatchNormReferenceFusedFn.apply(xf, w, b, self, keep)
            else:
                y = BatchStatNormFusedFn.apply(xf, w, b, self, keep, True)
        elif self.training and self.dummy_batch and group is None:
            # fairseq's dummy batch: an output from the running statistics, nothing moves.
            xs = rms_scale(xf, 1, self.eps) if self.variant == "reference" else xf
            y = F.batch_norm(xs, self.running_mean.to(sd), self.running_var.to(sd), w, b, False, 0.0, self.eps)
        elif self.variant == "reference" and group is not None:
            y = self._forward_reference_synced(rms_scale(xf, 1, self.eps), keep, w, b, group)
        elif self.variant == "reference":
            y = self._forward_reference(rms_scale(xf, 1, self.eps), keep, w, b)
        elif self.training:
            y = self._forward_paper_train(xf, keep, w, b, group)
        else:
            y = F.batch_norm(xf, self.running_mean.to(sd), self.running_var.to(sd), w, b, False, 0.0, self.eps)
        return y.to(x.dtype).reshape(x.shape)

    def _forward_paper_train(self, xf, keep, w, b, group):
        with torch.no_grad():
            if group is None:
                mu = masked_mean(xf, keep)
                var = masked_mean((xf - mu).pow(2), keep)
                n = num_kept(xf, keep)
            else:
                weights = self.row_weights(xf, keep)
                total, count = all_reduce_sum([weights @ xf, weights.sum().reshape(1)], group)
                n = float(count)
                if n == 0:  # every worker holds a dummy batch
                    rm, rv = self.running_mean.to(xf.dtype), self.running_var.to(xf.dtype)
                    return BatchStatNormFn.apply(xf, keep, w, b, rm, torch.rsqrt(rv + self.eps), True, False, group)
                mu = total / count
                (sq_dev,) = all_reduce_sum([weights @ (xf - mu).pow(2)], group)
                var = sq_dev / count
            self._advance_batch(mu, var, n)
        return BatchStatNormFn.apply(xf, keep, w, b, mu, torch.rsqrt(var + self.eps), True, not self.dummy_batch,
                                     group, self)

    @torch.no_grad()
    def _advance_batch(self, mu: torch.Tensor, var: torch.Tensor, count: float):
        """Move the running buffers towards the batch mean and the (biased) variance ``var``
        over ``count`` rows, stored unbiased; a non-finite mean or variance moves nothing."""
        self._log_forward(mu, var)
        if torch.is_tensor(count):  # the eager path's count stays on the device (no host sync)
            unbiased = var * torch.where(count > 1, count / (count - 1).clamp_min(1), torch.ones_like(count))
        else:
            unbiased = var * (count / (count - 1)) if count > 1 else var
        self._commit_running(mu, unbiased, (mu, var))

    def _commit_running(self, mu, unbiased, stats):
        """EMA of the running mean and variance towards ``mu`` and ``unbiased``, written only
        if ``stats`` are finite (``NormBase.commit``)."""
        rm, rv = self.running_mean, self.running_var
        self.commit(stats, {
            "running_mean": torch.add(rm * (1 - self.momentum), mu.to(rm.dtype), alpha=self.momentum),
            "running_var": torch.add(rv * (1 - self.momentum), unbiased.to(rv.dtype), alpha=self.momentum),
        })

    def _log_forward(self, mu_b, var_b):
        """(1/d)||mu_B - mu||, (1/d)||sigma2_B - sigma2|| against the buffers before the update."""
        if self.logging_stats:
            self.record("mu_dist", dist_per_channel(mu_b.detach(), self.running_mean))
            self.record("sigma2_dist", dist_per_channel(var_b.detach(), self.running_var))

    def _log_backward(self, y, w, b, keep):
        """The reference variant's backward runs through autograd: read ||mean_M[g]|| and
        ||mean_M[g z]|| (g = gamma * dL/dy, z = (y - beta) / gamma) off a gradient hook."""
        if not self.logging_stats or not y.requires_grad:
            return
        z = ((y - b) / w).detach()

        def hook(grad):
            g = grad.to(z.dtype) * (w.detach() / self.loss_scale)  # true-gradient units
            self.record("g_mu", torch.linalg.vector_norm(masked_mean(g, keep)))
            self.record("g_sigma2", torch.linalg.vector_norm(masked_mean(g * z, keep)))

        y.register_hook(hook)

    def _forward_reference_synced(self, xs, keep, w, b, group):
        """The reference variant over every worker's rows: padding filled with the global
        mean of the real tokens, then batch norm over all rows of all workers. The sums go
        through a differentiable all-reduce, so autograd gives the exact backward of the
        workers' summed loss (as ``torch.nn.SyncBatchNorm`` does)."""
        weights = self.row_weights(xs, keep)
        rows = xs.new_tensor([0.0 if self.dummy_batch else float(xs.shape[0])])
        sums = dist_nn.all_reduce(torch.cat([weights @ xs, weights.sum().reshape(1), rows]), group=group)
        c = xs.shape[1]
        n_real, n_rows = float(sums[c]), float(sums[c + 1])
        if n_real == 0:  # every worker holds a dummy batch
            rm, rv = self.running_mean.to(xs.dtype), self.running_var.to(xs.dtype)
            return F.batch_norm(xs, rm, rv, w, b, False, 0.0, self.eps)
        mu = sums[:c] / n_real
        if keep is not None or self.dummy_batch:
            xs = torch.where(weights.bool()[:, None], xs, mu)
        # Padding rows equal mu, so the mean over all rows is mu and they add nothing below.
        sq_dev = dist_nn.all_reduce(weights @ (xs - mu).pow(2), group=group)
        var = sq_dev / n_rows
        with torch.no_grad():
            self._log_forward(mu, var)
            unbiased = var.detach() * (n_rows / (n_rows - 1)) if n_rows > 1 else var.detach()
            self._commit_running(mu.detach(), unbiased, (mu.detach(), var.detach()))
        y = (xs - mu) * torch.rsqrt(var + self.eps) * w + b
        self._log_backward(y, w, b, keep)
        return y

    def _forward_reference(self, xs, keep, w, b):
        if not self.training:
            return F.batch_norm(xs, self.running_mean.to(xs.dtype), self.running_var.to(xs.dtype), w, b, False, 0.0, self.eps)
        if keep is not None:
            # Differentiable fill, as the released code: padding rows become the batch mean,
            # so the mean over all T*B rows is mu_B while the variance is divided by T*B.
            xs = torch.where(keep[:, None], xs, masked_mean(xs, keep))
        if self.logging_stats:
            with torch.no_grad():
                mu_b = xs.mean(0)
                self._log_forward(mu_b, (xs - mu_b).pow(2).mean(0))
        # F.batch_norm moves copies of the buffers (in the input dtype: float64 input with
        # float32 buffers updates in float64), which are committed only if they stayed finite:
        # with finite buffers before, the EMA is finite exactly when the batch statistics are.
        rm, rv = self.running_mean.to(xs.dtype, copy=True), self.running_var.to(xs.dtype, copy=True)
        y = F.batch_norm(xs, rm, rv, w, b, True, self.momentum, self.eps)
        self.commit((rm, rv), {"running_mean": rm, "running_var": rv})
        self._log_backward(y, w, b, keep)
        return y
