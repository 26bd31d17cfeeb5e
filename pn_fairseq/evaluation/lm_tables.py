"""Language-model rows' results (``results-lm.json``) as tables and plot data: what ``pn-results``,
``pn-plot --ppl / --valid-ppl`` and ``pn-analyze report`` show of them.

A results-lm.json (schema: :mod:`pn_fairseq.evaluation.lm_results`) holds one seed of one row on
one dataset (``lm-multi30k``, ``ptb``, ``wikitext103``). Runs of the same row and dataset are
grouped (:class:`LMGroup`, by :mod:`pn_fairseq.evaluation.seed_groups`), as
:mod:`pn_fairseq.evaluation.results` groups BLEU runs: a seed other rows of the dataset have (or
``--seeds`` names) is *missing* from a row without it, a ``seed<k>`` directory beside finished
seeds without results-lm.json is *unfinished*; neither is averaged in.

The perplexity table (:func:`perplexity_section`): per row, test perplexity mean ± standard
deviation (n - 1) over seeds and each seed's, the paper's where ``paper_ppl`` is set, the
validation perplexity at the last validation of each seed. Lower is better.

The comparison with a baseline row (:func:`compare_dataset`): paired by seed. For seed k both rows
have, ``Δ_k = test_loss_nats(row, k) - test_loss_nats(baseline, k)`` (nats per token, i.e. the
difference of ln perplexity; negative: the row's perplexity is lower). Pooled: the mean of the
Δ_k and Student's t 95% interval over the pairs, ``mean ± t(0.975, n-1) · s / √n`` (s: the
pairs' standard deviation, n - 1); ``exp(Δ)`` is the ratio of the two rows' geometric-mean
perplexities. One seed pair gives no interval. That interval is about seed-to-seed variation only;
where both runs of every pair carry per-block test losses (``test_blocks``, from
``fairseq-eval-lm --output-word-probs``), the paired bootstrap over test blocks
(:mod:`pn_fairseq.evaluation.lm_bootstrap`) adds the test-set sampling interval and p, per pair
and pooled over the pairs, as the BLEU rows get.

May import :mod:`pn_fairseq.evaluation.results` (its Section, row order and seed conventions) and
:mod:`pn_fairseq.evaluation.seed_groups`; never norms, models or analysis.
"""
import math
import os
import statistics

from pn_fairseq.evaluation import seed_groups
from pn_fairseq.evaluation.lm_bootstrap import BlockMismatch, paired_block_bootstrap, pooled_block_bootstrap
from pn_fairseq.evaluation.lm_results import FILENAME, LMResultsError, load
from pn_fairseq.evaluation.results import MISSING, ROWS, Section, t_interval

DATASETS = {"lm-multi30k": "Multi30k LM", "ptb": "PTB", "wikitext103": "WikiText-103", "wikitext2": "WikiText-2"}


def dataset_name(dataset):
    return DATASETS.get(dataset, dataset)


def _row_order(row):
    # The BLEU table's order (PowerNorm's Table 1 first), then rows it does not know, by name.
    return seed_groups.listed_order(ROWS, row)


class LMRun(seed_groups.SeedRun):
    """One finished seed: its results-lm.json and contents."""

    @property
    def last_valid(self):
        """``(updates, perplexity)`` of the last validation, or None (no validation logged)."""
        valid = self.result["valid"]
        return (valid["updates"][-1], valid["ppl"][-1]) if valid["updates"] else None


class LMGroup(seed_groups.SeedGroup):
    """The seeds of one row on one dataset (``runs``: :class:`LMRun`)."""

    @property
    def ppls(self):
        return [run.result["test_ppl"] for run in self.runs]

    def values(self):
        return self.ppls

    @property
    def paper_ppl(self):
        return next((run.result["paper_ppl"] for run in self.runs if run.result["paper_ppl"] is not None), None)


def find_files(paths):
    """The results-lm.json files under ``paths`` (directories searched; files named so taken)."""
    return seed_groups.find_files(paths, FILENAME)


def collect(paths, seeds=(), unfinished=()):
    """``({(row, dataset): LMGroup}, [the rest of unfinished])`` for the results-lm.json files under
    ``paths``, in table order: :func:`pn_fairseq.evaluation.seed_groups.collect` (``seeds``,
    ``unfinished`` as there). Two results for one row, dataset and seed are an error."""
    return seed_groups.collect(paths, FILENAME, lambda path: LMRun(path, load(path)), LMGroup, LMResultsError,
                               DATASETS, _row_order, seeds, unfinished)


def _datasets(groups):
    return seed_groups.datasets_of(groups, DATASETS)


def default_baseline(groups, dataset, preferred="preln"):
    return preferred if (preferred, dataset) in groups else None


def compare_dataset(groups, dataset, baseline):
    """Every row of ``dataset`` against ``baseline``, paired by seed (see the module docstring).

    Returns ``{"dataset", "baseline", "unit": "nats/token", "rows": {row: {"seeds", "pairs": [{"seed",
    "delta", "loss", "baseline_loss"}], "mean_delta", "std_delta", "df", "ci95" ([low, high] or None),
    "excludes_zero" (None without an interval), "ppl_ratio", "ppl_ratio_ci95", "block_bootstrap"}},
    "notes": [...]}``; each pair has "block_bootstrap" too: :func:`~pn_fairseq.evaluation.lm_bootstrap.
    pooled_block_bootstrap`'s dict over its pair (the row's: over all pairs), or None where a run lacks
    per-block losses (the notes say which).
    """
    report = {"dataset": dataset, "baseline": baseline, "unit": "nats/token", "rows": {}, "notes": []}
    base = groups.get((baseline, dataset))
    if base is None or not base.runs:
        report["notes"].append(f"no finished '{baseline}' run on {dataset}: no comparison")
        return report
    base_by_seed = {run.seed: run for run in base.runs}
    for group in seed_groups.members(groups, dataset):
        if group.row == baseline or not group.runs:
            continue
        pairs, blocks = [], []  # blocks: (baseline's, row's) test_blocks of each pair
        for run in group.runs:
            if run.seed in base_by_seed:
                base_result = base_by_seed[run.seed].result
                loss, base_loss = run.result["test_loss_nats"], base_result["test_loss_nats"]
                pairs.append({"seed": run.seed, "delta": loss - base_loss, "loss": loss, "baseline_loss": base_loss})
                blocks.append((base_result.get("test_blocks"), run.result.get("test_blocks")))
        alone = [run.seed for run in group.runs if run.seed not in base_by_seed]
        if alone:
            report["notes"].append(f"{group.row}: seed(s) {', '.join(map(str, alone))} without a {baseline} "
                                   "run of the same seed: not compared")
        if not pairs:
            continue
        pooled = _block_tests(group.row, pairs, blocks, report["notes"])
        deltas = [p["delta"] for p in pairs]
        ci = t_interval(deltas)
        mean = statistics.fmean(deltas)
        report["rows"][group.row] = {
            "seeds": [p["seed"] for p in pairs], "pairs": pairs, "mean_delta": mean,
            "std_delta": statistics.stdev(deltas) if len(deltas) > 1 else None, "df": len(deltas) - 1,
            "ci95": list(ci) if ci else None, "excludes_zero": None if ci is None else (ci[0] > 0 or ci[1] < 0),
            "ppl_ratio": math.exp(mean), "ppl_ratio_ci95": [math.exp(v) for v in ci] if ci else None,
            "block_bootstrap": pooled,
        }
    return report


def _block_tests(row, pairs, blocks, notes):
    """Set each pair's ``block_bootstrap`` (``blocks``: its (baseline, row) test_blocks) and return
    the pooled bootstrap over test blocks, or None (every pair's None too) where a pair lacks
    blocks or the runs scored different ones, with a note."""
    for pair in pairs:
        pair["block_bootstrap"] = None
    lacking = [pair["seed"] for pair, (b, s) in zip(pairs, blocks) if b is None or s is None]
    if lacking:
        notes.append(f"{row}: seed(s) {', '.join(map(str, lacking))}: a run without per-block test losses "
                     "(results-lm.json older than fairseq-eval-lm --output-word-probs): no bootstrap over "
                     "test blocks; delete its results-lm.json and rerun the row script to evaluate again")
        return None
    try:
        pooled = pooled_block_bootstrap(blocks)  # checks every pair scored the same blocks first
    except BlockMismatch as err:
        notes.append(f"{row}: no bootstrap over test blocks: {err}")
        return None
    for pair, (b, s) in zip(pairs, blocks):
        pair["block_bootstrap"] = paired_block_bootstrap(b, s)
    return pooled


def compare_all(groups, baseline=None):
    """``{dataset: compare_dataset report}``: every dataset against ``baseline`` (default: preln
    where the dataset has it; none without it)."""
    out = {}
    for dataset in _datasets(groups):
        base = baseline or default_baseline(groups, dataset)
        if base is not None:
            out[dataset] = compare_dataset(groups, dataset, base)
    return out


def _valid_cell(runs):
    last = [(run.seed, run.last_valid) for run in runs]
    known = [v[1] for _, v in last if v is not None]
    if not known:
        return MISSING
    return seed_groups.mean_std_text(known, 2) + " (" + ", ".join(
        f"{seed}: {MISSING}" if v is None else f"{seed}: {v[1]:.2f} @ {v[0]}" for seed, v in last) + ")"


def perplexity_section(groups, dataset):
    """The perplexity table of ``dataset`` (a row per row with a result)."""
    section = Section(
        f"{dataset_name(dataset)}: test perplexity (lower is better)",
        ["row", "seeds", "test PPL (lower is better): mean ± std", "per seed (seed: PPL)",
         "paper PPL (measured − paper)",
         "valid PPL at the last validation: mean ± std (seed: PPL @ update)", "checkpoint scored"],
        text="Test perplexity from fairseq-eval-lm on the test split (eval mode: running statistics; "
        "per token, end of sentence included); lower is better. Mean and standard deviation (n - 1) "
        "over the finished seeds; unfinished or missing seeds are not averaged in. Validation "
        "perplexity: exp of the validation loss (nats) at each seed's last validation in train.log.")
    for g in seed_groups.members(groups, dataset):
        per_seed = [f"{run.seed}: {run.result['test_ppl']:.2f}" for run in g.runs] + g.absent_cells()
        paper = MISSING if g.paper_ppl is None else f"{g.paper_ppl:g} ({g.mean - g.paper_ppl:+.2f})"
        checkpoints = ", ".join(sorted({os.path.basename(run.result["checkpoint"]) for run in g.runs}))
        section.rows.append([g.row, g.seeds_cell(), seed_groups.mean_std_text(g.ppls, 2), ", ".join(per_seed),
                             paper, _valid_cell(g.runs), checkpoints])
        section.items += g.absent_items(FILENAME)
    return section


def comparison_section(report):
    """The paired-by-seed comparison of one :func:`compare_dataset` report, then its notes."""
    base = report["baseline"]
    section = Section(
        f"{dataset_name(report['dataset'])}: test loss against {base}, paired by seed",
        ["row", "seed pairs", f"Δ test loss vs {base} (nats/token)", "95% CI of Δ (Student t, n − 1 df)",
         "PPL ratio exp(Δ) [95% CI]", "bootstrap over test blocks: 95% CI of Δ, p", "per seed: Δ [block CI]"],
        text=f"Δ: the row's test loss minus {base}'s, in nats per token (the difference of ln perplexity), "
        f"seed k paired with seed k of {base}; negative: lower perplexity than {base}. Pooled: the mean of the "
        "seed pairs' Δ with Student's t 95% interval over them (n - 1 degrees of freedom), * where it "
        "leaves out 0; one seed pair: no interval. That interval is seed-to-seed variation; the bootstrap "
        "is test-set sampling: 1,000 paired resamples of the test blocks (fixed seed), the same draw for "
        "every pair, Δ averaged over the pairs; percentile 95% interval and two-sided p, * where it "
        "leaves out 0 (pn_fairseq/evaluation/lm_bootstrap.py). Neighbouring blocks of one text stream "
        "are correlated: that interval is somewhat narrow.")
    for row, r in report["rows"].items():
        per_seed = "; ".join(f"{p['seed']}: {p['delta']:+.4f}" + _block_ci_text(p["block_bootstrap"], brief=True)
                             for p in r["pairs"])
        seeds = ", ".join(map(str, r["seeds"]))
        if r["ci95"] is None:
            ci, ratio = "one seed: no interval", f"{r['ppl_ratio']:.3f}"
        else:
            ci = f"[{r['ci95'][0]:+.4f}, {r['ci95'][1]:+.4f}]"
            ratio = f"{r['ppl_ratio']:.3f} [{r['ppl_ratio_ci95'][0]:.3f}, {r['ppl_ratio_ci95'][1]:.3f}]"
        delta = f"{r['mean_delta']:+.4f}" + ("*" if r["excludes_zero"] else "")
        section.rows.append([row, seeds + (" (pooled)" if len(r["pairs"]) > 1 else ""), delta, ci, ratio,
                             _block_ci_text(r["block_bootstrap"]) or MISSING, per_seed])
    sections = [section] if report["rows"] else []
    if report["notes"]:
        sections.append(Section(items=list(report["notes"])))
    return sections


def _block_ci_text(test, brief=False):
    """``[low, high], p`` of a block bootstrap (* where the interval leaves out 0); '' for None."""
    if test is None:
        return ""
    low, high = test["ci95"]
    star = "*" if low > 0 or high < 0 else ""
    ci = f"[{low:+.4f}, {high:+.4f}]{star}"
    return f" {ci}" if brief else f"{ci}, p = {test['p_value']:.3f}"


def sections(groups, comparisons=None):
    """Everything pn-results prints of the LM runs: per dataset the perplexity table, then the
    comparison with the baseline (``comparisons``: :func:`compare_all`; None or {}: none)."""
    comparisons = comparisons or {}
    out = []
    for dataset in _datasets(groups):
        out.append(perplexity_section(groups, dataset))
        if dataset in comparisons:
            out += comparison_section(comparisons[dataset])
    return out


def ppl_per_row(groups):
    """What the perplexity-per-row plot shows, per dataset in table order: ``{dataset: [{"row",
    "seeds", "ppls", "mean", "std", "ci95", "complete"}]}`` (``ci95``: Student t over seeds, None
    for one seed)."""
    out = {}
    for (row, dataset), g in groups.items():
        if g.runs:
            ci = g.ci95
            out.setdefault(dataset, []).append({"row": row, "seeds": g.seed_list(), "ppls": g.ppls, "mean": g.mean,
                                                "std": g.std, "ci95": list(ci) if ci else None, "complete": g.complete})
    return out


def valid_curves(groups):
    """Validation perplexity against updates, a line per row: ``{dataset: [{"row", "seeds",
    "updates", "mean", "lo", "hi", "n", "values"}]}``: at every update any seed validated, the mean,
    minimum and maximum over the seeds that have it (``n`` of them; ``values``: per seed, in
    ``seeds`` order, None where a seed lacks the update)."""
    return seed_groups.curves(groups, lambda run: zip(run.result["valid"]["updates"], run.result["valid"]["ppl"]),
                              ("mean", "lo", "hi"))


def summary_json(groups, comparisons=None):
    """The JSON of pn-results ``--json`` for the LM runs: ``{"rows": [...], "comparisons": [...]}``."""
    rows = []
    for g in groups.values():
        ci = g.ci95
        rows.append({
            "row": g.row, "dataset": g.dataset, "n_seeds": g.n, "complete": g.complete, "mean_ppl": g.mean,
            "std_ppl": g.std, "ci95_of_mean_ppl": list(ci) if ci else None, "paper_ppl": g.paper_ppl,
            "seeds": [{"seed": run.seed, "test_ppl": run.result["test_ppl"],
                       "test_loss_nats": run.result["test_loss_nats"],
                       "last_valid": None if run.last_valid is None else
                       {"updates": run.last_valid[0], "ppl": run.last_valid[1]},
                       "updates": run.result["updates"], "wall_time_s": run.result["wall_time_s"],
                       "checkpoint": run.result["checkpoint"], "results": run.path} for run in g.runs],
            "unfinished": list(g.unfinished), "missing_seeds": list(g.missing_seeds)})
    return {"rows": rows, "comparisons": [c for c in (comparisons or {}).values()]}
