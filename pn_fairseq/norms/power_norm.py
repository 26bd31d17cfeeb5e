"""PN: power normalization with running statistics (paper Definition 3 / Algorithm 2)."""
from typing import Optional, Tuple

import torch
import torch.nn as nn

from .base import NormBase, autocast_off, dist_per_channel, stat_dtype
from .functional import PowerNormFn, group_rms, move_nu, rms_scale, scale_groups
from .fused import PowerNormFusedFn
from .validation import check_choice, check_eps, check_groups, check_impl, check_unit_interval, check_warmup

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

    Group scaling is a switch of both variants (the ablation the authors' users ask about):
    ``groups=G > 0`` divides each position's G channel groups by their RMS first, ``groups=0``
    does not. Defaults: 1 for ``reference`` (fairseq flags: the attention heads), 0 for ``paper``.

    Warm-up clock: a layer used alone counts its training batches, as the released code
    (``k``, 1 on the first: batch statistics while ``k <= W``, cumulative average while
    ``k < W``); ``k`` is ``num_batches_tracked + 1``, kept on the device, so that a batch whose
    statistic was not finite (skipped) does not count and the decisions cost no host sync. Once fairseq has called :meth:`set_num_updates` (it does before every
    training forward, with ``n`` = optimizer updates done), the warm-up is measured in
    optimizer updates instead: batch statistics while ``n < W``, cumulative average while
    ``n + 1 < W``, so that ``--update-freq U`` switches at the same optimizer update as
    ``U = 1`` (where ``k = n + 1`` and both clocks agree). The running averages themselves
    (the cumulative average's ``1/k`` weights and the EMA) still count micro-batches: each
    forward call is one observation ``psi2_B`` of a batch of the configured size (spec,
    "PN": the statistic is updated at every training forward).

    Non-finite statistics (``NormBase``): a forward whose ``psi2_B`` is not finite leaves
    ``running_psi2`` and ``num_batches_tracked`` as they were, a backward whose ``mean[g~ z]``
    is not finite leaves ``running_nu`` as it was; each adds 1 to ``nonfinite_skips``.

    ``causal=True`` (a causal decoder): the forward never divides by the current batch's
    statistic, also not during the reference variant's warm-up, but by ``psi2_{t-1}``, the
    running statistic of the earlier batches (during the warm-up their cumulative average,
    which still runs; with ``warmup_updates=0`` the EMA from its init of 1). A batch statistic
    in training mode makes each position's output depend on every other position of the batch,
    later tokens of its own sequence included, which a causal decoder must not see (and cannot
    at inference). The backward is the variant's own (the reference one divides by the batch
    statistic): gradients, unlike outputs, may depend on later tokens.

    ``impl``: ``"fused"`` (default) trains through the one-pass kernels of ``fused.py`` where
    they apply (float32 CPU, one process), ``"eager"`` through ``functional.PowerNormFn``,
    the reference the fused path is tested against.

    Shapes: ``x: T x B x C`` with ``pad_mask: B x T`` (True = pad), or ``x: N x C``;
    ``batch_first=True``: ``x: B x T x C``.
    Buffers: ``running_psi2`` (init 1), ``running_nu`` (init 0; the paper's ``nu`` in both
    variants), ``num_batches_tracked`` (training batches whose statistic entered ``psi2``),
    ``nonfinite_skips``.
    """

    def __init__(
        self,
        embed_dim: int,
        variant: str = "reference",
        alpha_fwd: float = 0.9,
        alpha_bkw: float = 0.9,
        warmup_updates: int = 0,
        groups: Optional[int] = None,
        eps: float = 1e-5,
        sync_stats: bool = False,
        impl: str = "fused",
        batch_first: bool = False,
        causal: bool = False,
    ):
        super().__init__(sync_stats, impl, batch_first)
        if not isinstance(causal, bool):
            raise ValueError(f"causal must be True or False; got {causal!r}")
        self.causal = causal
        check_choice("variant", variant, VARIANTS)
        check_unit_interval("alpha_fwd", alpha_fwd)
        check_unit_interval("alpha_bkw", alpha_bkw)
        check_warmup(warmup_updates)
        if groups is None:  # the released code scales by the whole row; the paper does not scale
            groups = 1 if variant == "reference" else 0
        check_groups(embed_dim, groups, allow_zero=True)
        check_eps(eps)
        self.embed_dim, self.variant, self.eps = embed_dim, variant, eps
        self.alpha_fwd, self.alpha_bkw = alpha_fwd, alpha_bkw
        self.warmup_updates, self.groups = warmup_updates, groups
        self.weight = nn.Parameter(torch.ones(embed_dim))
        self.bias = nn.Parameter(torch.zeros(embed_dim))
        self.register_buffer("running_psi2", torch.ones(embed_dim))
        self.register_buffer("running_nu", torch.zeros(embed_dim))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))
        # Optimizer updates done, once fairseq reports them (set_num_updates).
        self._num_updates: Optional[int] = None

    psi2 = property(lambda self: self.running_psi2)
    nu = property(lambda self: self.running_nu)

    @property
    def k(self) -> int:
        """Training batches absorbed so far (a host read: the fused CPU path and tests use it)."""
        return int(self.num_batches_tracked)

    def set_num_updates(self, num_updates: int):
        """fairseq's hook (called before every training forward): measure the warm-up in
        optimizer updates from now on."""
        self._num_updates = int(num_updates)

    def in_warmup(self, k) -> Tuple:
        """(normalize by the batch statistic?, apply the cumulative average?) for the
        ``k``-th training batch (reference variant); ``k`` an int or a 0-dim device tensor
        (then, without fairseq's update count, the answers are 0-dim bool tensors)."""
        W = self.warmup_updates
        if self._num_updates is None:
            if W == 0:
                return False, False
            return k <= W, k < W
        n = self._num_updates
        return n < W, n + 1 < W

    def extra_repr(self):
        s = f"{self.embed_dim}, variant={self.variant}, alpha_fwd={self.alpha_fwd}, alpha_bkw={self.alpha_bkw}"
        if self.variant == "reference":
            s += f", warmup_updates={self.warmup_updates}"
        s += f", groups={self.groups}"
        s += f", eps={self.eps}"
        if self.causal:
            s += ", causal=True"
        return s + (", sync_stats=True" if self.sync_stats else "") + self.layout_repr()

    def forward(self, x: torch.Tensor, pad_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        with autocast_off(x):
            return self._forward(x, pad_mask)

    def _forward(self, x: torch.Tensor, pad_mask: Optional[torch.Tensor]) -> torch.Tensor:
        x2d, keep = self.flatten(x, pad_mask)
        sd = stat_dtype(x)
        xf = x2d.to(sd)
        w, b = self.weight.to(sd), self.bias.to(sd)
        reference = self.variant == "reference"
        scaled = self.groups > 0
        if not self.training:
            if scaled:
                xf = rms_scale(xf, self.groups, self.eps)
            y = torch.addcmul(b, xf * torch.rsqrt(self.running_psi2.to(sd) + self.eps), w)
            return y.to(x.dtype).reshape(x.shape)

        group = self.sync_group()
        if self.use_fused(xf, group):
            y = PowerNormFusedFn.apply(xf, w, b, self, keep)
            return y.to(x.dtype).reshape(x.shape)
        with torch.no_grad():
            r = xs = None
            if scaled:
                r = group_rms(xf, self.groups, self.eps)
                xs = scale_groups(xf, r)
            fwd_rstd, bkw_rstd = self._update_statistics(xs if scaled else xf, keep, group)
        y = PowerNormFn.apply(
            xf, xs, r, keep, w, b, fwd_rstd, bkw_rstd, self.running_nu, self.alpha_bkw, reference,
            not self.dummy_batch, group, self,
        )
        return y.to(x.dtype).reshape(x.shape)

    @torch.no_grad()
    def _update_statistics(self, xf: torch.Tensor, keep: Optional[torch.Tensor], group):
        """Advance k and psi2; return the forward and backward ``1/sqrt(. + eps)`` (``C``).
        Without any real token (a dummy batch, on every worker) nothing moves."""
        psi2_b = self.batch_quadratic_mean(xf, keep, group)
        psi2_prev = self.running_psi2.to(xf.dtype, copy=True)  # psi2 is updated in place below
        if psi2_b is None:
            rstd_prev = torch.rsqrt(psi2_prev + self.eps)
            return rstd_prev, rstd_prev
        return self._advance(psi2_b, psi2_prev)

    @torch.no_grad()
    def _advance(self, psi2_b: torch.Tensor, psi2_prev: torch.Tensor):
        """Given this batch's ``psi2_B`` and the running ``psi2`` before it (both ``C``): advance
        k and psi2 (unless ``psi2_B`` is not finite) and return the forward and backward
        ``1/sqrt(. + eps)``."""
        psi2 = self.running_psi2
        rstd_prev = torch.rsqrt(psi2_prev + self.eps)
        self.record("psi2_dist", dist_per_channel(psi2_b, psi2_prev))
        rstd_b = torch.rsqrt(psi2_b + self.eps)
        b = psi2_b.to(psi2.dtype)
        new = psi2
        if self.variant == "reference":
            k = self.num_batches_tracked + 1  # this batch's number, on the device
            batch_fwd, cumulative = self.in_warmup(k)
            fwd_rstd = rstd_prev if self.causal else _select(batch_fwd, rstd_b, rstd_prev)
            bkw_rstd = rstd_b
            if cumulative is not False:
                kf = k.to(torch.float64)
                average = torch.add(psi2 * ((kf - 1) / kf).to(psi2.dtype), b * (1.0 / kf).to(psi2.dtype))
                new = _select(cumulative, average, psi2)
        else:
            fwd_rstd = bkw_rstd = rstd_prev
        self.commit((psi2_b,), {"running_psi2": torch.add(new * self.alpha_fwd, b, alpha=1.0 - self.alpha_fwd)})
        return fwd_rstd, bkw_rstd

    @torch.no_grad()
    def _move_nu(self, mean_gz: torch.Tensor):
        """``nu += (1 - alpha_bkw) * mean[g~ z]`` (the fused backward's update)."""
        move_nu(self.running_nu, mean_gz, self.alpha_bkw, self, record=True)


def _select(cond, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a`` where ``cond`` else ``b``; ``cond`` a host bool or a 0-dim bool tensor (no sync)."""
    if isinstance(cond, bool):
        return a if cond else b
    return torch.where(cond, a, b)
