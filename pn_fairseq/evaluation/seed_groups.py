"""Seeds of one row on one dataset for the results files that are not results.json: what
:mod:`pn_fairseq.evaluation.lm_tables` (``results-lm.json``) and
:mod:`pn_fairseq.evaluation.mlm_tables` (``results-mlm.json``) share.

Each such file holds one seed of one row on one dataset (``row``, ``dataset``, ``seed`` keys).
:func:`collect` groups them as :mod:`pn_fairseq.evaluation.results` groups results.json: a seed
other rows of the dataset have (or ``seeds`` names) is *missing* from a row without it, a
``seed<k>`` directory beside a group's finished seeds without the file is *unfinished*; neither
is averaged in.

May import :mod:`pn_fairseq.evaluation.results` (its seed conventions and statistics); never
norms, models or analysis.
"""
import dataclasses
import os
import statistics
from typing import List

from pn_fairseq.evaluation.results import _SEED_DIR_RE, MISSING, SeedStats


@dataclasses.dataclass
class SeedRun:
    """One finished seed: its results file and contents."""

    path: str
    result: dict

    @property
    def seed(self):
        return self.result["seed"]

    @property
    def run_dir(self):
        return os.path.dirname(os.path.abspath(self.path))


@dataclasses.dataclass
class SeedGroup(SeedStats):
    """The seeds of one row on one dataset; a subclass names each run's number in ``values``."""

    row: str
    dataset: str
    runs: List[SeedRun] = dataclasses.field(default_factory=list)
    unfinished: List[str] = dataclasses.field(default_factory=list)  # run directories
    missing_seeds: List[int] = dataclasses.field(default_factory=list)

    def seeds_cell(self):
        """The table's "seeds" cell: ``3``, or ``2 of 3`` where seeds are unfinished or missing."""
        return str(self.n) if self.complete else f"{self.n} of {self.expected}"

    def absent_cells(self):
        """Per-seed cells of the seeds without a result: ``["<k>: unfinished", ..., "<k>: missing"]``."""
        return ([f"{seed_name(u)}: unfinished" for u in self.unfinished]
                + [f"{s}: missing" for s in self.missing_seeds])

    def absent_items(self, filename):
        """The lines under the table naming this row's unfinished and missing seeds."""
        items = [f"{self.row} seed {seed_name(u)}: unfinished (no {filename}): {u}" for u in self.unfinished]
        if self.missing_seeds:
            items.append(f"{self.row}: no run for seed(s) {', '.join(map(str, self.missing_seeds))} "
                         "(another row of this dataset has them, or --seeds names them)")
        return items


def find_files(paths, filename):
    """The files named ``filename`` under ``paths`` (directories searched; files named so taken)."""
    files = []
    for path in paths:
        if os.path.isdir(path):
            for root, dirs, names in os.walk(path):
                dirs.sort()
                if filename in names:
                    files.append(os.path.join(root, filename))
        elif os.path.basename(path) == filename:
            files.append(path)
    return files


def dir_seed(run_dir):
    """``k`` of a ``seed<k>`` run directory; None for any other name."""
    match = _SEED_DIR_RE.fullmatch(os.path.basename(os.path.normpath(run_dir)))
    return int(match.group(1)) if match else None


def seed_name(run_dir):
    seed = dir_seed(run_dir)
    return "?" if seed is None else str(seed)


def listed_order(known, name):
    """Sort key: the names in ``known`` in its order, then the rest by name."""
    return (list(known).index(name), "") if name in known else (len(known), name)


def collect(paths, filename, make_run, make_group, error, datasets, row_order, seeds=(), unfinished=()):
    """``({(row, dataset): group}, [the rest of unfinished])`` for the files named ``filename`` under
    ``paths``: ``make_run(path)`` reads one (a :class:`SeedRun`), ``make_group(row, dataset)`` makes a
    :class:`SeedGroup`; groups in table order (datasets in ``datasets``' order, then by name; rows by
    ``row_order(row)``), each group's runs by seed. ``seeds``: seeds every row is expected to have,
    besides those any row of its dataset has. ``unfinished``: run directories without a result
    (:func:`pn_fairseq.evaluation.results.collect_runs`' unclaimed
    :class:`~pn_fairseq.evaluation.results.Unfinished`); a ``seed<k>`` one beside a group's finished
    seeds joins the group, the rest is returned. Two results for one row, dataset and seed raise
    ``error``."""
    groups, seen = {}, {}
    for path in find_files(paths, filename):
        run = make_run(path)
        key = (run.result["row"], run.result["dataset"])
        if key + (run.seed,) in seen:
            raise error(f"{path}: a second result for row '{key[0]}' on '{key[1]}' seed {run.seed} "
                        f"(first: {seen[key + (run.seed,)]}); pass the runs to compare explicitly")
        seen[key + (run.seed,)] = path
        groups.setdefault(key, make_group(*key)).runs.append(run)
    for group in groups.values():
        group.runs.sort(key=lambda r: r.seed)
    rest = _claim(groups, unfinished)
    for dataset in {d for _, d in groups}:
        group_list = members(groups, dataset)
        every = {s for g in group_list for s in g.seed_list() + [dir_seed(u) for u in g.unfinished]} | set(seeds)
        every.discard(None)
        for g in group_list:
            g.missing_seeds = sorted(every - set(g.seed_list()) - {dir_seed(u) for u in g.unfinished})
    return dict(sorted(groups.items(), key=lambda kv: (listed_order(datasets, kv[0][1]), row_order(kv[0][0])))), rest


def _claim(groups, unfinished):
    # An unfinished seed<k> directory belongs to the group whose finished seeds sit beside it.
    by_parent = {}
    for group in groups.values():
        for run in group.runs:
            if dir_seed(run.run_dir) is not None:
                by_parent.setdefault(os.path.dirname(run.run_dir), group)
    rest = []
    for item in unfinished:
        run_dir = os.path.abspath(item.run_dir)
        group = by_parent.get(os.path.dirname(run_dir)) if dir_seed(run_dir) is not None else None
        if group is None:
            rest.append(item)
        else:
            group.unfinished.append(run_dir)
    return rest


def datasets_of(groups, known):
    """The datasets of ``groups``, ``known``'s first in its order, then the rest by name."""
    return sorted({d for _, d in groups}, key=lambda d: listed_order(known, d))


def members(groups, dataset):
    return [g for (_, d), g in groups.items() if d == dataset]


def mean_std_text(values, digits):
    """``mean ± std`` (n - 1) of ``values`` to ``digits`` places; the mean alone for one value."""
    if not values:
        return MISSING
    text = f"{statistics.fmean(values):.{digits}f}"
    return text + (f" ± {statistics.stdev(values):.{digits}f}" if len(values) > 1 else "")


def curves(groups, points, names):
    """A line per row of the per-seed ``points(run)`` (``[(update, value)]``): ``{dataset: [{"row",
    "seeds", "updates", names[0], names[1], names[2], "n", "values"}]}``: at every update any seed
    has, the mean, minimum and maximum over the seeds that have it (``n`` of them; ``values``: per
    seed, in ``seeds`` order, None where a seed lacks the update). A row without points has no line."""
    mean_name, low_name, high_name = names
    out = {}
    for (row, dataset), g in groups.items():
        per_seed = [dict(points(run)) for run in g.runs]
        updates = sorted({u for seed_points in per_seed for u in seed_points})
        if not updates:
            continue
        values = [[seed_points.get(u) for seed_points in per_seed] for u in updates]
        have = [[v for v in vs if v is not None] for vs in values]
        out.setdefault(dataset, []).append({
            "row": row, "seeds": g.seed_list(), "updates": updates, mean_name: [statistics.fmean(h) for h in have],
            low_name: [min(h) for h in have], high_name: [max(h) for h in have], "n": [len(h) for h in have],
            "values": [[vs[k] for vs in values] for k in range(len(per_seed))]})
    return out
