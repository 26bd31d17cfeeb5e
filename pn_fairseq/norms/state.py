"""Contexts that tell the batch-statistics norms about the training step they run in.

* :func:`loss_scale_context`: the factor the incoming gradients carry (fairseq's dynamic loss
  scale). PN keeps ``nu`` and every logged gradient statistic in true-gradient units.
* :func:`recompute_context`: activation checkpointing runs a layer's forward twice, once
  without autograd (``torch.no_grad``) and again inside the backward to rebuild the graph.
  The second run must normalize exactly as the first did and move nothing: each norm keeps
  the state it had before the first run, is put back to it for the recomputation, and ends
  where the first run left it.
"""
import contextlib
from typing import Iterable, List

import torch
import torch.nn as nn

from .base import NormBase


def _norms(modules) -> List[NormBase]:
    if isinstance(modules, nn.Module):
        modules = modules.modules()
    return [m for m in modules if isinstance(m, NormBase)]


@contextlib.contextmanager
def loss_scale_context(norms, scale: float):
    """Gradients reaching ``norms`` (modules, or a model: all of its norms) inside this context
    are ``scale`` times the true ones (``torch.amp.GradScaler.get_scale()`` in a plain loop);
    the forward and the backward of the step must both run inside it."""
    norms = _norms(norms)
    for n in norms:
        n.loss_scale = float(scale)
    try:
        yield
    finally:
        for n in norms:
            n.loss_scale = 1.0


def checkpoint_phase(layer: nn.Module):
    """``"record"``, ``"replay"`` or None for a call of ``layer``'s forward.

    fairseq's ``checkpoint_wrapper`` marks a wrapped layer with ``precheckpoint_forward`` and
    runs its forward first under ``torch.no_grad`` and then, inside the backward, with grad
    enabled (``fairseq/modules/checkpoint_activations.py``)."""
    if not layer.training or not hasattr(layer, "precheckpoint_forward"):
        return None
    return "replay" if torch.is_grad_enabled() else "record"


@contextlib.contextmanager
def recompute_context(norms: Iterable[nn.Module], phase):
    """Run the forward of a checkpointed layer whose norms are ``norms`` in ``phase``
    (see :func:`checkpoint_phase`)."""
    norms = _norms(norms)
    if phase == "record":
        for n in norms:
            n._before_forward = n.capture_state()
        yield
        return
    if phase != "replay" or any(getattr(n, "_before_forward", None) is None for n in norms):
        yield
        return
    after = [n.capture_state() for n in norms]
    for n in norms:
        n.restore_state(n._before_forward)
        n.replaying = True
    try:
        yield
    finally:
        for n, state in zip(norms, after):
            n.replaying = False
            n.restore_state(state)
            n._before_forward = None
