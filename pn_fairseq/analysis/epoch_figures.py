"""The Pre-LN paper's figures: validation BLEU and loss against the epoch (``pn-analyze epochs``,
and ``pn-analyze report`` when it finds such runs).

Layouts:

* ``figure2`` (Fig. 2): Post-LN, one panel per optimizer and lr_max (BLEU above, loss below),
  one line per warm-up;
* ``figure4`` (Fig. 4): Pre-LN against Post-LN and RAdam, BLEU and loss;
* ``runs``: BLEU and loss, one line per run, whatever the runs are.

A run's row is the last component of its path (else of its label) that names a row of :data:`ROWS`
(``checkpoints/multi30k-preln/postln-warmup4k/seed2`` -> ``postln-warmup4k``); the component
before it (the configs directory, e.g. ``multi30k-preln``) keeps datasets apart in the report.
The numbers: :mod:`pn_fairseq.analysis.epoch_scores` (the run's train.log).
"""
import os
import re
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
    # Several runs of one row (seeds): tell them apart by their label's last component.
    same = [r for r in runs if r["row"] is not None and r["row"] == run["row"]]
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
                panel["lines"].append({
                    "label": _line_label(run, name, [r for r, _ in lines]), "run": run["path"], "row": row,
                    "color_key": ROWS[row][4] if row and layout != "runs" else (row or run["label"]),
                    "style": "--" if row and ROWS[row][1] == "RAdam" else "-",
                    "epochs": [p[0] for p in points], "values": [p[1] for p in points]})
            out["panels"].append(panel)
    return out


def plot(spec, title):
    """The :func:`panels` spec drawn: a matplotlib Figure (no pyplot)."""
    nrows, ncols = spec["grid"]
    fig = Figure(figsize=(5.2 * ncols, 3.6 * nrows + 0.6), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, sharey="row" if spec.get("share_y") else False)
    for panel in spec["panels"]:
        ax = axes[tuple(panel["pos"])]  # a list after a JSON round trip
        for i, line in enumerate(panel["lines"]):
            color = row_color(line["color_key"])
            ax.plot(line["epochs"], line["values"], color=color, ls=line["style"], marker="o", ms=3, label=line["label"])
        ax.set_title(panel["title"], fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylabel("BLEU" if panel["metric"] == "bleu" else "loss (bits/token)")
        ax.xaxis.get_major_locator().set_params(integer=True)
        if panel["metric"] == "bleu":
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
    else ``epochs-<group>-runs.png``. Returns the PNG paths written (none without such runs)."""
    from .output import save_figure

    found = []
    for label, path in logs:
        try:
            found += collect([(label, path)])
        except AnalysisError:
            continue  # no per-epoch BLEU in this log: not a run of these figures
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

