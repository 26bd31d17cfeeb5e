"""``--log-norm-stats`` and the divergence stop, wired into fairseq's own machinery.

* Statistics go through fairseq's metrics (``metrics.log_scalar`` / ``log_custom``), so they
  appear in the JSON log lines at ``--log-interval`` and in TensorBoard with
  ``--tensorboard-logdir``, as ``ns.<layer>.<stat>_mean`` and ``ns.<layer>.<stat>_max`` (mean
  and max over the interval: the papers' point is the outliers). Values stay tensors until
  fairseq formats a log line, so logging adds no host synchronisation per step.
* Layers are named ``enc<i>.attn`` / ``enc<i>.ffn`` / ``enc.final`` and ``dec<i>.attn`` /
  ``dec<i>.cross`` / ``dec<i>.ffn`` / ``dec.final``.
* Divergence: before each training step (fairseq's ``set_num_updates`` hook) the finiteness
  flags the norms left during the previous step are checked in one synchronisation; the first
  non-finite running statistic stops training with one line naming the layer, the statistic
  and the update.
"""
import re
from typing import Dict

import torch
from fairseq.logging import meters, metrics

from ..errors import PNUserError
from ..norms import NormBase

_SUBLAYER = {"self_attn_layer_norm": "attn", "encoder_attn_layer_norm": "cross", "final_layer_norm": "ffn"}


class NormStatMaxMeter(meters.Meter):
    """The largest value logged in the interval (tensor or float)."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.max = None

    def update(self, val):
        self.max = val if self.max is None else torch.maximum(torch.as_tensor(self.max), torch.as_tensor(val))

    def state_dict(self):
        return {"max": self.max}

    def load_state_dict(self, state_dict):
        self.max = state_dict["max"]

    @property
    def smoothed_value(self):
        return self.max


# fairseq restores the meters saved in a checkpoint by looking their class names up in its
# meters module; a resumed run must find this one there.
meters.NormStatMaxMeter = NormStatMaxMeter


class NormDivergence(PNUserError):
    """A norm's running statistic stopped being finite: training diverged."""


def short_name(module_path: str) -> str:
    """``encoder.layers.3.final_layer_norm`` -> ``enc3.ffn``; ``decoder.layer_norm`` -> ``dec.final``."""
    m = re.fullmatch(r"(encoder|decoder)\.layers\.(\d+)\.(\w+)", module_path)
    if m:
        return f"{m.group(1)[:3]}{m.group(2)}.{_SUBLAYER.get(m.group(3), m.group(3))}"
    m = re.fullmatch(r"(encoder|decoder)\.layer_norm", module_path)
    return f"{m.group(1)[:3]}.final" if m else module_path


def log_to_fairseq_metrics(norm: NormBase, stat: str, value: torch.Tensor):
    key = f"ns.{norm.stats_name}.{stat}"
    metrics.log_scalar(key + "_mean", value, weight=1, priority=900)
    metrics.log_custom(NormStatMaxMeter, key + "_max", value, priority=900)


def attach(model: torch.nn.Module, log_stats: bool) -> Dict[str, NormBase]:
    """Name every batch-statistics norm of ``model``; with ``log_stats``, log its statistics."""
    norms = {}
    for path, module in model.named_modules():
        if isinstance(module, NormBase):
            module.stats_name = short_name(path)
            module.stats_sink = log_to_fairseq_metrics if log_stats else None
            norms[path] = module
    return norms


def check_finite(norms: Dict[str, NormBase], update: int):
    """Raise :class:`NormDivergence` for the first non-finite statistic the norms recorded."""
    pending = [(path, name, flag) for path, norm in norms.items() for name, flag in norm.pop_finite_flags()]
    if not pending or bool(torch.stack([flag for _, _, flag in pending]).all()):
        return
    path, name, _ = next(p for p in pending if not bool(p[2]))
    raise NormDivergence(
        f"training diverged at update {update}: {name} of the norm {short_name(path)} ({path}) is no longer finite. "
        "Rerun with --log-norm-stats and plot the statistics that led there with 'pn-analyze stats RUN_DIR'; "
        "a lower --lr, longer warm-up or --clip-norm may keep the run stable")
