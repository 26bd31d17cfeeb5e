"""The Pre-LN paper's figures: validation BLEU and loss against the epoch (``pn-analyze epochs``,
and ``pn-analyze report`` when it finds such runs).

Layouts:

* ``figure2`` (Fig. 2): Post-LN, one panel per optimizer and lr_max (BLEU above, loss below),
  one line per warm-up;
* ``figure4`` (Fig. 4): Pre-LN against Post-LN and RAdam, BLEU and loss;
* ``runs``: BLEU and loss, one line per run, whatever the runs are.

Seeds: runs in ``seed<k>`` directories of one parent (``pn/seed1 pn/seed2 pn/seed3``, or the row
directory ``pn`` itself, which :func:`expand_row_dirs` opens into its ``seed<k>/``) are drawn as
one line, their mean per epoch, with a band (min-max, or mean +- the standard deviation over the
seeds, n - 1): :func:`group_seeds`. An epoch some seeds lack (a seed stopped or still training)
is averaged over the seeds that have it, drawn with an open marker, and named in the legend and
the JSON (``partial``), never filled in.

A run's row is the last component of its path (else of its label) that names a row of :data:`ROWS`
(``checkpoints/multi30k-preln/postln-warmup4k/seed2`` -> ``postln-warmup4k``); the component
before it (the configs directory, e.g. ``multi30k-preln``) keeps datasets apart in the report.
The numbers: :mod:`pn_fairseq.analysis.epoch_scores` (the run's train.log).
"""
import os
import re
import statistics
import textwrap

from matplotlib.figure import Figure

from pn_fairseq.evaluation.figures import bleu_axis, row_color

from . import AnalysisError
from .epoch_scores import EpochScoresError, epoch_scores, log_path, require_bleu

# row -> (norm, optimizer, lr_max, schedule, palette row, layouts). The schedule names the
# paper's update counts; the Multi30k rows scale them (configs/multi30k-preln/common.conf).
# The palette row gives each warm-up one colour in every Figure 2 panel; RAdam lines are dashed.
_WARMUP = {"warmup4k": ("warm-up T = 4000", "postln-warmup4k"), "warmup500": ("warm-up T = 500", "postln-warmup500"),
           "nowarmup": ("no warm-up (T = 1)", "postln-nowarmup")}
ROWS = {}
for _lr, _prefix in (("5e-4", "postln-"), ("1e-3", "postln-lr1e-3-")):
    for _w, (_label, _color) in _WARMUP.items():
        ROWS[_prefix + _w] = ("Post-LN", "Adam", _lr, _label, _color, ("figure2",))
ROWS["postln-warmup4k"] = ROWS["postln-warmup4k"][:5] + (("figure2", "figure4"),)
for _lr in ("5e-3", "1e-3"):
    for _w in ("warmup4k", "nowarmup"):
        ROWS[f"postln-sgd-lr{_lr}-{_w}"] = ("Post-LN", "SGD", _lr, *_WARMUP[_w], ("figure2",))
ROWS.update({
    "postln-fixed1e-4": ("Post-LN", "Adam", "1e-4", "fixed lr, no warm-up", "postln", ()),
    "preln-nowarmup": ("Pre-LN", "Adam", "5e-4", "no warm-up, x0.1 at epoch 8", "preln-nowarmup", ("figure4",)),
    "preln-warmup4k": ("Pre-LN", "Adam", "5e-4", "warm-up T = 4000", "preln", ("figure4",)),
    "postln-radam": ("Post-LN", "RAdam", "5e-4", "no warm-up, linear decay", "postln", ("figure4",)),
    "preln-radam": ("Pre-LN", "RAdam", "5e-4", "no warm-up, linear decay", "preln", ("figure4",)),
    # Figure 4 (c, d), WMT14 (configs/wmt14-preln).
    "preln-lr7e-4-nowarmup": ("Pre-LN", "Adam", "7e-4", "no warm-up, decay at epoch 6", "preln-nowarmup", ("figure4",)),
    "preln-lr1.5e-3-nowarmup": ("Pre-LN", "Adam", "1.5e-3", "no warm-up, decay at epoch 6", "preln", ("figure4",)),
    "postln-lr7e-4-warmup4k": ("Post-LN", "Adam", "7e-4", "warm-up T = 4000", "postln-warmup4k", ("figure4",)),
    "postln-lr1.5e-3-warmup4k": ("Post-LN", "Adam", "1.5e-3", "warm-up T = 4000", "postln", ("figure4",)),
})
LAYOUTS = ("figure2", "figure4", "runs")
# One dash per configs directory when a figure mixes them (RAdam's own dash then gives way: the
# legend still names the optimizer).
GROUP_STYLES = ("-", "--", ":", "-.")
BANDS = ("min-max", "std", "none")  # "none": a line per seed, no mean
_SEED_DIR = re.compile(r"seed(\d+)")
FIGURE2_PANELS = [("Adam", "5e-4"), ("Adam", "1e-3"), ("SGD", "5e-3"), ("SGD", "1e-3")]  # Sec. 3.2's order
METRICS = (("bleu", "validation BLEU"), ("loss", "validation loss (label-smoothed, bits/token)"))


def row_and_group(label, path):
    """``(row, group)`` of a run: its row (None if no component names one; the path first, then
    the label) and the path component before the row's (its configs directory, or "")."""
    for text, in_path in ((path, True), (label, False)):
        parts = [p for p in re.split(r"[\\/=]+", os.path.normpath(str(text))) if p]
        for i in range(len(parts) - 1, -1, -1):
            if parts[i] in ROWS:
                return parts[i], parts[i - 1] if in_path and i > 0 else ""
    return None, ""


def collect(runs, need_bleu=True):
    """``runs``: ``[(label, path)]`` -> ``[{"label", "path", "row", "group", "scores"}]``."""
    out = []
    for label, path in runs:
        try:
            scores = epoch_scores(path)
            if need_bleu:
                require_bleu(scores, path)
        except EpochScoresError as err:
            raise AnalysisError(str(err)) from None
        row, group = row_and_group(label, path)
        out.append({"label": label, "path": path, "row": row, "group": group, "scores": scores,
                    "warmup_updates": warmup_updates(path)})
    return out


def expand_row_dirs(pairs):
    """``[(label, path)]`` with each row directory (no train.log of its own, ``seed<k>/train.log``
    below it) replaced by its seeds in seed order, labelled ``LABEL/seed<k>``. Returns ``(pairs,
    notes)``: a note for each ``seed<k>/`` without a train.log (never started, or lost), left out."""
    out, notes = [], []
    for label, path in pairs:
        if os.path.isdir(path) and not os.path.isfile(os.path.join(path, "train.log")):
            seeds = sorted((int(m.group(1)), name) for name in os.listdir(path)
                           if (m := _SEED_DIR.fullmatch(name)) and os.path.isdir(os.path.join(path, name)))
            with_log = [(k, name) for k, name in seeds if os.path.isfile(os.path.join(path, name, "train.log"))]
            notes += [f"{os.path.join(path, name)}: no train.log, left out of {label}'s seeds"
                      for k, name in seeds if (k, name) not in with_log]
            if with_log:
                out += [(f"{label}/{name}", os.path.join(path, name)) for _, name in with_log]
                continue
        out.append((label, path))
    return out, notes


def _seed_parent(run):
    """The directory holding ``run``'s ``seed<k>`` run directory, or None (not a seed directory)."""
    run_dir = os.path.dirname(os.path.abspath(log_path(run["path"])))
    return os.path.dirname(run_dir) if _SEED_DIR.fullmatch(os.path.basename(run_dir)) else None


def group_seeds(runs, band="min-max"):
    """:func:`collect`'s runs with the seeds of each row directory (``seed<k>`` directories of one
    parent, two or more given) made one entry: ``{"label", "path" (the parent), "row", "group",
    "warmup_updates", "band", "seeds": [label], "seed_scores": [scores], "scores": the mean per
    epoch}``; the other runs unchanged, in the order given. ``band`` "none": every run its own line."""
    if band not in BANDS:
        raise AnalysisError(f"unknown band '{band}' (one of {', '.join(BANDS)})")
    if band == "none":
        return list(runs)
    members = {}
    for run in runs:
        parent = _seed_parent(run)
        members.setdefault(parent if parent is not None else id(run), []).append(run)
    out, seen = [], set()
    for run in runs:
        parent = _seed_parent(run)
        key = parent if parent is not None else id(run)
        if key in seen:
            continue
        seen.add(key)
        group = members[key]
        if len(group) == 1:
            out.append(run)
            continue
        paths = [os.path.abspath(log_path(r["path"])) for r in group]
        twice = sorted({p for p in paths if paths.count(p) > 1})
        if twice:
            raise AnalysisError(f"{twice[0]}: given twice (each seed once, or the row directory alone)")
        stripped = {re.sub(r"[\\/]seed\d+$", "", str(r["label"])) for r in group}
        label = stripped.pop() if len(stripped) == 1 and not any(_SEED_DIR.fullmatch(str(r["label"])) for r in group) \
            else os.path.basename(parent)
        warmups = {r["warmup_updates"] for r in group}
        entry = {"label": label, "path": parent, "row": group[0]["row"], "group": group[0]["group"],
                 "warmup_updates": warmups.pop() if len(warmups) == 1 else None, "band": band,
                 "seeds": [r["label"] for r in group], "seed_scores": [r["scores"] for r in group]}
        entry["scores"] = mean_scores(entry["seed_scores"])
        out.append(entry)
    return out


def seed_stats(seed_scores, metric, band):
    """Per epoch any seed logged ``metric`` for, in order: ``{"epoch", "n", "mean", "std", "lo",
    "hi", "values"}`` over the seeds that have it (``values``: one per seed, None where a seed lacks
    the epoch; ``std``: n - 1, None for one seed; the band: min-max, or mean +- std, nothing for one
    seed)."""
    epochs = sorted({s["epoch"] for scores in seed_scores for s in scores if s[metric] is not None})
    out = []
    for epoch in epochs:
        values = [next((s[metric] for s in scores if s["epoch"] == epoch), None) for scores in seed_scores]
        have = [v for v in values if v is not None]
        mean = statistics.fmean(have)
        std = statistics.stdev(have) if len(have) > 1 else None
        if band == "std":
            lo, hi = (mean - std, mean + std) if std is not None else (mean, mean)
        else:
            lo, hi = min(have), max(have)
        out.append({"epoch": epoch, "n": len(have), "mean": mean, "std": std, "lo": lo, "hi": hi, "values": values})
    return out


def mean_scores(seed_scores):
    """The seeds' mean per epoch as :func:`epoch_scores` records (``updates``: the first seed's)."""
    epochs = sorted({s["epoch"] for scores in seed_scores for s in scores})
    out = []
    for epoch in epochs:
        found = [s for scores in seed_scores for s in scores if s["epoch"] == epoch]
        entry = {"epoch": epoch, "updates": found[0]["updates"]}
        for name in ("loss", "nll_loss", "ppl", "bleu"):
            have = [s[name] for s in found if s[name] is not None]
            entry[name] = statistics.fmean(have) if have else None
        out.append(entry)
    return out


def _ranges(epochs):
    """[3, 4, 5, 8] -> "3-5, 8"."""
    parts, start = [], None
    for i, e in enumerate(epochs):
        if start is None:
            start = e
        if i + 1 == len(epochs) or epochs[i + 1] != e + 1:
            parts.append(str(start) if start == e else f"{start}-{e}")
            start = None
    return ", ".join(parts)


def partial_note(stats, n_seeds):
    """The epochs with fewer than ``n_seeds`` seeds, in words ("epochs 19-20: 2 of 3 seeds"), or ""."""
    by_n = {}
    for s in stats:
        if s["n"] < n_seeds:
            by_n.setdefault(s["n"], []).append(s["epoch"])
    return "; ".join(f"epoch{'s' if len(e) > 1 else ''} {_ranges(e)}: {n} of {n_seeds} seeds"
                     for n, e in sorted(by_n.items(), reverse=True))


def format_seed_table(entry):
    """A seed group's mean and band per epoch as a small text table."""
    band = entry["band"]
    head = "[min, max]" if band == "min-max" else "[-std, +std]"
    lines = [f"epoch  seeds  valid_loss {head:>18}  valid_bleu {head:>16}"]
    stats = {m: {s["epoch"]: s for s in seed_stats(entry["seed_scores"], m, band)} for m in ("loss", "bleu")}
    for epoch in sorted(set(stats["loss"]) | set(stats["bleu"])):
        cells = []
        for metric, digits in (("loss", 3), ("bleu", 2)):
            s = stats[metric].get(epoch)
            cells.append("-" if s is None else f"{s['mean']:.{digits}f} [{s['lo']:.{digits}f}, {s['hi']:.{digits}f}]")
        n = max(s["n"] for m in stats.values() for e, s in m.items() if e == epoch)
        lines.append(f"{epoch:>5}  {n:>5}  {cells[0]:>29}  {cells[1]:>27}")
    return "\n".join(lines)


def warmup_updates(run):
    """The run's ``--warmup-updates`` from the ``train.cmd`` beside its log (scripts/run_row.sh
    writes it), or None. The rows' labels give the paper's T; a scaled run (Multi30k: 440 for 4000)
    says its own beside it."""
    cmd = os.path.join(os.path.dirname(log_path(run)), "train.cmd")
    try:
        with open(cmd) as f:
            found = re.findall(r"--warmup-updates[ =](\d+)", f.read())
    except OSError:
        return None
    return int(found[-1]) if found else None


def _schedule_label(run):
    label = ROWS[run["row"]][3]
    paper = re.search(r"T = (\d+)", label)
    here = run.get("warmup_updates")
    if paper and here is not None and int(paper.group(1)) != here:
        label = label.replace(paper.group(0), f"{paper.group(0)} ({here} updates here)")
    return label


def _line_label(run, name, runs):
    # Several runs of one row (seeds): tell them apart by their label's last component. Runs of
    # one row from different configs directories are told apart by the directory (panels()).
    same = [r for r in runs if r["row"] is not None and (r["row"], r["group"]) == (run["row"], run["group"])]
    return name if len(same) <= 1 else f"{name} ({os.path.basename(os.path.normpath(run['label']))})"


def panels(runs, layout):
    """The figure's panels: ``{"grid": (rows, cols), "panels": [{"pos", "title", "metric",
    "lines": [{"label", "run", "row", "color_key", "style", "epochs", "values"}]}], "left_out":
    [label of each run the layout does not draw (its row is not one of the layout's)]}``."""
    if layout not in LAYOUTS:
        raise AnalysisError(f"unknown layout '{layout}' (one of {', '.join(LAYOUTS)})")
    if layout == "runs":
        groups = [(None, [(r, r["label"]) for r in runs])]
    else:
        members = [r for r in runs if r["row"] is not None and layout in ROWS[r["row"]][5]]
        members.sort(key=lambda r: list(ROWS).index(r["row"]))  # the paper's order: warm-up 4000, 500, none
        if not members:
            wanted = ", ".join(row for row, spec in ROWS.items() if layout in spec[5])
            raise AnalysisError(f"no run of {layout}'s rows among the runs given (rows: {wanted})")
        if layout == "figure2":
            keys = []
            for r in members:
                key = ROWS[r["row"]][1:3]
                if key not in keys:
                    keys.append(key)
            keys.sort(key=lambda k: FIGURE2_PANELS.index(k) if k in FIGURE2_PANELS else len(FIGURE2_PANELS))
            groups = [(f"Post-LN, {opt}, lr_max {lr}", [(r, _schedule_label(r)) for r in members
                                                         if ROWS[r["row"]][1:3] == (opt, lr)]) for opt, lr in keys]
        else:
            groups = [(None, [(r, " ".join(ROWS[r["row"]][:2]) + f", lr {ROWS[r['row']][2]}, {_schedule_label(r)}")
                              for r in members])]
    drawn = {id(r) for _, lines in groups for r, _ in lines}
    # Runs of one row from two configs directories (multi30k-preln and multi30k-preln-6x6: the
    # depth test) take the same colour: the directory sets the dash, and the legend names it.
    dirs = list(dict.fromkeys(r["group"] for _, lines in groups for r, _ in lines))
    # Figure 2's panels are read side by side (lr_max 5e-4 against 1e-3): one y axis per metric.
    out = {"grid": (2, len(groups)) if layout == "figure2" else (1, 2), "share_y": layout == "figure2", "panels": [],
           "left_out": [r["label"] for r in runs if id(r) not in drawn]}
    for g, (title, lines) in enumerate(groups):
        for m, (metric, axis_label) in enumerate(METRICS):
            pos = (m, g) if layout == "figure2" else (0, m)
            panel = {"pos": pos, "title": f"{title}: {axis_label}" if title else axis_label, "metric": metric, "lines": []}
            for run, name in lines:
                points = [(s["epoch"], s[metric]) for s in run["scores"] if s[metric] is not None]
                row = run["row"]
                label = _line_label(run, name, [r for r, _ in lines])
                if len(dirs) > 1:
                    style = GROUP_STYLES[dirs.index(run["group"]) % len(GROUP_STYLES)]
                    label = f"{label} [{run['group'] or 'other'}]"
                else:
                    style = "--" if row and ROWS[row][1] == "RAdam" else "-"
                line = {
                    "label": label, "run": run["path"], "row": row,
                    "color_key": ROWS[row][4] if row and layout != "runs" else (row or run["label"]),
                    "style": style,
                    "epochs": [p[0] for p in points], "values": [p[1] for p in points]}
                if "seed_scores" in run:
                    line.update(_band_line(run, metric))
                panel["lines"].append(line)
            out["panels"].append(panel)
    return out


def _band_line(run, metric):
    """The mean line and band of a seed group (:func:`group_seeds`) for ``metric``."""
    stats = seed_stats(run["seed_scores"], metric, run["band"])
    n = len(run["seeds"])
    note = partial_note(stats, n)
    label_band = "min-max" if run["band"] == "min-max" else "± std"
    return {
        "epochs": [s["epoch"] for s in stats], "values": [s["mean"] for s in stats],
        "band": {"kind": run["band"], "lo": [s["lo"] for s in stats], "hi": [s["hi"] for s in stats]},
        "std": [s["std"] for s in stats], "n_seeds": [s["n"] for s in stats], "seeds": list(run["seeds"]),
        "seed_values": [[s["values"][k] for s in stats] for k in range(n)],
        "partial": [s["epoch"] for s in stats if s["n"] < n], "partial_note": note,
        "suffix": f"mean of {n} seeds, {label_band} band" + (f"; open markers: {note}" if note else ""),
    }


def from_epoch(runs, first):
    """:func:`collect`'s runs with their scores cut to epochs >= ``first``, before the seeds are
    averaged (the losses of the first epochs span several bits and flatten the converged ones'
    hundredths). An error when no run has such an epoch."""
    if first < 1:
        raise AnalysisError(f"--from-epoch {first}: epochs count from 1; pass 1 or more")
    cut = [dict(run, scores=[s for s in run["scores"] if s["epoch"] >= first]) for run in runs]
    if not any(run["scores"] for run in cut):
        raise AnalysisError(f"--from-epoch {first}: no run logged a validation at epoch {first} or later; "
                            "pass a smaller epoch")
    return cut


def plot(spec, title):
    """The :func:`panels` spec drawn: a matplotlib Figure (no pyplot)."""
    nrows, ncols = spec["grid"]
    fig = Figure(figsize=(5.2 * ncols, 3.6 * nrows + 0.6), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, sharey="row" if spec.get("share_y") else False)
    for panel in spec["panels"]:
        ax = axes[tuple(panel["pos"])]  # a list after a JSON round trip
        for i, line in enumerate(panel["lines"]):
            color = row_color(line["color_key"])
            label = line["label"]
            if "band" in line:  # a seed group: its mean, the band behind it, open markers where seeds lack the epoch
                label = f"{label} ({line['suffix']})"
                ax.fill_between(line["epochs"], line["band"]["lo"], line["band"]["hi"], color=color, alpha=0.2, lw=0)
                partial = [(e, v) for e, v, n in zip(line["epochs"], line["values"], line["n_seeds"])
                           if n < len(line["seeds"])]
                if partial:
                    ax.scatter(*zip(*partial), s=30, facecolors="white", edgecolors=color, zorder=3)
            ax.plot(line["epochs"], line["values"], color=color, ls=line["style"], marker="o", ms=3, label=label)
        ax.set_title(panel["title"], fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylabel("BLEU" if panel["metric"] == "bleu" else "loss (bits/token)")
        ax.xaxis.get_major_locator().set_params(integer=True)
        if panel["metric"] == "bleu" and not spec.get("from_epoch"):  # --from-epoch asked to zoom in
            bleu_axis(ax)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, handlelength=3.5)
    # The title lists every run drawn: six rows of Figure 2 run past a 2-panel width on one line
    # (11 pt is about 14 characters an inch; 12 leaves a margin).
    fig.suptitle(textwrap.fill(title, width=int(12 * fig.get_figwidth())), fontsize=11)
    return fig


def report_figures(logs, out_dir):
    """For ``pn-analyze report``: the per-epoch figures of the runs among ``logs``
    (``[(label, train.log)]``) that logged a validation BLEU every epoch, one set per configs
    directory: ``OUT/epochs-<group>-figure2.png`` and ``-figure4.png`` where their rows ran,
    else ``epochs-<group>-runs.png``; a row's seeds drawn as their mean with a min-max band. Returns the PNG paths written (none without such runs)."""
    from .output import save_figure

    found = []
    for label, path in logs:
        try:
            found += collect([(label, path)])
        except AnalysisError:
            continue  # no per-epoch BLEU in this log: not a run of these figures
    found = group_seeds(found, "min-max")
    written = []
    for group in sorted({r["group"] for r in found}):
        runs = [r for r in found if r["group"] == group]
        layouts = [lay for lay in ("figure2", "figure4") if any(r["row"] and lay in ROWS[r["row"]][5] for r in runs)]
        for layout in layouts or ["runs"]:
            name = f"epochs-{group or 'runs'}-{layout}.png"
            title = f"{group or 'runs'}: validation BLEU and loss per epoch ({layout})"
            path = os.path.join(out_dir, name)
            save_figure(plot(panels(runs, layout), title), path)
            written.append(path)
    return written

