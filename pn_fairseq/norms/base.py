"""Shared plumbing of the normalization layers: shapes, masks, float32 statistics.

Every norm takes ``x: T x B x C`` (fairseq's time-major layout) with an optional
``pad_mask: B x T`` (bool, True at padding), or ``x: N x C`` without a mask. Internally
the layers work on the flattened ``N x C`` view (``N = T * B``, row ``t * B + b``) with a
``keep: N`` bool vector (True = a real token).
"""
import contextlib
from typing import Iterable, Optional, Tuple

import torch
import torch.nn as nn

_LOW_PRECISION = (torch.float16, torch.bfloat16)


def stat_dtype(x: torch.Tensor) -> torch.dtype:
    """Statistics are accumulated in float32 (float64 stays float64 for exact tests):
    x**2 overflows fp16 above |x| = 256."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def flatten(x: torch.Tensor, pad_mask: Optional[torch.Tensor]) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """``x: T x B x C`` or ``N x C`` -> (``x2d: N x C``, ``keep: N`` bool or None).

    ``keep`` is None when there is no padding at all, so callers can use the cheaper
    unmasked reductions.
    """
    if x.dim() == 3:
        T, B, C = x.shape
        x2d = x.reshape(T * B, C)
        if pad_mask is None:
            return x2d, None
        if pad_mask.shape != (B, T):
            raise ValueError(
                f"pad_mask must be B x T = {B} x {T} for x of shape T x B x C = {tuple(x.shape)}, "
                f"got {tuple(pad_mask.shape)}"
            )
        keep = ~pad_mask.to(torch.bool).t().reshape(T * B)
    elif x.dim() == 2:
        if pad_mask is not None:
            raise ValueError("pad_mask is only accepted with x of shape T x B x C, not N x C")
        return x, None
    else:
        raise ValueError(f"expected x of shape T x B x C or N x C, got {tuple(x.shape)}")
    # One host sync per call (the count), shared by both checks below.
    n = int(keep.sum())
    if n == keep.numel():
        return x2d, None
    if n == 0:
        raise ValueError("pad_mask marks every position as padding: no statistics can be taken")
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


def num_kept(x2d: torch.Tensor, keep: Optional[torch.Tensor]) -> int:
    return x2d.shape[0] if keep is None else int(keep.sum())


class NormBase(nn.Module):
    """Base of the batch-statistics norms.

    * ``forward(x, pad_mask=None)``; when called without a mask (fairseq's layers call
      their norms as ``norm(x)``), the mask set by :func:`pad_mask_context` is used.
    * Floating buffers (running statistics) stay float32 under ``model.half()`` /
      ``.bfloat16()``: fairseq's ``--fp16`` casts whole models, and a fp16 running
      quadratic mean would overflow or lose the small EMA increments.
    """

    context_pad_mask: Optional[torch.Tensor] = None

    def resolve_mask(self, pad_mask: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        return self.context_pad_mask if pad_mask is None else pad_mask

    def _apply(self, fn, recurse=True):
        super()._apply(fn, recurse)
        for name, buf in self._buffers.items():
            if buf is not None and buf.dtype in _LOW_PRECISION:
                self._buffers[name] = buf.float()
        return self


@contextlib.contextmanager
def pad_mask_context(norms: Iterable[nn.Module], pad_mask: Optional[torch.Tensor]):
    """Make ``norms`` use ``pad_mask`` (``B x T``) while fairseq's own forward calls them.

    This lets the model subclasses reuse fairseq's layer ``forward`` unchanged instead
    of copying it just to thread the mask through.
    """
    norms = [n for n in norms if isinstance(n, NormBase)]
    for n in norms:
        n.context_pad_mask = pad_mask
    try:
        yield
    finally:
        for n in norms:
            n.context_pad_mask = None
