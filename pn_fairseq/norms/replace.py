"""Swap the LayerNorms of any PyTorch model for a norm of this package, in one call:
``replace_norms(model, "power", batch_first=True, warmup_updates=4000)``.

Nothing here imports fairseq: the norms are a plain PyTorch library. Batch-statistics norms
need the padding mask of each forward; a model that calls its norms as ``norm(x)`` gets it
through :func:`~pn_fairseq.norms.pad_mask_context`::

    with pad_mask_context(model, pad_mask):  # B x T, True = padding
        out = model(x, src_key_padding_mask=pad_mask)
"""
import re
from typing import Callable, List, Optional, Union

import torch
import torch.nn as nn

from .registry import build_norm

Select = Union[None, str, Callable[[str], bool]]


def _selected(select: Select, name: str) -> bool:
    if select is None:
        return True
    if isinstance(select, str):
        return re.search(select, name) is not None
    return bool(select(name))


def _check_shape(name: str, ln: nn.LayerNorm, norm: str):
    if len(ln.normalized_shape) != 1:
        raise ValueError(
            f"cannot replace {name} by {norm!r}: it normalizes over {tuple(ln.normalized_shape)}, the norms here over "
            "one (the last) dimension of C channels; leave it out with select=")
    if ln.weight is None:
        raise ValueError(
            f"cannot replace {name} by {norm!r}: it has no gamma/beta (elementwise_affine=False) to keep, and the "
            "norms here learn theirs (new parameters no optimizer built before knows); leave it out with select=")


def _no_fast_path(module, args):
    """A no-op forward pre-hook: a hook on an ``nn.TransformerEncoderLayer`` is one of the
    conditions that keep torch off its fused inference path."""
    return None


def _keep_modules_called(model: nn.Module, replaced: set):
    """Turn off torch's fused Transformer encoder paths (eval mode, no grad) wherever a replaced
    norm sits in them: they compute LayerNorm themselves from ``norm1.weight`` / ``norm2.weight``
    (or fail on ``norm1.eps``, which DyT lacks) instead of calling the modules."""
    for m in model.modules():
        if isinstance(m, nn.TransformerEncoderLayer) and replaced & {id(c) for c in m.children()}:
            # torch reads this flag only to choose the fast path, and before norm1.eps; the hook
            # is the documented condition, kept in case a later torch reorders its checks.
            m.activation_relu_or_gelu = 0
            if _no_fast_path not in m._forward_pre_hooks.values():
                m.register_forward_pre_hook(_no_fast_path)
        if isinstance(m, nn.TransformerEncoder) and replaced & {id(c) for c in m.modules()}:
            m.use_nested_tensor = False


def replace_norms(module: nn.Module, name: str, select: Select = None, **options) -> List[str]:
    """Replace every ``nn.LayerNorm`` of ``module`` (or those whose qualified name ``select``
    picks: a regular expression searched in the name, or a callable on it) by
    ``build_norm(name, C, **options)`` (``batch_first=True`` for ``B x T x C`` activations).

    Each new norm keeps the LayerNorm's gamma/beta (copied into its ``weight`` / ``bias``
    where it has them: ScaleNorm has one scalar gain instead and RMSNorm a bias only with
    ``bias=True``), its device, dtype and train/eval mode. A LayerNorm reached under several
    names becomes one norm at all of them. Build the optimizer afterwards: the parameters are
    new objects. Refuses, in one line and before changing anything, a LayerNorm the norm
    cannot take (several normalized dimensions, no affine parameters, a channel count the
    options do not divide, e.g. ``groups``), and a call that selects none.

    Returns the qualified names of the replaced modules.
    """
    targets = {}  # id(LayerNorm) -> (LayerNorm, [(parent, attribute, qualified name)])
    for parent_name, parent in module.named_modules(remove_duplicate=False):
        for attr, child in parent._modules.items():  # named_children() would hide a second name
            qualified = f"{parent_name}.{attr}" if parent_name else attr
            if isinstance(child, nn.LayerNorm) and _selected(select, qualified):
                targets.setdefault(id(child), (child, []))[1].append((parent, attr, qualified))
    if not targets:
        what = "nn.LayerNorm" + (" selected by select=" if select is not None else "")
        raise ValueError(f"replace_norms found no {what} in this {type(module).__name__}")

    built = {}
    for key, (ln, places) in targets.items():
        where = places[0][2]
        _check_shape(where, ln, name)
        channels = int(ln.normalized_shape[0])
        try:
            new = build_norm(name, channels, **options)
        except ValueError as e:
            raise ValueError(f"cannot replace {where} ({channels} channels) by {name!r}: {e}") from None
        new = new.to(device=ln.weight.device, dtype=ln.weight.dtype).train(ln.training)
        with torch.no_grad():  # after the cast: a float64 gamma copied into float32 would be rounded
            for param in ("weight", "bias"):
                old, mine = getattr(ln, param, None), getattr(new, param, None)
                if isinstance(old, torch.Tensor) and isinstance(mine, nn.Parameter) and mine.shape == old.shape:
                    mine.copy_(old)
        built[key] = new

    names = []
    for key, (_, places) in targets.items():
        for parent, attr, qualified in places:
            setattr(parent, attr, built[key])
            names.append(qualified)
    _keep_modules_called(module, {id(m) for m in built.values()})
    return names
