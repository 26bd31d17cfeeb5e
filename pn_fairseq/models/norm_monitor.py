"""``--log-norm-stats`` and the divergence stop, wired into fairseq's own machinery.

* Statistics go through fairseq's metrics (``metrics.log_scalar`` / ``log_custom``), so they
  appear in the JSON log lines at ``--log-interval`` and in TensorBoard with
  ``--tensorboard-logdir``, as ``ns.<layer>.<stat>_mean`` and ``ns.<layer>.<stat>_max`` (mean
  and max over the interval: the papers' point is the outliers). Values stay tensors until
  fairseq formats a log line, so logging adds no host synchronisation per step.
* Layers are named ``enc<i>.attn`` / ``enc<i>.ffn`` / ``enc.final`` and ``dec<i>.attn`` /
  ``dec<i>.cross`` / ``dec<i>.ffn`` / ``dec.final``.
* Divergence: under ``--task translation_pn`` the finiteness flags the norms leave travel in
  fairseq's logging outputs, which it all-reduces anyway, and every worker stops at the same
  applied update (``tasks/translation_pn.py``). Under another task, fairseq's
  ``set_num_updates`` hook checks them on each worker before the next step, in one
  synchronisation. Either way one line names the layer, the statistic and the update.
  A non-finite statistic never reaches a buffer (the norms skip it and count it in their
  ``nonfinite_skips`` buffer, logged as ``ns.<layer>.nonfinite_skips``); its flag still
  stops a run whose applied update carried it.
"""
from typing import Dict

import torch
from fairseq.logging import meters, metrics

from ..hooks.errors import NormDivergence  # noqa: F401 (importable from here as before)
from ..norms import NormBase
from ..tasks.step_state import divergence, first_nonfinite, short_name  # noqa: F401 (short_name: importable here as before)



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
    """Raise :class:`NormDivergence` for the first non-finite statistic the norms recorded
    (``--task translation``; ``translation_pn`` checks through its logging outputs). The
    line gives the layer's count of skipped non-finite updates (``nonfinite_skips``) when
    there were any: those never reached a buffer, the value named did or would have."""
    entries = [(path, name, flag) for path, norm in norms.items() for name, flag in norm.pop_finite_flags()]
    where = first_nonfinite(entries)
    if where is not None:
        path = next(p for p, _, flag in entries if not bool(flag))
        skips = int(norms[path].nonfinite_skips)  # one host read, on the way out
        if skips:
            where += f", which skipped {skips} non-finite update{'s' if skips > 1 else ''},"
        raise divergence(update, where)
