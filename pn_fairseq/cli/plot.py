"""``pn-plot``: validation curves (e.g. valid loss against updates) of several runs, or
(``--bleu``) BLEU per row with each seed as a point and the mean with its 95% interval; for
language-model rows (``results-lm.json``), ``--ppl``: test perplexity per row drawn the same way
(lower is better), ``--valid-ppl``: validation perplexity against updates, a line per row (the
mean over seeds, a min-max band); for masked-LM rows (``results-mlm.json``), ``--valid-mlm``:
validation loss against updates as the Pre-LN paper's Figure 5(a), with the reference row's final
loss (``--mlm-reference``) dashed and a marker where each row reaches it.

Reads each run's ``train.log`` (fairseq's json or simple log format): :mod:`pn_fairseq.evaluation.curves`;
``--bleu`` reads results.json files as ``pn-results`` does (:mod:`pn_fairseq.evaluation.results`);
``--ppl`` / ``--valid-ppl`` read results-lm.json files as ``pn-results`` does
(:mod:`pn_fairseq.evaluation.lm_tables`), ``--valid-mlm`` results-mlm.json files
(:mod:`pn_fairseq.evaluation.mlm_tables`); these write the plotted numbers beside the PNG
(``PLOT.json`` for ``PLOT.png``).
"""
import argparse
import json
import os
import sys

from pn_common.atomic import write_text_atomic
from pn_fairseq.cli import quiet_library_logging, seed_list
from pn_fairseq.evaluation import lm_tables, mlm_tables
from pn_fairseq.evaluation.curves import (LogError, parse_validation_log, plot_bleu_per_row, plot_figure, plot_runs,
                                          ppl_figure, run_log_path, valid_mlm_figure, valid_ppl_figure)
from pn_fairseq.evaluation.lm_results import LMResultsError
from pn_fairseq.evaluation.mlm_results import MLMResultsError
from pn_fairseq.evaluation.results import ResultsError, bleu_per_row, collect


def _name_dir(text):
    name, sep, directory = text.partition("=")
    if not sep or not name or not directory:
        raise argparse.ArgumentTypeError(f"expected NAME=DIR, got {text!r}")
    return name, directory


def _recorded_row(directory):
    """The row a run directory's results.json names, or None (no file yet, or unreadable)."""
    try:
        with open(os.path.join(directory, "results.json"), encoding="utf-8") as f:
            row = json.load(f).get("row")
    except (OSError, ValueError, AttributeError):
        return None
    return row if isinstance(row, str) else None


def build_parser():
    parser = argparse.ArgumentParser(
        prog="pn-plot",
        description="Plot a validation metric against updates for several fairseq-train runs.",
    )
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--runs", nargs="+", type=_name_dir, metavar="NAME=DIR",
                      help="legend name and run directory (its train.log is read), or the log file itself")
    what.add_argument("--bleu", nargs="+", metavar="PATH",
                      help="BLEU per row instead: results.json files or directories searched for them "
                      "(seeds of a row are grouped as pn-results does)")
    what.add_argument("--ppl", nargs="+", metavar="PATH",
                      help="test perplexity per row of language-model runs (lower is better): results-lm.json "
                      "files or directories searched for them; the numbers go to PLOT.json beside PLOT.png")
    what.add_argument("--valid-ppl", nargs="+", metavar="PATH",
                      help="validation perplexity against updates of language-model runs, a line per row "
                      "(mean over seeds, min-max band): results-lm.json files or directories; numbers to PLOT.json")
    what.add_argument("--valid-mlm", nargs="+", metavar="PATH",
                      help="validation loss (nats) against updates of masked-LM runs, a line per row, the reference "
                      "row's final loss dashed, a marker where each row reaches it (Pre-LN paper Figure 5(a)): "
                      "results-mlm.json files or directories; numbers to PLOT.json")
    parser.add_argument("--mlm-reference", metavar="ROW",
                        help=f"with --valid-mlm: the row whose final loss is drawn (default: "
                        f"{mlm_tables.DEFAULT_REFERENCE})")
    parser.add_argument("--seeds", type=seed_list, default=(), metavar="1,2,3",
                        help="with --bleu or --ppl: the seeds every row should have; a row without one is drawn "
                        "as partial (default: the seeds any row of the dataset has)")
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
    if args.bleu:
        return _plot_bleu(args)
    if args.ppl or args.valid_ppl:
        return _plot_lm(args)
    if args.valid_mlm:
        return _plot_mlm(args)
    curves, rows = {}, {}
    try:
        for name, directory in args.runs:
            if name in curves:
                raise LogError(f"run name '{name}' given twice")
            log = run_log_path(directory, name)
            curves[name] = points = parse_validation_log(log, args.metric, args.subset)
            # The line's colour: the run's row (results.json, else the name, else the path), as
            # in every other figure (pn_fairseq.evaluation.figures).
            rows[name] = [r for r in (_recorded_row(directory), name, directory) if r]
            print(f"{name}: {len(points)} validations from {log}; last {points[-1][1]:g} "
                  f"at update {points[-1][0]}, min {min(v for _, v in points):g}")
    except LogError as err:
        raise SystemExit(f"pn-plot: error: {err}") from None
    plot_runs(curves, args.output, args.metric, args.title, rows)
    print(f"wrote {args.output}")
    return 0


def _plot_bleu(args):
    try:
        per_dataset = bleu_per_row(collect(args.bleu, seeds=args.seeds))
        for dataset, rows in per_dataset.items():
            for e in rows:
                ci = "" if e["ci95"] is None else f", 95% CI [{e['ci95'][0]:.2f}, {e['ci95'][1]:.2f}]"
                print(f"{dataset} {e['row']}: {len(e['bleus'])} seed(s), mean {e['mean']:.2f}{ci}"
                      + ("" if e["complete"] else " (partial)"))
        plot_bleu_per_row(per_dataset, args.output, args.title)
    except (OSError, ResultsError, LogError) as err:
        raise SystemExit(f"pn-plot: error: {err}") from None
    print(f"wrote {args.output}")
    return 0


def sidecar_path(output):
    """Where the plotted numbers of ``output`` (a PNG) go: ``PLOT.json`` beside ``PLOT.png``."""
    return os.path.splitext(output)[0] + ".json"


def _write_with_sidecar(fig, output, numbers):
    """``fig`` into the PNG ``output`` and ``numbers`` (what it draws) into its :func:`sidecar_path`."""
    plot_figure(fig, output)
    write_text_atomic(sidecar_path(output), json.dumps(numbers, indent=1) + "\n")
    print(f"wrote {output} and {sidecar_path(output)}")


def _plot_lm(args):
    try:
        groups, _ = lm_tables.collect(args.ppl or args.valid_ppl, seeds=args.seeds)
        if args.ppl:
            data = lm_tables.ppl_per_row(groups)
            for dataset, rows in data.items():
                for e in rows:
                    ci = "" if e["ci95"] is None else f", 95% CI [{e['ci95'][0]:.2f}, {e['ci95'][1]:.2f}]"
                    print(f"{dataset} {e['row']}: {len(e['ppls'])} seed(s), mean test perplexity {e['mean']:.2f}{ci}"
                          + ("" if e["complete"] else " (partial)"))
            fig = ppl_figure(data, args.title)
        else:
            data = lm_tables.valid_curves(groups)
            for dataset, lines in data.items():
                for line in lines:
                    print(f"{dataset} {line['row']}: {len(line['seeds'])} seed(s), {len(line['updates'])} validations, "
                          f"last mean validation perplexity {line['mean'][-1]:.2f} at update {line['updates'][-1]}")
            fig = valid_ppl_figure(data, args.title)
    except (OSError, LMResultsError, LogError) as err:
        raise SystemExit(f"pn-plot: error: {err}") from None
    what = "test perplexity per row" if args.ppl else "validation perplexity against updates"
    _write_with_sidecar(fig, args.output, {"plot": what, "lower_is_better": True, "datasets": data})
    return 0


def _plot_mlm(args):
    reference = args.mlm_reference or mlm_tables.DEFAULT_REFERENCE
    try:
        groups, _ = mlm_tables.collect(args.valid_mlm)
        rows = sorted({row for row, _ in groups})
        if args.mlm_reference is not None and args.mlm_reference not in rows:
            raise MLMResultsError(f"--mlm-reference: no results-mlm.json of row '{args.mlm_reference}' under "
                                  f"{' '.join(args.valid_mlm)} (rows there: {', '.join(rows) or 'none'})")
        reports = mlm_tables.reach_all(groups, reference)
        data = mlm_tables.figure_data(groups, reports)
        for dataset, entry in data.items():
            for note in reports[dataset]["notes"]:
                print(f"{dataset}: note: {note}")
            for line in entry["lines"]:
                reached = "" if line["reached_at"] is None else \
                    f", reaches {reference}'s final loss at update {line['reached_at']:.0f}"
                print(f"{dataset} {line['row']}: {len(line['seeds'])} seed(s), {len(line['updates'])} validations, "
                      f"last mean validation loss {line['loss'][-1]:.3f} at update {line['updates'][-1]}{reached}")
        fig = valid_mlm_figure(data, args.title)
    except (OSError, MLMResultsError, LogError) as err:
        raise SystemExit(f"pn-plot: error: {err}") from None
    _write_with_sidecar(fig, args.output, {"plot": "validation masked-LM loss against updates",
                                           "unit": "nats per masked token", "lower_is_better": True,
                                           "reference": reference, "datasets": data})
    return 0


if __name__ == "__main__":
    sys.exit(main())
