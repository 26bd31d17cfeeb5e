"""Shared plumbing of the normalization layers: shapes, masks, float32 statistics.

Every norm takes ``x: T x B x C`` (fairseq's time-major layout) with an optional
``pad_mask: B x T`` (bool, True at padding), or ``x: N x C`` without a mask; built with
``batch_first=True`` it takes ``x: B x T x C`` (the same ``B x T`` mask) instead of
``T x B x C``. Internally the layers work on the flattened ``N x C`` view (``N = T * B``,
row ``t * B + b``, or ``b * T + t`` batch-first) with a ``keep: N`` bool vector (True = a real
token).

Non-finite statistics (an fp16 overflow upstream, an inf gradient before ``GradScaler``
skips the step) never enter a running buffer: every update is written through
:meth:`NormBase.commit`, which keeps the old values on the device when the statistic is not
finite and counts the skip in the ``nonfinite_skips`` buffer, without a host sync.
"""
import contextlib
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import torch
import torch.distributed as dist
import torch.nn as nn

from . import kernels
from .validation import check_impl

_LOW_PRECISION = (torch.float16, torch.bfloat16)
ALL_PADDING = "pad_mask marks every position as padding: no statistics can be taken"


def autocast_off(t: torch.Tensor):
    """A context in which ``t``'s device runs no autocast: the norms take their statistics in
    float32 themselves, and under CUDA autocast a masked sum (a matrix product) would run in
    fp16 and overflow once a channel's sum of squares passes 65504."""
    if torch.is_autocast_enabled(t.device.type):
        return torch.autocast(t.device.type, enabled=False)
    return contextlib.nullcontext()


def stat_dtype(x: torch.Tensor) -> torch.dtype:
    """Statistics are accumulated in float32 (float64 stays float64 for exact tests):
    x**2 overflows fp16 above |x| = 256."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def flatten(x: torch.Tensor, pad_mask: Optional[torch.Tensor],
            batch_first: bool = False) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """``x: T x B x C`` (``B x T x C`` with ``batch_first``) or ``N x C`` -> (``x2d: N x C``,
    ``keep: N`` bool or None).

    ``keep`` is None when there is no padding at all, so callers can use the cheaper
    unmasked reductions.
    """
    layout = "B x T x C" if batch_first else "T x B x C"
    if x.dim() == 3:
        if batch_first:
            B, T, C = x.shape
        else:
            T, B, C = x.shape
        x2d = x.reshape(T * B, C)
        if pad_mask is None:
            return x2d, None
        if pad_mask.shape != (B, T):
            raise ValueError(
                f"pad_mask must be B x T = {B} x {T} for x of shape {layout} = {tuple(x.shape)}, "
                f"got {tuple(pad_mask.shape)}"
            )
        pad = pad_mask.to(torch.bool)
        keep = ~(pad.reshape(B * T) if batch_first else pad.t().reshape(T * B))
    elif x.dim() == 2:
        if pad_mask is not None:
            raise ValueError(f"pad_mask is only accepted with x of shape {layout}, not N x C")
        return x, None
    else:
        raise ValueError(f"expected x of shape {layout} or N x C, got {tuple(x.shape)}")
    # No host sync: a mask without padding still returns ``keep`` (the weighted reductions give
    # the same result), and the all-padding check is asserted on the device (on CUDA it fails
    # later, as a device-side assert, instead of draining the queue on every call).
    try:
        torch._assert_async(keep.any(), ALL_PADDING)
    except RuntimeError as e:
        raise ValueError(ALL_PADDING) from e
    return x2d, keep


def row_weights(t: torch.Tensor, keep: Optional[torch.Tensor]) -> torch.Tensor:
    """``N`` weights, 1 for a kept row and 0 for padding, in ``t``'s dtype."""
    if keep is None:
        return torch.ones(t.shape[0], dtype=t.dtype, device=t.device)
    return keep.to(t.dtype)


def masked_sum(t: torch.Tensor, keep: Optional[torch.Tensor]) -> torch.Tensor:
    """Per-channel sum of ``t: N x C`` over the kept rows -> ``C``.

    A matrix-vector product rather than ``t.sum(0)`` / ``where``: on CPU it is ~30x faster
    than a reduction over the outer dimension and allocates nothing of size ``N x C``.
    Padding values are assumed finite (0 * inf would be nan); fairseq's are.
    """
    return row_weights(t, keep) @ t


def masked_mean(t: torch.Tensor, keep: Optional[torch.Tensor]) -> torch.Tensor:
    """Per-channel mean of ``t: N x C`` over the kept rows -> ``C``."""
    w = row_weights(t, keep)
    return (w @ t) / w.sum()


def all_reduce_sum(tensors: List[torch.Tensor], group) -> List[torch.Tensor]:
    """Sum each tensor over ``group`` in one collective (no-op for ``group=None``)."""
    if group is None:
        return tensors
    flat = torch.cat([t.reshape(-1) for t in tensors])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM, group=group)
    return [part.view_as(t) for part, t in zip(flat.split([t.numel() for t in tensors]), tensors)]


def dist_per_channel(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``(1/d) ||a - b||``: the papers' distance between a batch and a running statistic."""
    return torch.linalg.vector_norm(a - b.to(a.dtype)) / a.numel()


def num_kept(x2d: torch.Tensor, keep: Optional[torch.Tensor]) -> torch.Tensor:
    """Real tokens as a 0-dim tensor of ``x2d``'s dtype (no host sync)."""
    if keep is None:
        return x2d.new_tensor(float(x2d.shape[0]))
    return keep.sum().to(x2d.dtype)


class NormBase(nn.Module):
    """Base of the batch-statistics norms.

    * ``forward(x, pad_mask=None)``; when called without a mask (fairseq's layers call
      their norms as ``norm(x)``), the mask set by :func:`pad_mask_context` is used.
    * Floating buffers (running statistics) stay float32 under ``model.half()`` /
      ``.bfloat16()``: fairseq's ``--fp16`` casts whole models, and a fp16 running
      quadratic mean would overflow or lose the small EMA increments.
    * ``sync_stats=True``: per-channel sums and real-token counts are all-reduced over
      ``process_group`` (None = the default group) before dividing, in the forward and in
      the backward, so that N data-parallel workers compute what one worker computes on
      the concatenation of their batches. A no-op without ``torch.distributed`` or with
      one worker.
    * ``dummy_batch`` (set by :func:`dummy_batch_context`): the batch is fairseq's
      placeholder (an OOM-skipped batch, a worker out of data). It contributes nothing to
      any statistic, counter or running buffer; with ``sync_stats`` the layer still joins
      the collectives (with zero weight) so that the other workers do not hang.
    * Monitoring: ``stats_sink(norm, stat, value)`` (set by the model for
      ``--log-norm-stats``) receives the spec's fluctuation statistics as 0-dim tensors
      (no host sync); every update of a running buffer leaves a finiteness flag that
      :meth:`pop_finite_flags` hands to the divergence check (one sync per training step
      for the whole model, done by the model).
    * Non-finite statistics: an update whose statistic is not finite (a forward's batch
      statistic, PN's backward ``mean[g~ z]``) leaves every buffer and counter it would have
      moved as it was and adds 1 to ``nonfinite_skips`` (int64, counted since the layer was
      built: not saved in its ``state_dict``); the output and the returned
      gradient are left as they are, for the loss scaler to see. Its finiteness flag is
      False all the same: a step that fairseq applies with a non-finite statistic stops the
      run (``--task translation_pn``), as it did when the value reached the buffer.
    * ``batch_first=True``: ``x: B x T x C`` instead of ``T x B x C`` (``pad_mask`` stays ``B x T``).
    """

    context_pad_mask: Optional[torch.Tensor] = None
    dummy_batch: bool = False
    # The factor the incoming gradients carry (fairseq's dynamic loss scale under --fp16 /
    # --amp, set per step by the task): statistics of the gradient are divided by it.
    loss_scale: float = 1.0
    # Activation checkpointing's recomputed forward: it moves no statistic and logs nothing.
    replaying: bool = False
    stats_sink = None
    stats_name: Optional[str] = None  # short layer name for logs and errors, e.g. "enc0.ffn"

    def __init__(self, sync_stats: bool = False, impl: str = "fused", batch_first: bool = False):
        super().__init__()
        for name, value in (("sync_stats", sync_stats), ("batch_first", batch_first)):
            if not isinstance(value, bool):
                raise ValueError(f"{name} must be True or False; got {value!r}")
        check_impl(impl)
        self.sync_stats, self.impl, self.batch_first = sync_stats, impl, batch_first
        self.process_group = None
        # One flag per buffer, and-ed over the updates since the last pop: bounded in a plain
        # training loop where nobody pops them.
        self._finite_flags: Dict[str, torch.Tensor] = {}
        # A diagnostic of this process, not training state: no checkpoint carries it (persistent=False),
        # so checkpoints load both ways across versions and BN's state_dict stays BatchNorm1d's. It is
        # a buffer all the same, so that it follows .to(device) and the step ledger rolls it back.
        self.register_buffer("nonfinite_skips", torch.tensor(0, dtype=torch.long), persistent=False)

    def flatten(self, x: torch.Tensor, pad_mask: Optional[torch.Tensor]):
        """``(x2d: N x C, keep: N or None)`` for this layer's layout, the mask defaulting to the
        one :func:`pad_mask_context` set."""
        return flatten(x, self.resolve_mask(pad_mask), self.batch_first)

    def layout_repr(self) -> str:
        return ", batch_first=True" if self.batch_first else ""

    @property
    def logging_stats(self) -> bool:
        return self.stats_sink is not None and not self.dummy_batch and not self.replaying

    def record(self, stat: str, value: torch.Tensor):
        """Hand one statistic (0-dim tensor) to the sink, if any."""
        if self.logging_stats:
            self.stats_sink(self, stat, value.detach())

    @torch.no_grad()
    def batch_quadratic_mean(self, x2d: torch.Tensor, keep: Optional[torch.Tensor], group) -> Optional[torch.Tensor]:
        """``psi2_B = mean_M[x^2]`` (``C``) over the real tokens of every worker of ``group``,
        or None when there are none (a dummy batch, on every worker)."""
        weights = self.row_weights(x2d, keep)
        sq_sum, count = weights @ (x2d * x2d), weights.sum()
        if group is not None:
            sq_sum, count = all_reduce_sum([sq_sum, count.reshape(1)], group)
            return sq_sum / count if float(count) > 0 else None
        return None if self.dummy_batch else sq_sum / count

    def use_fused(self, xf: torch.Tensor, group) -> bool:
        """Whether this training step runs the fused kernels (``fused.py``): only for plain
        float32 CPU training in one process; everything else (dummy batches, synchronized
        statistics, float64, CUDA) takes the eager path."""
        return (self.impl == "fused" and self.training and group is None and not self.dummy_batch
                and xf.dtype == torch.float32 and xf.device.type == "cpu"
                and kernels.load() is not None)

    def watch_finite(self, name: str, tensor: torch.Tensor, ok: Optional[torch.Tensor] = None):
        """Remember whether ``tensor`` (a running buffer just updated) is still finite and, with
        ``ok`` (0-dim bool), whether the statistic of its update was."""
        if self.replaying:
            return
        flag = torch.isfinite(tensor).all()
        if ok is not None:
            flag = flag & ok
        before = self._finite_flags.get(name)
        self._finite_flags[name] = flag if before is None else before & flag

    def pop_finite_flags(self) -> List[Tuple[str, torch.Tensor]]:
        flags, self._finite_flags = list(self._finite_flags.items()), {}
        return flags

    @torch.no_grad()
    def commit(self, stats: Sequence[torch.Tensor], updates: Dict[str, torch.Tensor], count: bool = True):
        """Write ``updates`` (buffer name -> new value) into the buffers if every tensor of
        ``stats`` (the statistics the new values come from) is finite, else keep the old
        values and add 1 to ``nonfinite_skips``; ``count``: advance ``num_batches_tracked``
        only for an update written. All on the device: no host sync. Returns ``ok`` (0-dim bool)."""
        ok = torch.stack([torch.isfinite(t).all() for t in stats]).all() if len(stats) > 1 else torch.isfinite(stats[0]).all()
        for name, new in updates.items():
            buf = self._buffers[name]
            buf.copy_(torch.where(ok, new.to(buf.dtype), buf))
            self.watch_finite(name, buf, ok)
        if count:
            self.num_batches_tracked.add_(ok.to(torch.long))
        skipped = ~ok
        self.nonfinite_skips.add_(skipped.to(torch.long))
        if self.logging_stats:
            self.record("nonfinite_skips", skipped.to(torch.float32))
        return ok


    def resolve_mask(self, pad_mask: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        return self.context_pad_mask if pad_mask is None else pad_mask

    def sync_group(self):
        """The process group to all-reduce statistics over, or None when not syncing."""
        if not self.sync_stats or not dist.is_available() or not dist.is_initialized():
            return None
        group = self.process_group if self.process_group is not None else dist.group.WORLD
        return group if dist.get_world_size(group) > 1 else None

    def row_weights(self, x2d: torch.Tensor, keep: Optional[torch.Tensor]) -> torch.Tensor:
        """``N`` statistics weights: 1 for a real token, 0 for padding and for every row of
        a dummy batch."""
        if self.dummy_batch:
            return torch.zeros(x2d.shape[0], dtype=x2d.dtype, device=x2d.device)
        return row_weights(x2d, keep)

    def _apply(self, fn, recurse=True):
        # The buffers before the cast: where ``fn`` would make a float32 buffer fp16/bf16
        # (``model.half()``, fairseq-generate --fp16), the original moves to the new device
        # unrounded. Casting fn's result back to float32 would keep the rounding (psi2 = 1e5
        # -> inf, 1e-8 -> 0).
        before = {k: b for k, b in self._buffers.items() if b is not None and b.is_floating_point()}
        super()._apply(fn, recurse)
        for name, old in before.items():
            new = self._buffers[name]
            if new.dtype in _LOW_PRECISION and old.dtype not in _LOW_PRECISION:
                self._buffers[name] = old.to(device=new.device)
        return self

    # -- state of one training step: snapshots for steps fairseq does not apply and for
    #    activation checkpointing's recomputed forward (norms/state.py) --

    def capture_state(self):
        """Copies of every buffer and of the host-side counters."""
        return {k: b.clone() for k, b in self._buffers.items() if b is not None}, self._host_state()

    def restore_state(self, state):
        """Put back what :meth:`capture_state` returned, in place (autograd contexts and
        optimizers hold the buffer objects themselves)."""
        buffers, host = state
        with torch.no_grad():
            for k, b in buffers.items():
                self._buffers[k].copy_(b)
        self._set_host_state(host)

    def _host_state(self):
        return None

    def _set_host_state(self, host):
        pass


@contextlib.contextmanager
def dummy_batch_context(model: nn.Module, dummy: bool = True):
    """Mark every norm of ``model`` as seeing fairseq's dummy batch (forward and backward)."""
    norms = [m for m in model.modules() if isinstance(m, NormBase)] if dummy else []
    for n in norms:
        n.dummy_batch = True
    try:
        yield
    finally:
        for n in norms:
            n.dummy_batch = False


@contextlib.contextmanager
def pad_mask_context(norms, pad_mask: Optional[torch.Tensor]):
    """Make ``norms`` (an iterable of modules, or a model: all of its norms) use ``pad_mask``
    (``B x T``, True = padding) while a forward that calls them as ``norm(x)`` runs.

    This lets the model subclasses reuse fairseq's layer ``forward`` unchanged instead
    of copying it just to thread the mask through, and does the same for any model whose
    LayerNorms :func:`~pn_fairseq.norms.replace_norms` replaced.
    """
    if isinstance(norms, nn.Module):
        norms = norms.modules()
    norms = [n for n in norms if isinstance(n, NormBase)]
    for n in norms:
        n.context_pad_mask = pad_mask
    try:
        yield
    finally:
        for n in norms:
            n.context_pad_mask = None
