"""Normalization statistics logged by ``--log-norm-stats`` (PowerNorm Fig. 2-4).

With that flag, each ``train_inner`` line of a fairseq JSON log carries
``ns.<layer>.<stat>_mean`` and ``ns.<layer>.<stat>_max``: the mean and the maximum of the
statistic over the log interval. ``<layer>`` names a norm, e.g. ``enc0.attn``, ``enc0.ffn``,
``enc.final``, ``dec0.cross``; ``<stat>`` is one of :data:`STATS`. The x-axis is
``num_updates``. ``nonfinite_skips`` says how many of a layer's buffer updates were skipped
because their statistic was not finite (an fp16 overflow the loss scaler then skips).
"""
import statistics

from . import AnalysisError
from .logs import number, train_inner_records

PREFIX = "ns."
AGGREGATES = ("mean", "max")

# stat -> (axis label with units, meaning); the order is the panel order. Units: the norm's
# input x (activations), its square, or the gradient g arriving at the norm's output.
STATS = {
    "mu_dist": ("(1/d)‖μ_B − μ‖ (units of x)", "forward: batch mean vs running mean (BN)"),
    "sigma2_dist": ("(1/d)‖σ²_B − σ²‖ (units of x²)", "forward: batch variance vs running variance (BN)"),
    "psi2_dist": ("(1/d)‖ψ²_B − ψ²‖ (units of x²)", "forward: batch quadratic mean vs running (PN-V, PN)"),
    "g_mu": ("‖mean_M[g]‖ (units of g)", "backward statistic g_μ (BN)"),
    "g_sigma2": ("‖mean_M[g·z]‖ (units of g)", "backward statistic g_σ² (BN)"),
    "g_psi2": ("‖mean_M[g·z]‖ (units of g)", "backward statistic g_ψ² (PN-V)"),
    "nu_update": ("‖ν_t − ν_{t−1}‖ (units of g)", "change of PN's running backward statistic ν"),
    # 1 for an update of a running buffer that was skipped because its statistic was not finite,
    # 0 for one written: _mean is the fraction skipped in the interval, _max whether any was.
    "nonfinite_skips": ("skipped updates (fraction)", "running-buffer updates skipped: non-finite statistic"),
}


def split_key(key):
    """``"ns.enc0.attn.g_mu_max"`` -> ``("enc0.attn", "g_mu", "max")``, or None for other keys."""
    if not key.startswith(PREFIX):
        return None
    layer, _, stat_agg = key[len(PREFIX):].rpartition(".")
    stat, _, agg = stat_agg.rpartition("_")
    if not layer or not stat or agg not in AGGREGATES:
        return None
    return layer, stat, agg


def parse_norm_stats(path):
    """All ``ns.*`` series of one log.

    Returns ``{layer: {stat: {"updates": [u...], "mean": [v...], "max": [v...]}}}`` with the
    three lists aligned and sorted by update (a missing value is None). Raises
    :class:`AnalysisError` when the log has no ``ns.*`` keys.
    """
    points = {}  # (layer, stat) -> {update: {agg: value}}
    lines = 0
    for record in train_inner_records(path):
        lines += 1
        update = int(number(record["num_updates"]))
        for key, value in record.items():
            parts = split_key(key)
            if parts is None:
                continue
            layer, stat, agg = parts
            # A resumed run logs some updates twice: the later line wins.
            points.setdefault((layer, stat), {}).setdefault(update, {})[agg] = number(value)
    if not points:
        seen = f"{lines} train_inner line(s)" if lines else "no train_inner lines"
        raise AnalysisError(f"{path}: no norm statistics (ns.* keys; {seen}): train with --log-norm-stats "
                            "and --log-format json")
    stats = {}
    for (layer, stat), by_update in points.items():
        updates = sorted(by_update)
        series = {"updates": updates}
        for agg in AGGREGATES:
            series[agg] = [by_update[u].get(agg) for u in updates]
        stats.setdefault(layer, {})[stat] = series
    return stats


def layer_order(layer):
    """Sort key: encoder before decoder, by layer index, the final norm last."""
    side = 0 if layer.startswith("enc") else 1
    head, _, sub = layer.partition(".")
    index = head[3:]
    return (side, int(index) if index.isdigit() else 10**6, sub)


def stat_order(stat):
    names = list(STATS)
    return (names.index(stat) if stat in names else len(names), stat)


def select(runs, layer=None, stats=None):
    """Restrict parsed runs to one layer and/or some statistics; check the names exist.

    ``runs``: ``{label: parse_norm_stats(...)}``. Returns ``(runs, stat_names)`` with the
    statistics in panel order.
    """
    present_layers = sorted({name for run in runs.values() for name in run}, key=layer_order)
    if layer is not None and layer not in present_layers:
        raise AnalysisError(f"no layer '{layer}' in the logs (layers: {', '.join(present_layers)})")
    selected = {
        label: {name: series for name, series in run.items() if layer is None or name == layer}
        for label, run in runs.items()
    }
    present_stats = sorted({s for run in selected.values() for by_stat in run.values() for s in by_stat},
                           key=stat_order)
    if stats:
        missing = [s for s in stats if s not in present_stats]
        if missing:
            raise AnalysisError(f"no statistic {', '.join(missing)} in the logs"
                                f"{' for layer ' + layer if layer else ''} (present: {', '.join(present_stats)})")
        present_stats = sorted(set(stats), key=stat_order)
        selected = {
            label: {name: {s: v for s, v in by_stat.items() if s in present_stats} for name, by_stat in run.items()}
            for label, run in selected.items()
        }
    return selected, present_stats


def summarize(series):
    """One-number view of a series: the largest ``_max`` (with its update) and the median ``_mean``."""
    maxima = [(v, u) for u, v in zip(series["updates"], series["max"]) if v is not None]
    means = [v for v in series["mean"] if v is not None]
    top = max(maxima) if maxima else (None, None)
    return {
        "max_of_max": top[0],
        "update_of_max": top[1],
        "median_of_mean": statistics.median(means) if means else None,
        "points": len(series["updates"]),
    }
