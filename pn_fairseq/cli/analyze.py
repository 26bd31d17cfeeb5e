"""``pn-analyze``: the papers' evidence on your own runs, one subcommand per analysis.

Only arguments, logging and exit codes live here; the analyses are in
:mod:`pn_fairseq.analysis`. Every subcommand writes ``OUT/<subcommand>.png`` and
``OUT/<subcommand>.json``. Exit status: 0 done, 2 bad input (one line on stderr, no traceback).
"""
import argparse
import logging
import os
import sys
import warnings

from pn_fairseq.analysis import AnalysisError
from pn_fairseq.cli import quiet_library_logging


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump), as the analyses' own errors."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _ints(text):
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def _names(text):
    return [v.strip() for v in text.split(",") if v.strip()]


def build_parser():
    parser = _Parser(prog="pn-analyze", description="Analyses of PowerNorm / Pre-LN runs: figures and numbers.")
    parser.add_argument("-v", "--verbose", action="store_true", help="show fairseq's INFO logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="SUBCOMMAND")

    def add(name, help_text):
        p = sub.add_parser(name, help=help_text, description=help_text, allow_abbrev=False)
        p.add_argument("--out", required=True, metavar="DIR", help=f"writes DIR/{name}.png and DIR/{name}.json")
        return p

    p = add("stats", "batch vs running statistics and backward statistics over training (PowerNorm Fig. 2-4), "
            "from logs of runs trained with --log-norm-stats")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run directory (its train.log) or JSON log file; "
                   "LABEL=RUN names it in the legend")
    p.add_argument("--layer", help="only this norm, e.g. enc0.ffn (default: every layer logged)")
    p.add_argument("--stat", nargs="+", metavar="S", help="only these statistics, e.g. mu_dist g_mu (after the runs)")

    p = add("grad-norms", "gradient norms of the FFN weights at initialization (Pre-LN paper Fig. 3); "
            "other flags (e.g. --encoder-layers 3 --dropout 0) go to fairseq's model/training options")
    p.add_argument("--arch", action="append", required=True, metavar="A",
                   help="transformer_pn architecture, e.g. transformer_postln (repeat for several)")
    p.add_argument("--data", required=True, metavar="DIR", help="fairseq-preprocess output (data-bin/...)")
    p.add_argument("--seeds", type=_ints, default=[1, 2, 3], help="model seeds (default: 1,2,3)")
    p.add_argument("--batches", type=int, default=10, help="training batches averaged (default: 10)")
    p.add_argument("--max-tokens", type=int, default=4096, help="tokens per batch (default: 4096)")
    p.add_argument("--depths", type=_ints, default=[], help="also N-N models of these depths, e.g. 6,8,10,12,14")
    p.add_argument("--after-updates", type=int, default=0, metavar="N",
                   help="take N optimizer updates first (fairseq --optimizer/--lr/--lr-scheduler flags; "
                   "default Adam, lr 5e-4, inverse_sqrt with 4000 warm-up updates)")
    p.add_argument("--cpu", action="store_true", help="stay on the CPU even when CUDA is available")

    p = add("embed-svd", "normalized singular values of checkpoints' embedding matrices (PowerNorm Fig. 6)")
    p.add_argument("checkpoints", nargs="+", metavar="CKPT", help="fairseq checkpoint; LABEL=CKPT names it")
    p.add_argument("--threshold", type=float, default=0.1, help="summary: first index below it (default 0.1)")

    p = add("batch-sweep", "BLEU against the micro-batch size at a fixed effective batch (PowerNorm Fig. 5); "
            "DRY_RUN=1 in the environment prints the commands and runs none")
    p.add_argument("--dataset", required=True, help="configs/<dataset>, e.g. multi30k")
    p.add_argument("--rows", type=_names, required=True, help="comma-separated rows, e.g. preln,bn,pnv,pn")
    p.add_argument("--micro-tokens", type=_ints, default=[512, 1024, 2048, 4096],
                   help="micro-batch sizes in tokens (default: 512,1024,2048,4096)")
    p.add_argument("--total-tokens", type=int, default=4096, help="effective batch in tokens (default: 4096)")
    p.add_argument("--collect-only", action="store_true", help="run nothing: plot the results that exist")

    p = add("epochs", "validation BLEU and loss against the epoch (Pre-LN paper Fig. 2 and 4), from runs "
            "trained with --eval-bleu (the Pre-LN rows)")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run directory (its train.log) or log file, or a row "
                   "directory holding seed<k>/ run directories; LABEL=RUN names it")
    p.add_argument("--layout", choices=("figure2", "figure4", "runs"), default="runs",
                   help="figure2: a panel per optimizer/lr_max, a line per warm-up; figure4: Pre-LN vs Post-LN "
                   "vs RAdam; runs: a line per run (default: %(default)s)")
    p.add_argument("--band", choices=("min-max", "std", "none"), default="min-max",
                   help="the seed<k> runs of one row directory drawn as their mean per epoch with a band: the "
                   "seeds' min-max, or mean +- std (n - 1); none: a line per seed (default: %(default)s). An "
                   "epoch some seeds lack is averaged over those that have it, with an open marker")
    p.add_argument("--from-epoch", type=int, default=None, metavar="N",
                   help="draw epochs N and later only, so that the converged epochs' differences show (the "
                   "first epochs' losses span several bits); writes epochs-fromN.png/.json beside epochs.png")

    p = add("report", "one self-contained HTML page (OUT/report.html) of everything under DIR")
    p.add_argument("dir", metavar="DIR", help="experiment directory (run directories, figures)")
    return parser


def _title_list(labels, limit=6):
    labels = list(labels)
    return ", ".join(labels[:limit]) + (f" (+{len(labels) - limit} more)" if len(labels) > limit else "")


def _write(out, name, fig, data):
    from pn_fairseq.analysis.output import save_figure, write_json

    png, js = os.path.join(out, f"{name}.png"), os.path.join(out, f"{name}.json")
    save_figure(fig, png)
    write_json(js, data)
    print(f"wrote {png} and {js}")


def cmd_stats(args, report):
    from pn_fairseq.analysis import norm_stats
    from pn_fairseq.analysis.logs import find_log, run_labels
    from pn_fairseq.analysis.plotting import plot_norm_stats

    runs, logs = {}, {}
    for label, run in run_labels(args.runs):
        logs[label] = find_log(run)
        runs[label] = norm_stats.parse_norm_stats(logs[label])
        report(f"{label}: {len(runs[label])} norm layer(s) from {logs[label]}")
    runs, stats = norm_stats.select(runs, args.layer, args.stat)
    title = f"Norm statistics: {_title_list(runs)}" + (f", layer {args.layer}" if args.layer else "")
    summary = {label: {layer: {s: norm_stats.summarize(series) for s, series in by_stat.items()}
                       for layer, by_stat in run.items()} for label, run in runs.items()}
    _write(args.out, "stats", plot_norm_stats(runs, stats, title),
           {"logs": logs, "stats": stats, "summary": summary, "series": runs})


def cmd_grad_norms(args, report, flags):
    import torch

    from pn_fairseq.analysis import grad_norms
    from pn_fairseq.analysis.plotting import plot_grad_norms

    if args.batches <= 0 or args.max_tokens <= 0 or args.after_updates < 0:
        raise AnalysisError("--batches and --max-tokens must be positive, --after-updates >= 0")
    device = torch.device("cuda" if torch.cuda.is_available() and not args.cpu else "cpu")
    args.arch = list(dict.fromkeys(args.arch))  # an architecture given twice is measured once
    result = grad_norms.measure(args.data, args.arch, args.seeds, args.batches, args.max_tokens, flags,
                                args.depths, args.after_updates, device, report)
    when = f"after {args.after_updates} updates" if args.after_updates else "at initialization"
    title = (f"FFN gradient norms {when}: {' vs '.join(args.arch)} on {os.path.basename(os.path.normpath(args.data))}"
             f" (mean ± std over seeds {','.join(map(str, args.seeds))}; {args.batches} batches of "
             f"{args.max_tokens} tokens)")
    _write(args.out, "grad-norms", plot_grad_norms(result, title), result)
    for arch, entry in result["archs"].items():
        for side in ("encoder", "decoder"):
            w2 = ", ".join(f"{v:.3g}" for v in entry[side]["W2"]["mean"])
            print(f"{arch} {side} W2 per layer (input -> output): {w2}")


def cmd_embed_svd(args, report):
    from pn_fairseq.analysis import embed_svd
    from pn_fairseq.analysis.logs import run_labels
    from pn_fairseq.analysis.plotting import plot_embed_svd

    if not 0 < args.threshold < 1:
        raise AnalysisError("--threshold must be in (0, 1)")
    checkpoints = run_labels(args.checkpoints)
    result = embed_svd.analyse(checkpoints, args.threshold, report)
    title = f"Embedding spectrum (normalized singular values): {_title_list(result['checkpoints'])}"
    _write(args.out, "embed-svd", plot_embed_svd(result, title), result)


def cmd_batch_sweep(args, report):
    from pn_fairseq.analysis import batch_sweep
    from pn_fairseq.analysis.plotting import plot_batch_sweep

    if args.total_tokens <= 0:
        raise AnalysisError("--total-tokens must be positive")
    runs = batch_sweep.plan(args.dataset, args.rows, args.micro_tokens, args.total_tokens, args.out)
    if os.environ.get("DRY_RUN") == "1":
        batch_sweep.execute(args.dataset, runs, dry_run=True)
        report(f"DRY_RUN=1: printed the commands of {len(runs)} runs, ran none, wrote no figure")
        return
    if not args.collect_only:
        batch_sweep.execute(args.dataset, runs, report=report)
    result = batch_sweep.collect(args.dataset, runs, args.total_tokens)
    for run_dir in batch_sweep.missing(result):
        report(f"no results.json yet in {run_dir}: left out of the plot")
    print(batch_sweep.table(result))
    title = f"{args.dataset}: BLEU vs micro-batch size ({', '.join(args.rows)}; {args.total_tokens}-token updates)"
    _write(args.out, "batch-sweep", plot_batch_sweep(result, title), batch_sweep.relative_run_dirs(result, args.out))


def cmd_epochs(args, report):
    from pn_fairseq.analysis import epoch_figures
    from pn_fairseq.analysis.logs import run_labels
    from pn_fairseq.analysis.epoch_scores import format_table

    pairs, notes = epoch_figures.expand_row_dirs(run_labels(args.runs))
    for note in notes:
        report(note)
    runs = epoch_figures.collect(pairs)
    for run in runs:
        # The row in parentheses is a Pre-LN grid row (its schedule labels the figure); other runs,
        # Table 1's rows among them, have none to name.
        named = f" ({run['row']})" if run["row"] else ""
        print(f"{run['label']}{named}:\n{format_table(run['scores'])}")
    if args.from_epoch is not None:  # the tables above keep every epoch; the seeds' means and the figure do not
        runs = epoch_figures.from_epoch(runs, args.from_epoch)
    runs = epoch_figures.group_seeds(runs, args.band)
    for run in runs:
        if "seed_scores" not in run:
            continue
        band = "min-max" if args.band == "min-max" else "mean ± std"
        print(f"{run['label']}: mean of {len(run['seeds'])} seeds ({', '.join(run['seeds'])}), band {band}:\n"
              f"{epoch_figures.format_seed_table(run)}")
        note = epoch_figures.partial_note(epoch_figures.seed_stats(run["seed_scores"], "loss", args.band),
                                          len(run["seeds"]))
        if note:
            report(f"{run['label']}: {note}: those epochs' mean and band are over the seeds that have them "
                   "(open markers)")
    spec = epoch_figures.panels(runs, args.layout)
    for label in spec["left_out"]:
        report(f"{label}: not one of {args.layout}'s rows, left out of the figure (--layout runs draws every run)")
    drawn = [r["label"] for r in runs if r["label"] not in spec["left_out"]]
    since = "" if args.from_epoch is None else f" from epoch {args.from_epoch}"
    spec["title"] = f"Validation BLEU and loss per epoch{since} ({args.layout}): {_title_list(drawn)}"
    spec["from_epoch"] = args.from_epoch  # plot() fits the BLEU axis to the epochs drawn
    spec["band"] = args.band
    name = "epochs" if args.from_epoch is None else f"epochs-from{args.from_epoch}"
    _write(args.out, name, epoch_figures.plot(spec, spec["title"]), spec)


def cmd_report(args, report):
    from pn_fairseq.analysis import report as page
    from pn_fairseq.analysis.output import save_figure, write_json, write_text_atomic
    from pn_fairseq.analysis.plotting import plot_loss_curves

    png = os.path.join(args.out, "report.png")
    found = page.gather(args.dir, exclude=[png])
    curves = page.curves_of(found["logs"])
    report(f"{len(found['results'])} result(s), {len(curves)} log(s) with losses, {len(found['figures'])} PNG(s)")
    if curves:
        save_figure(plot_loss_curves(curves, f"Loss curves: {_title_list(curves)}", page.run_rows(found)), png)
    # The Pre-LN paper's per-epoch figures of the runs that logged a validation BLEU every epoch.
    from pn_fairseq.analysis.epoch_figures import report_figures
    known = {os.path.abspath(p) for p in found["figures"]}
    found["figures"] += [p for p in report_figures(found["logs"], args.out) if os.path.abspath(p) not in known]
    write_json(os.path.join(args.out, "report.json"), page.numbers(args.dir, found, curves))
    html_path = os.path.join(args.out, "report.html")
    write_text_atomic(html_path, page.render(args.dir, found, png if curves else None))
    print(os.path.abspath(html_path))


def main(argv=None):
    parser = build_parser()
    args, flags = parser.parse_known_args(argv)
    prog = f"pn-analyze {args.command}"
    if flags and args.command != "grad-norms":
        print(f"{prog}: error: unrecognized arguments: {' '.join(flags)}", file=sys.stderr)
        return 2
    quiet_library_logging()
    if args.verbose:  # fairseq's INFO lines (dictionaries, model size) through the root handler
        logging.getLogger().setLevel(logging.INFO)
    else:
        # Harmless on every batch here (CPU data loading, fairseq's attention masks).
        warnings.filterwarnings("ignore", message=".*'pin_memory' argument")
        warnings.filterwarnings("ignore", message="Support for mismatched key_padding_mask")

    def report(message):
        from pn_fairseq.analysis.output import progress

        progress(args.command, message)

    try:
        if args.command == "grad-norms":
            cmd_grad_norms(args, report, flags)
        else:
            {"stats": cmd_stats, "embed-svd": cmd_embed_svd, "batch-sweep": cmd_batch_sweep,
             "epochs": cmd_epochs, "report": cmd_report}[args.command](args, report)
    except (AnalysisError, OSError) as err:  # OSError: e.g. an --out directory that cannot be written
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
