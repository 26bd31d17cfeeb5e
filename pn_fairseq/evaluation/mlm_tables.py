"""Masked-LM (BERT) rows' results (``results-mlm.json``) as tables and plot data: what
``pn-results``, ``pn-plot --valid-mlm`` and ``pn-analyze report`` show of them. The Pre-LN paper's
Figure 5(a) comparison: validation loss against updates, and how soon each row reaches the loss
the reference row (default ``postln-warmup``, Post-LN with warm-up) ends at.

A results-mlm.json (schema: :mod:`pn_fairseq.evaluation.mlm_results`) holds one seed of one row on
one dataset (``bert-multi30k``). Runs of the same row and dataset are grouped (:class:`MLMGroup`,
by :mod:`pn_fairseq.evaluation.seed_groups` as results-lm.json are): a seed other rows of the dataset
have (or ``--seeds`` names) is *missing* from a row without it, a ``seed<k>`` directory beside
finished seeds without results-mlm.json is *unfinished*; neither is averaged in.

The loss table (:func:`loss_section`), per row: the final validation loss (nats per masked token,
the last validation of each seed) as mean ± standard deviation (n - 1) over the seeds that did
not diverge and ended on a finite loss, and each seed's; the best validation loss likewise;
updates trained of ``max_update``; divergences (update and reason); and the updates to reach the
reference's final loss.

Updates to reach the reference's final loss (:func:`reach_dataset`): the target is the reference
row's final validation loss (the mean over its seeds where several; seeds that diverged or ended
on a non-finite loss left out), the reference's update count the update of that final validation
(likewise averaged). For each seed of a row: the first validation at which its loss is <= the
target, linearly interpolated between the last validation above the target (u0, l0) and that one
(u1, l1): ``u0 + (l0 - target) · (u1 - u0) / (l0 - l1)``; when the very first validation is
already <= the target, that validation's update (nothing earlier to interpolate with).
Non-finite (null) validation losses are skipped. A seed that never gets there is *not reached*; a
seed that diverged reports its divergence instead (even where it had reached the target before).
A row's number is the mean (± std) over its seeds when every seed reached the target, and its
ratio that mean divided by the reference's update count (the Pre-LN paper: Pre-LN BERT gets there
in about 60% of Post-LN's updates).

May import :mod:`pn_fairseq.evaluation.results` (its Section, row order and seed conventions) and
:mod:`pn_fairseq.evaluation.seed_groups`; never norms, models or analysis.
"""
import math
import numbers
import statistics

from pn_fairseq.evaluation import seed_groups
from pn_fairseq.evaluation.mlm_results import DIVERGENCE_MARKERS, FILENAME, MLMResultsError, load
from pn_fairseq.evaluation.results import MISSING, ROWS, Section

DATASETS = {"bert-multi30k": "BERT at Multi30k scale"}
DEFAULT_REFERENCE = "postln-warmup"
# configs/bert-multi30k in the order docs/language-models.md lists them: the reference first.
MLM_ROWS = ("postln-warmup", "preln-nowarmup", "postln-lr3e-4", "preln-bn", "preln-pnv", "preln-pn")


def dataset_name(dataset):
    return DATASETS.get(dataset, dataset)


def _row_order(row):
    # The BERT rows in their configs' order, then the BLEU table's order, then the rest by name.
    if row in MLM_ROWS:
        return (0, MLM_ROWS.index(row), "")
    return (1, list(ROWS).index(row), "") if row in ROWS else (2, 0, row)


def _finite(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _number_or_none(value):
    return value is None or (isinstance(value, numbers.Real) and not isinstance(value, bool))


def _check(data, path):
    """What this module relies on beyond :func:`pn_fairseq.evaluation.mlm_results.validate`."""
    if not all(_number_or_none(v) for v in data["valid"]["loss_nats"]):
        raise MLMResultsError(f"{path}: 'valid.loss_nats' must hold numbers or null: rewrite it with "
                              "scripts/run_mlm_row.sh")
    for key in ("final_valid_loss_nats", "best_valid_loss_nats"):
        if not _number_or_none(data[key]):
            raise MLMResultsError(f"{path}: '{key}' must be a number or null, got {data[key]!r}")
    diverged = data["diverged"]
    if diverged is not None and not (isinstance(diverged, dict) and isinstance(diverged.get("update"), int)):
        raise MLMResultsError(f"{path}: 'diverged' must be null or {{\"update\": N, \"reason\": ...}}, "
                              f"got {diverged!r}")
    return data


class MLMRun(seed_groups.SeedRun):
    """One finished seed: its results-mlm.json and contents."""

    @property
    def diverged(self):
        return self.result["diverged"]

    @property
    def final(self):
        """``(update, loss)`` of the last validation if that loss is finite and the run did not
        diverge, else None."""
        valid = self.result["valid"]
        loss = self.result["final_valid_loss_nats"]
        if self.diverged is not None or not valid["updates"] or not _finite(loss):
            return None
        return valid["updates"][-1], float(loss)

    def points(self):
        """The finite validation points, ``[(update, loss)]``."""
        valid = self.result["valid"]
        return [(u, float(v)) for u, v in zip(valid["updates"], valid["loss_nats"]) if _finite(v)]


class MLMGroup(seed_groups.SeedGroup):
    """The seeds of one row on one dataset (``runs``: :class:`MLMRun`). Its statistics
    (:class:`~pn_fairseq.evaluation.results.SeedStats`) are over :meth:`values`: the final
    validation losses of the seeds that did not diverge."""

    def values(self):
        return [run.final[1] for run in self.runs if run.final is not None]

    # SeedStats counts runs; a diverged seed is a run without a final loss, so count the values.

    @property
    def std(self):
        values = self.values()
        return statistics.stdev(values) if len(values) >= 2 else None

    @property
    def mean(self):
        values = self.values()
        return statistics.fmean(values) if values else None

    def best_values(self):
        return [float(run.result["best_valid_loss_nats"]) for run in self.runs
                if run.diverged is None and _finite(run.result["best_valid_loss_nats"])]


def find_files(paths):
    """The results-mlm.json files under ``paths`` (directories searched; files named so taken)."""
    return seed_groups.find_files(paths, FILENAME)


def collect(paths, seeds=(), unfinished=()):
    """``({(row, dataset): MLMGroup}, [the rest of unfinished])`` for the results-mlm.json files
    under ``paths``, in table order: :func:`pn_fairseq.evaluation.seed_groups.collect` (``seeds``,
    ``unfinished`` as there: an unfinished ``seed<k>`` run directory beside a group's finished seeds
    joins the group). Two results for one row, dataset and seed are an error."""
    return seed_groups.collect(paths, FILENAME, lambda path: MLMRun(path, _check(load(path), path)), MLMGroup,
                               MLMResultsError, DATASETS, _row_order, seeds, unfinished)


def _datasets(groups):
    return seed_groups.datasets_of(groups, DATASETS)


def reach_update(points, target):
    """The update at which ``points`` ([(update, loss)], increasing updates, finite losses) first
    get to ``target`` or below, interpolated as the module docstring says; None if they never do."""
    previous = None
    for update, loss in points:
        if loss <= target:
            if previous is None:
                return float(update)
            u0, l0 = previous
            return u0 + (l0 - target) * (update - u0) / (l0 - loss)
        previous = (update, loss)
    return None


def reach_dataset(groups, dataset, reference=DEFAULT_REFERENCE):
    """How soon every row of ``dataset`` gets to ``reference``'s final validation loss.

    Returns ``{"dataset", "reference", "target_loss_nats" (None without a usable reference),
    "reference_updates", "reference_seeds", "rows": {row: {"status": "reference" | "reached" |
    "not reached" | "diverged" | "mixed" | "no target", "seeds": [{"seed", "status": "reached" |
    "not reached" | "diverged", "update" (reached: interpolated; diverged: the divergence's; else
    None), "reason" (diverged only)}], "mean_update", "std_update" (every seed reached; std for
    two or more), "ratio" (mean_update / reference_updates)}}, "notes": [...]}``.
    """
    report = {"dataset": dataset, "reference": reference, "target_loss_nats": None, "reference_updates": None,
              "reference_seeds": [], "rows": {}, "notes": []}
    base = groups.get((reference, dataset))
    finals = [(run.seed, run.final) for run in base.runs if run.final is not None] if base else []
    if base is None or not base.runs:
        report["notes"].append(f"no finished '{reference}' run on {dataset}: no updates-to-reach "
                               "(choose another reference row with --mlm-reference ROW)")
    elif not finals:
        report["notes"].append(f"'{reference}' on {dataset} has no seed that ended on a finite validation loss "
                               "without diverging: no target loss (choose another reference with --mlm-reference ROW)")
    else:
        report["target_loss_nats"] = statistics.fmean(f[1] for _, f in finals)
        report["reference_updates"] = statistics.fmean(f[0] for _, f in finals)
        report["reference_seeds"] = [seed for seed, _ in finals]
    target = report["target_loss_nats"]
    for group in seed_groups.members(groups, dataset):
        if not group.runs:
            continue
        if group.row == reference:
            report["rows"][group.row] = {"status": "reference" if target is not None else "no target", "seeds": [],
                                         "mean_update": report["reference_updates"], "std_update": None,
                                         "ratio": 1.0 if target is not None else None}
            continue
        seeds = []
        for run in group.runs:
            if run.diverged is not None:
                seeds.append({"seed": run.seed, "status": "diverged", "update": run.diverged["update"],
                              "reason": run.diverged.get("reason")})
            elif target is None:
                seeds.append({"seed": run.seed, "status": "no target", "update": None})
            else:
                update = reach_update(run.points(), target)
                seeds.append({"seed": run.seed, "status": "reached" if update is not None else "not reached",
                              "update": update})
        statuses = {s["status"] for s in seeds}
        entry = {"status": statuses.pop() if len(statuses) == 1 else "mixed", "seeds": seeds, "mean_update": None,
                 "std_update": None, "ratio": None}
        if entry["status"] == "reached":
            updates = [s["update"] for s in seeds]
            entry["mean_update"] = statistics.fmean(updates)
            entry["std_update"] = statistics.stdev(updates) if len(updates) > 1 else None
            entry["ratio"] = entry["mean_update"] / report["reference_updates"]
        report["rows"][group.row] = entry
    return report


def reach_all(groups, reference=DEFAULT_REFERENCE):
    """``{dataset: reach_dataset report}`` for every dataset."""
    return {dataset: reach_dataset(groups, dataset, reference) for dataset in _datasets(groups)}


def reason_text(reason):
    """A divergence's reason for a table cell: the marker it contains (the whole log line is in the
    JSON), else the line shortened, with no ``|`` to break a markdown table."""
    if not reason:
        return "no reason recorded"
    marker = next((m for m in DIVERGENCE_MARKERS if m in reason), None)
    if marker is not None:
        return marker
    reason = reason.replace("|", "/")
    return reason if len(reason) <= 80 else reason[:79] + "…"


def _final_cell(g):
    per_seed = []
    for run in g.runs:
        if run.diverged is not None:
            per_seed.append(f"{run.seed}: diverged")
        elif run.final is None:
            per_seed.append(f"{run.seed}: {MISSING}")
        else:
            per_seed.append(f"{run.seed}: {run.final[1]:.3f} @ {run.final[0]}")
    return ", ".join(per_seed + g.absent_cells())


def _updates_cell(g):
    texts = [f"{run.result['updates']} / {run.result['max_update']}" for run in g.runs]
    if len(set(texts)) == 1:
        return texts[0]
    return ", ".join(f"{run.seed}: {text}" for run, text in zip(g.runs, texts))


def _diverged_cell(g):
    diverged = [run for run in g.runs if run.diverged is not None]
    if not diverged:
        return "no"
    one = len(g.runs) == 1
    return "; ".join(("" if one else f"seed {run.seed} ") + f"at update {run.diverged['update']}: "
                     + reason_text(run.diverged.get("reason")) for run in diverged)


def _seed_reach_text(s):
    if s["status"] == "reached":
        return f"{s['update']:.0f}"
    if s["status"] == "diverged":
        return f"diverged at update {s['update']}"
    return s["status"]


def _reach_cells(report, row):
    """``(updates-to-reach cell, ratio cell)`` of ``row`` in ``report``."""
    entry = report["rows"].get(row)
    if entry is None or entry["status"] == "no target" or report["target_loss_nats"] is None:
        return "no target", MISSING
    if entry["status"] == "reference":
        return f"{entry['mean_update']:.0f} (the reference: its final validation)", "1 (reference)"
    seeds = entry["seeds"]
    per_seed = "" if len(seeds) == 1 else " (" + ", ".join(f"{s['seed']}: {_seed_reach_text(s)}" for s in seeds) + ")"
    if entry["status"] == "reached":
        text = f"{entry['mean_update']:.0f}" + ("" if entry["std_update"] is None else f" ± {entry['std_update']:.0f}")
        return text + per_seed, f"{entry['ratio']:.2f}"
    if entry["status"] == "mixed":
        return "not every seed" + per_seed, MISSING
    if entry["status"] == "diverged" and len(seeds) > 1:
        return "diverged (" + ", ".join(f"{s['seed']}: at update {s['update']}" for s in seeds) + ")", MISSING
    return _seed_reach_text(seeds[0]), MISSING  # one seed, or every seed not reached


def loss_section(groups, dataset, report):
    """The table of ``dataset``: a row per row with a result (``report``: :func:`reach_dataset`),
    then the notes."""
    ref, target = report["reference"], report["target_loss_nats"]
    reach_header = f"updates to reach {ref}'s final loss" + ("" if target is None else f" ({target:.3f})")
    section = Section(
        f"{dataset_name(dataset)}: validation masked-LM loss (nats; lower is better)",
        ["row", "seeds", "final valid loss: mean ± std", "per seed (seed: loss @ update)",
         "best valid loss: mean ± std", "updates / max_update", "diverged", reach_header, f"× {ref}'s updates"],
        text="Validation loss per masked token in nats, at each seed's last validation (final) and its lowest "
        "(best); mean and standard deviation (n - 1) over the seeds that did not diverge and ended on a "
        "finite loss; unfinished or missing seeds are not averaged in. Updates to reach "
        f"{ref}'s final loss (the mean of its seeds' where several): the first validation at which a seed's "
        "loss is at or below it, linearly interpolated between that validation and the one before; the row's "
        f"number is the mean over its seeds when every seed got there, and × {ref}'s updates divides it by "
        f"the update of {ref}'s final validation (the Pre-LN paper: Pre-LN BERT needs about 0.6 of Post-LN's). "
        "A diverged seed reports its divergence instead.")
    for g in seed_groups.members(groups, dataset):
        reach, ratio = _reach_cells(report, g.row)
        section.rows.append([g.row, g.seeds_cell(), seed_groups.mean_std_text(g.values(), 3), _final_cell(g),
                             seed_groups.mean_std_text(g.best_values(), 3), _updates_cell(g), _diverged_cell(g),
                             reach, ratio])
        section.items += g.absent_items(FILENAME)
    section.items += report["notes"]
    return section


def sections(groups, reports=None):
    """Everything pn-results prints of the masked-LM runs: a table per dataset (``reports``:
    :func:`reach_all`; None: against :data:`DEFAULT_REFERENCE`)."""
    reports = reports if reports is not None else reach_all(groups)
    return [loss_section(groups, dataset, reports[dataset]) for dataset in _datasets(groups)]


def curves(groups):
    """Validation loss against updates, a line per row: ``{dataset: [{"row", "seeds", "updates",
    "loss", "min", "max", "n", "values"}]}``: at every update where any seed has a finite loss, the
    mean (``loss``), minimum and maximum over the seeds that have one (``n`` of them; ``values``:
    per seed in ``seeds`` order, None where a seed lacks the update or its loss was not finite)."""
    return seed_groups.curves(groups, MLMRun.points, ("loss", "min", "max"))


def figure_data(groups, reports=None):
    """What ``pn-plot --valid-mlm`` draws: ``{dataset: {"reference", "target_loss_nats",
    "reference_updates", "lines": [curves() line + {"reached_at" (the row's mean update to reach the
    target, or None), "status", "diverged_at" ([updates])}]}}``."""
    reports = reports if reports is not None else reach_all(groups)
    out = {}
    for dataset, lines in curves(groups).items():
        report = reports[dataset]
        entry = {k: report[k] for k in ("reference", "target_loss_nats", "reference_updates")}
        entry["lines"] = []
        for line in lines:
            reach = report["rows"].get(line["row"], {})
            reached = reach.get("status") in ("reached", "reference")
            group = groups[(line["row"], dataset)]
            entry["lines"].append(dict(line, status=reach.get("status"),
                                       reached_at=reach.get("mean_update") if reached else None,
                                       diverged_at=[run.diverged["update"] for run in group.runs if run.diverged]))
        out[dataset] = entry
    return out


def summary_json(groups, reports=None):
    """The JSON of pn-results ``--json`` for the masked-LM runs: ``{"rows": [...], "reach": [reach_dataset
    reports]}``."""
    reports = reports if reports is not None else reach_all(groups)
    rows = []
    for g in groups.values():
        best = g.best_values()
        rows.append({
            "row": g.row, "dataset": g.dataset, "n_seeds": g.n, "complete": g.complete,
            "mean_final_valid_loss_nats": g.mean, "std_final_valid_loss_nats": g.std,
            "mean_best_valid_loss_nats": statistics.fmean(best) if best else None,
            "std_best_valid_loss_nats": statistics.stdev(best) if len(best) > 1 else None,
            "seeds": [{"seed": run.seed, "final_valid_loss_nats": run.result["final_valid_loss_nats"],
                       "final_valid_update": run.result["valid"]["updates"][-1] if run.result["valid"]["updates"]
                       else None,
                       "best_valid_loss_nats": run.result["best_valid_loss_nats"], "updates": run.result["updates"],
                       "max_update": run.result["max_update"], "wall_time_s": run.result["wall_time_s"],
                       "diverged": run.diverged, "results": run.path} for run in g.runs],
            "unfinished": list(g.unfinished), "missing_seeds": list(g.missing_seeds)})
    return {"rows": rows, "reach": [reports[d] for d in _datasets(groups)]}
