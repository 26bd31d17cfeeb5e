"""Figures of the analyses: each ``plot_*`` takes what the computing module returned and
returns a matplotlib ``Figure`` (no pyplot, so no display and no global state).

Colours come from :mod:`pn_fairseq.evaluation.figures`: a run's colour is its row's in every figure
(not its position in the list), and BLEU axes start at 0.
"""
import math
import textwrap

from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from pn_fairseq.evaluation.figures import bleu_axis, shade, styles

from .norm_stats import STATS, layer_order


def _grid(n, ncols=2, size=(6.0, 3.8)):
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(size[0] * ncols, size[1] * nrows + 0.6), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def _wrap(title, inches, fontsize=12):
    # Long titles name several runs; wrap them rather than clip them at the figure's edges.
    return textwrap.fill(title, width=max(40, int(inches * 130 / fontsize)))


def _log_if_positive(ax, values):
    values = [v for v in values if v is not None]
    if values and min(values) > 0 and max(values) / min(values) > 20:
        ax.set_yscale("log")


def plot_norm_stats(runs, stat_names, title):
    """One panel per statistic, one colour per (run, layer): ``_max`` solid, ``_mean`` dashed.
    A run's layers are shades of its row's colour (darker = nearer the input).

    ``runs``: ``{label: {layer: {stat: {"updates", "mean", "max"}}}}`` (see
    :func:`pn_fairseq.analysis.norm_stats.parse_norm_stats`).
    """
    fig, axes = _grid(len(stat_names))
    run_style = styles(list(runs))
    # one colour per (run, layer), the same in every panel
    pairs = []
    for run, layers in runs.items():
        ordered = sorted(layers, key=layer_order)
        pairs += [(run, layer, shade(run_style[run]["color"], k, len(ordered))) for k, layer in enumerate(ordered)]
    for ax, stat in zip(axes, stat_names):
        label, meaning = STATS.get(stat, (stat, ""))
        values, handles = [], []
        for run, layer, color in pairs:
            series = runs[run][layer].get(stat)
            if series is None:
                continue
            marker = run_style[run]["marker"]
            ax.plot(series["updates"], series["max"], color=color, lw=1.2, marker=marker, ms=3)
            ax.plot(series["updates"], series["mean"], color=color, lw=1.0, ls="--", marker=marker, ms=3)
            values += series["max"] + series["mean"]
            handles.append(Line2D([], [], color=color, marker=marker, label=f"{run} {layer}"))
        handles += [Line2D([], [], color="k", lw=1.2, label="max over log interval"),
                    Line2D([], [], color="k", lw=1.0, ls="--", label="mean over log interval")]
        _log_if_positive(ax, values)
        ax.set_title(f"{stat}: {meaning}", fontsize=10)
        ax.set_xlabel("training update (optimizer steps)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(handles=handles, fontsize=7, ncol=2 if len(handles) > 8 else 1)
    fig.suptitle(_wrap(title, fig.get_figwidth()))
    return fig


def plot_grad_norms(result, title):
    """Pre-LN paper Fig. 3: ``‖E[∇W]‖_F`` of W1/W2 per layer (encoder, decoder), one line per
    architecture with ±1 std over seeds; with depths, the last layer's W2 against depth.

    ``result``: :func:`pn_fairseq.analysis.grad_norms.measure`'s return value.
    """
    archs = result["archs"]
    depths = result.get("depths") or {}
    panels = [(side, w) for side in ("encoder", "decoder") for w in ("W1", "W2")]
    n = len(panels) + (2 if depths else 0)
    fig, axes = _grid(n)
    arch_style = styles(list(archs) + [a for a in depths if a not in archs])
    for ax, (side, w) in zip(axes, panels):
        values = []
        for arch, entry in archs.items():
            stat = entry[side][w]
            layers = list(range(1, len(stat["mean"]) + 1))
            ax.errorbar(layers, stat["mean"], yerr=stat["std"], color=arch_style[arch]["color"],
                        marker=arch_style[arch]["marker"] or "o", ms=4,
                        capsize=3, label=arch)
            values += stat["mean"]
        _log_if_positive(ax, values)
        ax.set_title(f"{side} FFN {w} ({'fc1' if w == 'W1' else 'fc2'}.weight)", fontsize=10)
        ax.set_xlabel(f"{side} layer index (1 = nearest the input)")
        ax.set_ylabel(f"‖E[∂L/∂{w}]‖_F (L in nats/token)")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax, side in zip(axes[len(panels):], ("encoder", "decoder")):
        values = []
        for arch, entry in depths.items():
            stat = entry[f"{side}_last_W2"]
            ax.errorbar(entry["depths"], stat["mean"], yerr=stat["std"], color=arch_style[arch]["color"],
                        marker=arch_style[arch]["marker"] or "s", ms=4,
                        capsize=3, label=arch)
            values += stat["mean"]
        _log_if_positive(ax, values)
        ax.set_title(f"last {side} layer's W2 against depth (N-N models)", fontsize=10)
        ax.set_xlabel("number of layers N (encoder = decoder)")
        ax.set_ylabel("‖E[∂L/∂W2]‖_F (L in nats/token)")
        ax.set_xticks(sorted({d for entry in depths.values() for d in entry["depths"]}))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(_wrap(title, fig.get_figwidth()))
    return fig


def plot_embed_svd(result, title):
    """PowerNorm Fig. 6: normalized singular values, sorted, one line per checkpoint."""
    fig = Figure(figsize=(7.5, 4.8), layout="constrained")
    ax = fig.subplots()
    style = styles(list(result["checkpoints"]))
    for label, entry in result["checkpoints"].items():
        values = entry["normalized_singular_values"]
        index = entry["first_below_threshold"]
        where = f"< {result['threshold']:g} from index {index}" if index else f"never < {result['threshold']:g}"
        ax.plot(range(1, len(values) + 1), values, color=style[label]["color"], marker=style[label]["marker"],
                markevery=max(1, len(values) // 12), ms=4, label=f"{label} ({where})")
    ax.axhline(result["threshold"], color="grey", lw=0.8, ls=":")
    ax.set_yscale("log")
    ax.set_xlabel("singular value index (sorted, 1 = largest)")
    ax.set_ylabel("σ_i / σ_1 (dimensionless, log scale)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(_wrap(title, fig.get_figwidth(), 10), fontsize=10)
    return fig


def plot_batch_sweep(result, title):
    """PowerNorm Fig. 5: BLEU against the micro-batch size, one line per row; BLEU from 0. Where
    the runs logged a validation loss at their last update, a second panel shows it."""
    points_have_loss = any(p.get("valid_loss") is not None for entry in result["rows"].values() for p in entry)
    fig = Figure(figsize=(11.5 if points_have_loss else 7.5, 4.8), layout="constrained")
    axes = fig.subplots(1, 2) if points_have_loss else [fig.subplots()]
    style = styles(list(result["rows"]))
    micro = sorted({p["micro_tokens"] for entry in result["rows"].values() for p in entry})
    for ax, key, label in zip(axes, ("bleu", "valid_loss"),
                              ("test BLEU (points)", "validation loss at the last update (base 2)")):
        for row, entry in result["rows"].items():
            points = [(p["micro_tokens"], p.get(key)) for p in entry if p.get(key) is not None]
            if points:
                xs, ys = zip(*points)
                ax.plot(xs, ys, color=style[row]["color"], marker=style[row]["marker"] or "o", label=row)
        ax.set_xscale("log", base=2)
        ax.set_xticks(micro, [str(m) for m in micro])
        ax.set_xlabel(f"micro-batch size (tokens; effective batch {result['total_tokens']} tokens "
                      "via --update-freq)")
        ax.set_ylabel(label)
        if key == "bleu":
            bleu_axis(ax)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(_wrap(title, fig.get_figwidth(), 10), fontsize=10)
    return fig


def plot_loss_curves(curves, title, rows=None):
    """Train (dashed) and validation (solid) loss against updates, one colour per row.

    ``curves``: ``{label: pn_fairseq.analysis.logs.loss_curves(...)}``; ``rows``: ``{label: row}``
    where known (a run's results.json), else the row is read from the label.
    """
    fig = Figure(figsize=(7.5, 4.8), layout="constrained")
    ax = fig.subplots()
    style = styles(list(curves), rows)
    for label, curve in curves.items():
        color, marker = style[label]["color"], style[label]["marker"]
        updates, values = curve["valid_loss"]
        if updates:
            ax.plot(updates, values, color=color, marker=marker or ".", label=f"{label} valid")
        updates, values = curve["train_loss"]
        if updates:
            ax.plot(updates, values, color=color, ls="--", lw=1.0, label=f"{label} train")
    ax.set_xlabel("training update (optimizer steps)")
    ax.set_ylabel("label-smoothed loss (bits per target token)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(_wrap(title, fig.get_figwidth(), 10), fontsize=10)
    return fig
