"""``pn-plot``: validation curves (e.g. valid loss against updates) of several runs.

Reads what ``fairseq-train`` logs at each validation, from the log the row scripts tee to
``<run_dir>/train.log``. Both of fairseq's non-interactive log formats are understood:

* ``--log-format json``:
  ``... | INFO | valid | {"epoch": 1, "valid_loss": "5.123", ..., "valid_num_updates": "100"}``
  (keys carry the subset as prefix; values are usually strings)
* ``--log-format simple``:
  ``... | INFO | valid | epoch 001 | valid on 'valid' subset | loss 5.123 | ... | num_updates 100``
"""
import argparse
import json
import os
import re
import sys

from pn_fairseq.cli import atomic_output, quiet_library_logging

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


def _run_log(directory_or_file):
    if os.path.isdir(directory_or_file):
        return os.path.join(directory_or_file, "train.log")
    return directory_or_file


def plot_runs(curves, output, metric, title=None):
    """Draw ``curves`` ({name: [(updates, value), ...]}) into the PNG ``output``, atomically."""
    # Figure + Agg canvas directly: no pyplot, so no display backend and no global state.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for name, points in curves.items():
        xs, ys = zip(*points)
        ax.plot(xs, ys, marker="o" if len(xs) <= 30 else None, markersize=3, label=name)
    ax.set_xlabel("updates")
    ax.set_ylabel(metric)
    ax.grid(True, alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title)
    fig.tight_layout()
    with atomic_output(output) as tmp:
        fig.savefig(tmp, format="png")


def _name_dir(text):
    name, sep, directory = text.partition("=")
    if not sep or not name or not directory:
        raise argparse.ArgumentTypeError(f"expected NAME=DIR, got {text!r}")
    return name, directory


def build_parser():
    parser = argparse.ArgumentParser(
        prog="pn-plot",
        description="Plot a validation metric against updates for several fairseq-train runs.",
    )
    parser.add_argument("--runs", required=True, nargs="+", type=_name_dir, metavar="NAME=DIR",
                        help="legend name and run directory (its train.log is read), or the log file itself")
    parser.add_argument("--output", required=True, metavar="PLOT.png", help="PNG to write (atomically)")
    parser.add_argument("--metric", default="valid_loss",
                        help="validation statistic to plot, e.g. valid_loss, valid_nll_loss, valid_ppl "
                        "(default: %(default)s)")
    parser.add_argument("--subset", default="valid", help="validation subset name (default: %(default)s)")
    parser.add_argument("--title", help="plot title")
    return parser


def main(argv=None):
    quiet_library_logging()
    args = build_parser().parse_args(argv)
    curves = {}
    try:
        for name, directory in args.runs:
            if name in curves:
                raise LogError(f"run name '{name}' given twice")
            log = _run_log(directory)
            if not os.path.isfile(log):
                raise LogError(f"{log}: no such file (run '{name}')")
            curves[name] = points = parse_validation_log(log, args.metric, args.subset)
            print(f"{name}: {len(points)} validations from {log}; last {points[-1][1]:g} "
                  f"at update {points[-1][0]}, min {min(v for _, v in points):g}")
    except LogError as err:
        raise SystemExit(f"pn-plot: error: {err}") from None
    plot_runs(curves, args.output, args.metric, args.title)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
