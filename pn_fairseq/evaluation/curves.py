"""Validation curves (e.g. valid loss against updates) of fairseq-train runs: read and drawn;
the BLEU-per-row figure (:func:`plot_bleu_per_row`, its numbers from
:func:`pn_fairseq.evaluation.results.bleu_per_row`); for language models, test perplexity per row
(:func:`ppl_figure`) and validation perplexity against updates (:func:`valid_ppl_figure`), their
numbers from :mod:`pn_fairseq.evaluation.lm_tables`; for masked LMs, validation loss against updates
(:func:`valid_mlm_figure`, the Pre-LN paper's Figure 5(a)), its numbers from
:mod:`pn_fairseq.evaluation.mlm_tables`.

The library of ``pn-plot`` (:mod:`pn_fairseq.cli.plot`).

Reads what ``fairseq-train`` logs at each validation, from the log the row scripts tee to
``<run_dir>/train.log``. Both of fairseq's non-interactive log formats are understood:

* ``--log-format json``:
  ``... | INFO | valid | {"epoch": 1, "valid_loss": "5.123", ..., "valid_num_updates": "100"}``
  (keys carry the subset as prefix; values are usually strings)
* ``--log-format simple``:
  ``... | INFO | valid | epoch 001 | valid on 'valid' subset | loss 5.123 | ... | num_updates 100``
"""
import json
import os
import re

from pn_common.atomic import atomic_output
from pn_fairseq.evaluation.figures import bleu_axis, row_color, styles

_SIMPLE_VALID_RE = re.compile(r"\| epoch \d+ \| valid on '([^']+)' subset \| (.*)$")


class LogError(ValueError):
    """A log has no usable validation lines; the message names the file."""


def _json_stats(line):
    start = line.find("{")
    if start < 0:
        return None
    try:
        stats = json.loads(line[start:])
    except ValueError:
        return None
    return stats if isinstance(stats, dict) else None


def _simple_stats(line, subset):
    match = _SIMPLE_VALID_RE.search(line)
    if match is None or match.group(1) != subset:
        return None
    stats = {}
    for field in match.group(2).split(" | "):
        key, _, value = field.strip().partition(" ")
        if key and value:
            stats[f"{subset}_{key}"] = value.strip()
    return stats


def parse_validation_log(path, metric="valid_loss", subset="valid"):
    """Sorted ``(updates, value)`` points of ``metric`` from the validations in a train log.

    ``metric`` may be given with or without the subset prefix (``valid_loss`` or ``loss``).
    When a resumed run logs the same update twice, the later line wins.
    """
    prefix = subset + "_"
    key = metric if metric.startswith(prefix) else prefix + metric
    updates_key = prefix + "num_updates"
    points = {}
    validations = 0
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            stats = _json_stats(line) or _simple_stats(line, subset)
            if not stats or updates_key not in stats:
                continue  # training progress, end-of-epoch train stats, other subsets
            validations += 1
            if key not in stats:
                continue
            points[int(float(stats[updates_key]))] = float(stats[key])
    if not points:
        if validations:
            raise LogError(f"{path}: {validations} validation line(s) for '{subset}', but none has '{key}'")
        raise LogError(f"{path}: no validation lines for subset '{subset}' "
                       "(expected fairseq-train output with --log-format json or simple)")
    return sorted(points.items())


def run_log_path(directory_or_file, name):
    """Run ``name``'s log: its directory's ``train.log`` (what the row scripts tee), or the file given."""
    path = directory_or_file
    if os.path.isdir(path):
        path = os.path.join(path, "train.log")
    if not os.path.isfile(path):
        raise LogError(f"{path}: no such file (run '{name}')")
    return path


def _save(fig, output):
    with atomic_output(output) as tmp:
        fig.savefig(tmp, format="png")


def runs_figure(curves, metric, title=None, rows=None):
    """The figure of ``curves`` ({name: [(updates, value), ...]}), each run in its row's colour
    (``rows``: {name: row} where known, else the row is read from the name; see
    :mod:`pn_fairseq.evaluation.figures`)."""
    # Figure + Agg canvas directly: no pyplot, so no display backend and no global state.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    style = styles(list(curves), rows)
    for name, points in curves.items():
        xs, ys = zip(*points)
        marker = style[name]["marker"] or ("o" if len(xs) <= 30 else None)
        ax.plot(xs, ys, color=style[name]["color"], marker=marker, markersize=3, label=name)
    ax.set_xlabel("updates")
    ax.set_ylabel(metric)
    if "bleu" in metric.lower():
        bleu_axis(ax)
    ax.grid(True, alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_runs(curves, output, metric, title=None, rows=None):
    """Draw :func:`runs_figure` into the PNG ``output``, atomically."""
    _save(runs_figure(curves, metric, title, rows), output)


def bleu_figure(per_dataset, title=None):
    """BLEU per row, one panel per dataset: each seed a point in its row's colour, the mean a bar
    with its 95% interval; the BLEU axis starts at 0.

    ``per_dataset``: :func:`pn_fairseq.evaluation.results.bleu_per_row`. With one seed there is no interval
    (the row shows its single point and the mean bar on it); a row with unfinished or missing
    seeds is labelled ``(partial)``.
    """
    return per_row_figure(per_dataset, "bleus", "test BLEU (points)", title, bleu_axis, legend_at="lower right")


def ppl_figure(per_dataset, title=None):
    """Test perplexity per row, drawn as :func:`bleu_figure` draws BLEU (each seed a point, the mean
    a bar with its 95% interval over seeds); lower is better.

    ``per_dataset``: :func:`pn_fairseq.evaluation.lm_tables.ppl_per_row`.
    """
    return per_row_figure(per_dataset, "ppls", "test perplexity (lower is better)", title)


def per_row_figure(per_dataset, key, ylabel, title=None, axis=None, legend_at="best"):
    """One panel per dataset, a column per row: ``entry[key]`` (one value per seed) as points in
    the row's colour, ``entry["mean"]`` a black bar, ``entry["ci95"]`` (or None) its error bar.
    ``axis``: called with each panel's axes after drawing (e.g. :func:`bleu_axis`)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not per_dataset:
        raise LogError("no finished runs to plot")
    n = len(per_dataset)
    width = max(4.0, 1.2 * max(len(rows) for rows in per_dataset.values()) + 1.5)
    fig = Figure(figsize=(width * n, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    for k, (dataset, rows) in enumerate(per_dataset.items()):
        ax = fig.add_subplot(1, n, k + 1)
        ci_labelled = False  # the legend's CI entry goes on the first bar drawn, not on column 0
        for x, entry in enumerate(rows):
            values = entry[key]
            offsets = [0.0] if len(values) == 1 else [-0.15 + 0.3 * i / (len(values) - 1) for i in range(len(values))]
            ax.scatter([x + o for o in offsets], values, s=22, color=row_color(entry["row"]),
                       alpha=0.8, zorder=5, label="seed (row's colour)" if x == 0 else None)
            ci = entry["ci95"]
            if ci is not None:
                ax.errorbar([x], [entry["mean"]], yerr=[[entry["mean"] - ci[0]], [ci[1] - entry["mean"]]],
                            fmt="none", ecolor="black", capsize=6, zorder=2,
                            label=None if ci_labelled else "95% CI of the mean")
                ci_labelled = True
            ax.hlines(entry["mean"], x - 0.25, x + 0.25, colors="black", linewidth=2, zorder=4,
                      label="mean" if x == 0 else None)
        ax.set_xticks(range(len(rows)))
        ax.set_xticklabels([e["row"] + ("" if e["complete"] else "\n(partial)") + f"\nn={len(e[key])}"
                            for e in rows])
        ax.set_xlim(-0.6, len(rows) - 0.4)
        ax.set_ylabel(ylabel)
        if axis is not None:
            axis(ax)
        ax.set_title(f"{title}: {dataset}" if title else dataset)
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(fontsize="small", loc=legend_at)
    fig.tight_layout()
    return fig


def valid_ppl_figure(per_dataset, title=None):
    """Validation perplexity against updates, one panel per dataset and one line per row: the
    mean over seeds, a min-max band behind it, an open marker where fewer seeds than the row's
    validated. Log-scaled perplexity axis: ln(perplexity) is the loss, so equal gaps are equal
    loss differences and the first validations' large values do not flatten the rest.

    ``per_dataset``: :func:`pn_fairseq.evaluation.lm_tables.valid_curves`.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    if not per_dataset:
        raise LogError("no validation perplexity to plot (no results-lm.json with validations)")
    n = len(per_dataset)
    fig = Figure(figsize=(7 * n, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    for k, (dataset, lines) in enumerate(per_dataset.items()):
        ax = fig.add_subplot(1, n, k + 1)
        for line in lines:
            color = row_color(line["row"])
            seeds = len(line["seeds"])
            label = line["row"] + (f" (mean of {seeds} seeds, min-max band)" if seeds > 1 else " (1 seed)")
            ax.fill_between(line["updates"], line["lo"], line["hi"], color=color, alpha=0.2, lw=0)
            ax.plot(line["updates"], line["mean"], color=color, marker="o", ms=3, label=label)
            partial = [(u, m) for u, m, c in zip(line["updates"], line["mean"], line["n"]) if c < seeds]
            if partial:
                ax.scatter(*zip(*partial), s=30, facecolors="white", edgecolors=color, zorder=3)
        ax.set_yscale("log")
        plain = FuncFormatter(lambda value, _: f"{value:g}")  # 60, not 6 x 10^1
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(plain)
        ax.set_xlabel("updates")
        ax.set_ylabel("validation perplexity (lower is better, log scale)")
        ax.set_title(f"{title}: {dataset}" if title else dataset)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def valid_mlm_figure(per_dataset, title=None):
    """Validation masked-LM loss (nats) against updates, as the Pre-LN paper's Figure 5(a): one
    panel per dataset, one line per row (the mean over seeds, a min-max band behind it), a dashed
    horizontal line at the reference row's final loss, a star on it where each row gets there (the
    mean over its seeds of the interpolated update) and a cross at the last point of a seed's curve
    where it diverged. Linear axes: the paper's.

    ``per_dataset``: :func:`pn_fairseq.evaluation.mlm_tables.figure_data`.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not per_dataset:
        raise LogError("no validation loss to plot (no results-mlm.json with a finite validation loss)")
    n = len(per_dataset)
    fig = Figure(figsize=(7 * n, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    for k, (dataset, data) in enumerate(per_dataset.items()):
        ax = fig.add_subplot(1, n, k + 1)
        # Rows the palette does not know get hashed colours, which may coincide: markers tell them apart.
        style = styles([line["row"] for line in data["lines"]])
        target = data["target_loss_nats"]
        for line in data["lines"]:
            color, seeds = style[line["row"]]["color"], len(line["seeds"])
            label = line["row"] + (f" (mean of {seeds} seeds, min-max band)" if seeds > 1 else " (1 seed)")
            ax.fill_between(line["updates"], line["min"], line["max"], color=color, alpha=0.2, lw=0)
            ax.plot(line["updates"], line["loss"], color=color, marker=style[line["row"]]["marker"] or "o", ms=3,
                    label=label)
            for values in line["values"]:
                points = [(u, v) for u, v in zip(line["updates"], values) if v is not None]
                if line["diverged_at"] and points:
                    ax.scatter(*points[-1], marker="x", s=60, color=color, zorder=4)
            if target is not None and line["reached_at"] is not None:
                ax.scatter([line["reached_at"]], [target], marker="*", s=140, color=color, edgecolors="black",
                           linewidths=0.5, zorder=5)
        if target is not None:
            ax.axhline(target, color="black", linestyle="--", linewidth=1,
                       label=f"{data['reference']}'s final loss ({target:.3f}); a star where a row reaches it")
        if any(line["diverged_at"] for line in data["lines"]):
            ax.scatter([], [], marker="x", color="grey", label="last validation before a divergence")
        ax.set_xlabel("updates")
        ax.set_ylabel("validation loss (nats per masked token)")
        ax.set_title(f"{title}: {dataset}" if title else dataset)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def plot_bleu_per_row(per_dataset, output, title=None):
    """Draw :func:`bleu_figure` into the PNG ``output``, atomically."""
    _save(bleu_figure(per_dataset, title), output)


def plot_figure(fig, output):
    """Save a figure built here into the PNG ``output``, atomically."""
    _save(fig, output)
