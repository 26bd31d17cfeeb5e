"""``results.json`` files: build, validate, load, collect, and render them as PowerNorm's Table 1.

The library of ``pn-results`` (:mod:`pn_fairseq.cli.results`) and of the row scripts'
``python -m pn_fairseq.cli.row_results write``.

The ``results.json`` contract
-----------------------------
Each experiment ("row script") writes one ``results.json`` into its run directory::

    {
      "row": "pn",                  # one of ROWS
      "dataset": "iwslt14",         # one of DATASETS
      "bleu": {                     # every key present, each a number or null
        "fairseq": 35.87,           #   BLEU4 printed by fairseq-generate (tokenized)
        "sacrebleu_tok_none": 35.87,#   sacrebleu --tokenize none on the same text
        "compound_split": null,     #   WMT14: tokenized BLEU after compound splitting
        "sacrebleu_detok": null     #   WMT14: detokenized sacrebleu (13a)
      },
      "bleu_main": 35.87,           # number compared with the paper (fairseq BLEU4 for
                                    #   iwslt14/multi30k/synthetic, compound_split for wmt14)
      "sacrebleu_signature": "...", # signature of sacrebleu_detok if set, else of
                                    #   sacrebleu_tok_none; or null
      "paper_bleu": 35.9,           # the paper's number, or null (informational: the
                                    #   table uses pn_fairseq.evaluation.scoring.PAPER_BLEU)
      "updates": 50000,             # optimizer updates of the scored checkpoint(s)
      "wall_time_s": 12345.6,       # training wall time in seconds, every resumed part counted
      "checkpoint": "checkpoints/pn/checkpoint_avg5.pt",
      "run_dir": "runs/iwslt14-pn"
    }

``pn-score --json`` writes the ``bleu``, ``bleu_main`` and ``sacrebleu_signature`` entries
in this form. Extra keys are allowed and ignored; the row scripts add ``seed``,
``averaged_checkpoints``, ``beam``, ``lenpen`` and ``texts`` (the names of the sorted
hypothesis/reference files beside results.json, see :mod:`pn_fairseq.evaluation.significance`), and what a
rerun compares (:mod:`pn_fairseq.evaluation.row_state`): ``train_command``, ``decoding``, ``max_update``,
``max_epoch`` and the recipe's ``recipe_max_update`` / ``recipe_max_epoch``, ``extra_args``,
``update_freq``, ``nproc``, ``settings_match_recipe`` and ``recipe_differences``. A run whose
``settings_match_recipe`` is false is marked :data:`OFF_RECIPE` in the table, with a footnote.
A run that also scored its last checkpoint beside the averaged one (scripts/run_row.sh
``SCORE_LAST=1``) records ``last_checkpoint``: ``{"bleu": {...}, "bleu_main": N}`` as above; where any
run of a dataset has it, the report adds a table of the averaged against the last checkpoint
(:func:`averaging_section`).

Seeds
-----
Runs of the same row and dataset are grouped (:class:`RowGroup`): one run per seed, the seed
taken from results.json's ``seed``, else from the ``--seed`` of the run's ``train.done``, else
from a run directory named ``seed<k>``. A group reports the mean, the standard deviation
(n - 1) and the 95% Student-t interval of the mean of its finished seeds' ``bleu_main``, and
says what it lacks: a seed directory beside the others without results.json is *unfinished*
(training, stopped, or trained but not scored), and a seed that other rows of the dataset have
is *missing*. Neither is averaged in, and the table says so. Two results for the same row,
dataset and seed are an error.
"""
import dataclasses
import json
import numbers
import os
import re
import shlex
import statistics
import sys
from typing import List, Optional

from pn_common.atomic import write_text_atomic
from pn_fairseq.evaluation.lm_results import FILENAME as LM_RESULTS
from pn_fairseq.evaluation.mlm_results import FILENAME as MLM_RESULTS
from pn_fairseq.evaluation.scoring import PAPER_BLEU
from pn_fairseq.evaluation.significance import format_delta, format_interval, format_p

RESULTS_SCHEMA_KEYS = (
    "row",
    "dataset",
    "bleu",
    "bleu_main",
    "sacrebleu_signature",
    "paper_bleu",
    "updates",
    "wall_time_s",
    "checkpoint",
    "run_dir",
)
BLEU_KEYS = ("fairseq", "sacrebleu_tok_none", "compound_split", "sacrebleu_detok")

# Table order and labels: PowerNorm's Table 1 first, then the Pre-LN paper's rows, then ablations.
ROWS = {
    "preln": "Transformer-LN (Pre-LN)",
    "bn": "Transformer-BN",
    "pnv": "Transformer-PN-V",
    "pn": "Transformer-PN",
    "postln": "Post-LN",
    # The Pre-LN paper (configs/preln, configs/multi30k-preln, configs/wmt14-preln; docs/preln.md).
    "postln-warmup4k": "Post-LN, warm-up 4k",
    "postln-warmup500": "Post-LN, warm-up 500",
    "postln-nowarmup": "Post-LN, no warm-up",
    "postln-lr1e-3-warmup4k": "Post-LN, lr 1e-3, warm-up 4k",
    "postln-lr1e-3-warmup500": "Post-LN, lr 1e-3, warm-up 500",
    "postln-lr1e-3-nowarmup": "Post-LN, lr 1e-3, no warm-up",
    "postln-sgd-lr5e-3-warmup4k": "Post-LN, SGD lr 5e-3, warm-up 4k",
    "postln-sgd-lr5e-3-nowarmup": "Post-LN, SGD lr 5e-3, no warm-up",
    "postln-sgd-lr1e-3-warmup4k": "Post-LN, SGD lr 1e-3, warm-up 4k",
    "postln-sgd-lr1e-3-nowarmup": "Post-LN, SGD lr 1e-3, no warm-up",
    "postln-fixed1e-4": "Post-LN, fixed lr 1e-4",
    "preln-nowarmup": "Pre-LN, no warm-up",
    "preln-warmup4k": "Pre-LN, warm-up 4k",
    "postln-radam": "Post-LN, RAdam",
    "preln-radam": "Pre-LN, RAdam",
    "postln-lr7e-4-warmup4k": "Post-LN, lr 7e-4, warm-up 4k",
    "postln-lr1.5e-3-warmup4k": "Post-LN, lr 1.5e-3, warm-up 4k",
    "preln-lr7e-4-nowarmup": "Pre-LN, lr 7e-4, no warm-up",
    "preln-lr1.5e-3-nowarmup": "Pre-LN, lr 1.5e-3, no warm-up",
    # The group-scaling ablation of PN (configs/*/pn-nogroup.conf, pn-paper*.conf).
    "pn-nogroup": "PN, no group scaling",
    "pn-paper": "PN, paper algorithm",
    "pn-paper-group": "PN, paper algorithm + group scaling",
    # Beyond the two papers (docs/usage.md "Beyond the two papers"): configs/*/{rms,scale,dyt,deepnorm}.conf.
    "rms": "RMSNorm (Pre-LN)",
    "scale": "ScaleNorm (Pre-LN)",
    "dyt": "DyT (Pre-LN)",
    "deepnorm": "DeepNorm (Post-LN)",
}
DATASETS = {"iwslt14": "IWSLT14", "wmt14": "WMT14", "multi30k": "Multi30k", "synthetic": "synthetic"}
MISSING = "—"


class ResultsError(ValueError):
    """A results.json file breaks the contract; the message names the file."""


def _is_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def validate_result(data, path):
    """Check ``data`` (a parsed results.json) against the contract; raise ResultsError."""
    if not isinstance(data, dict):
        raise ResultsError(f"{path}: expected a JSON object, got {type(data).__name__}")
    for key in RESULTS_SCHEMA_KEYS:
        if key not in data:
            raise ResultsError(f"{path}: missing key '{key}'")
    if data["row"] not in ROWS:
        raise ResultsError(f"{path}: 'row' is {data['row']!r}, expected one of {', '.join(ROWS)}")
    if data["dataset"] not in DATASETS:
        raise ResultsError(f"{path}: 'dataset' is {data['dataset']!r}, expected one of {', '.join(DATASETS)}")
    bleu = data["bleu"]
    if not isinstance(bleu, dict):
        raise ResultsError(f"{path}: 'bleu' must be an object with keys {', '.join(BLEU_KEYS)}")
    for key in BLEU_KEYS:
        if key not in bleu:
            raise ResultsError(f"{path}: missing key 'bleu.{key}'")
        if bleu[key] is not None and not _is_number(bleu[key]):
            raise ResultsError(f"{path}: 'bleu.{key}' must be a number or null, got {bleu[key]!r}")
    checks = [
        ("bleu_main", _is_number, "a number"),
        ("paper_bleu", lambda v: v is None or _is_number(v), "a number or null"),
        ("sacrebleu_signature", lambda v: v is None or isinstance(v, str), "a string or null"),
        ("updates", lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
        ("wall_time_s", _is_number, "a number"),
        ("checkpoint", lambda v: isinstance(v, str), "a string"),
        ("run_dir", lambda v: isinstance(v, str), "a string"),
    ]
    for key, ok, expected in checks:
        if not ok(data[key]):
            raise ResultsError(f"{path}: '{key}' must be {expected}, got {data[key]!r}")
    last = data.get("last_checkpoint")  # optional: SCORE_LAST=1 runs (scripts/run_row.sh)
    if last is not None and not (isinstance(last, dict) and _is_number(last.get("bleu_main"))):
        raise ResultsError(f"{path}: 'last_checkpoint' must be an object with a number 'bleu_main', got {last!r}")
    return data


def load_result(path):
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as err:
        raise ResultsError(f"{path}: not valid JSON ({err})") from None
    return validate_result(data, path)


def _walk(paths):
    """results.json files under ``paths``, and run directories without one (unfinished runs).
    A language-model run's ``results-lm.json`` (:mod:`pn_fairseq.evaluation.lm_tables` reads it)
    or masked-LM run's ``results-mlm.json`` (:mod:`pn_fairseq.evaluation.mlm_tables`) is a finished
    run, not an unfinished one, and is no results.json."""
    others = (LM_RESULTS, MLM_RESULTS)
    files, unfinished = [], []
    for path in paths:
        if os.path.isdir(path):
            for root, dirs, names in os.walk(path):
                dirs.sort()
                if "results.json" in names:
                    files.append(os.path.join(root, "results.json"))
                elif not any(name in names for name in others) and any(name in names for name in _RUN_MARKERS):
                    unfinished.append(root)
        elif os.path.isfile(path):
            if os.path.basename(path) not in others:
                files.append(path)
        else:
            raise ResultsError(f"{path}: no such file or directory")
    return files, unfinished


def find_result_files(paths):
    """results.json files: each path itself, or every results.json below a directory."""
    return _walk(paths)[0]


# scripts/archive_results.py writes it into the archive for a run started but not finished, so
# that a results/ tree says which seeds are under way where it holds no train.log of theirs.
PROGRESS = "in-progress.json"
_RUN_MARKERS = ("train.log", "train.done", "checkpoint_last.pt", PROGRESS)
_SEED_DIR_RE = re.compile(r"seed(\d+)")
_LOGGED_UPDATES_RE = re.compile(r'num_updates": "?(\d+)')


def _seed_from_train_done(run_dir):
    try:
        with open(os.path.join(run_dir, "train.done"), encoding="utf-8") as f:
            argv = shlex.split(f.readline())
    except (OSError, ValueError):
        return None
    for flag, value in zip(argv, argv[1:]):
        if flag == "--seed" and value.isdigit():
            return int(value)
    return None


def run_seed(run_dir, result=None):
    """The seed of a run: results.json's ``seed``, train.done's ``--seed``, or a ``seed<k>`` directory name."""
    if result is not None and isinstance(result.get("seed"), int) and not isinstance(result.get("seed"), bool):
        return result["seed"]
    seed = _seed_from_train_done(run_dir)
    if seed is not None:
        return seed
    match = _SEED_DIR_RE.fullmatch(os.path.basename(os.path.normpath(run_dir)))
    return int(match.group(1)) if match else None


def unfinished_state(run_dir):
    """What an unfinished run directory holds, in words."""
    if os.path.isfile(os.path.join(run_dir, "train.done")):
        return "trained, not scored (no results.json)"
    if not os.path.isfile(os.path.join(run_dir, "train.log")) and os.path.isfile(os.path.join(run_dir, PROGRESS)):
        return archived_progress(os.path.join(run_dir, PROGRESS))
    last = None
    try:
        with open(os.path.join(run_dir, "train.log"), encoding="utf-8", errors="replace") as f:
            for line in f:
                for match in _LOGGED_UPDATES_RE.finditer(line):
                    last = int(match.group(1))
    except OSError:
        pass
    where = f", last logged update {last}" if last is not None else ""
    return f"training or stopped (no train.done{where})"


def archived_progress(path):
    """What an archived in-progress.json (scripts/archive_results.py) says of its run, in words."""
    try:
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
    except (OSError, ValueError):
        record = None
    if not isinstance(record, dict):
        return f"started, not finished when archived ({PROGRESS} unreadable)"
    at = ", ".join(f"{name} {record[key]}" for key, name in (("epoch", "epoch"), ("num_updates", "update"))
                   if record.get(key) is not None)
    when = f" {record['recorded']}" if record.get("recorded") else ""
    return f"not finished when archived{when}" + (f" (at {at})" if at else "") + f" ({PROGRESS})"


OFF_RECIPE = "†"


def recipe_note(result):
    """How a run departs from its row's recipe, in words, or None: the row scripts record
    ``settings_match_recipe`` and ``recipe_differences`` (e.g. ``MAX_UPDATE=60 (recipe: 600)``) in
    results.json; a results.json without them is taken as the recipe."""
    if result.get("settings_match_recipe") is not False:
        return None
    differences = result.get("recipe_differences")
    if isinstance(differences, list) and differences:
        return "; ".join(map(str, differences))
    return "settings differ from the recipe"


@dataclasses.dataclass
class Run:
    """One finished run: its results.json and seed."""

    path: str
    result: dict
    seed: Optional[int]

    @property
    def run_dir(self):
        return os.path.dirname(os.path.abspath(self.path))


@dataclasses.dataclass
class Unfinished:
    """A run directory without results.json."""

    run_dir: str
    seed: Optional[int]
    state: str


def t_interval(values, level=0.975):
    """``(low, high)``: mean ± t(level, n - 1) · s / √n over ``values``; None for fewer than two."""
    n = len(values)
    if n < 2:
        return None
    from scipy.stats import t

    mean = statistics.fmean(values)
    half = float(t.ppf(level, n - 1)) * statistics.stdev(values) / n ** 0.5
    return mean - half, mean + half


class SeedStats:
    """Statistics over the seeds of one row: a group has ``runs``, ``unfinished``,
    ``missing_seeds`` and names each run's number in :meth:`values` (BLEU, perplexity)."""

    def values(self):
        raise NotImplementedError

    @property
    def n(self):
        return len(self.runs)

    @property
    def mean(self):
        return statistics.fmean(self.values()) if self.runs else None

    @property
    def std(self):
        """Sample standard deviation (n - 1); None for fewer than two seeds."""
        return statistics.stdev(self.values()) if self.n >= 2 else None

    @property
    def ci95(self):
        """95% Student-t interval of the mean over seeds; None for fewer than two seeds."""
        return t_interval(self.values())

    @property
    def complete(self):
        return not self.unfinished and not self.missing_seeds

    @property
    def expected(self):
        return self.n + len(self.unfinished) + len(self.missing_seeds)

    def seed_list(self):
        return [run.seed for run in self.runs]


@dataclasses.dataclass
class RowGroup(SeedStats):
    """The runs (one per seed) of one row on one dataset; see "Seeds" in the module docstring."""

    row: str
    dataset: str
    runs: List[Run] = dataclasses.field(default_factory=list)
    unfinished: List[Unfinished] = dataclasses.field(default_factory=list)
    missing_seeds: List[int] = dataclasses.field(default_factory=list)

    @property
    def bleus(self):
        return [run.result["bleu_main"] for run in self.runs]

    def values(self):
        return self.bleus

    def as_dict(self):
        ci = self.ci95
        return {
            "row": self.row, "dataset": self.dataset, "n_seeds": self.n, "complete": self.complete,
            "mean": self.mean, "std": self.std, "ci95_of_mean": list(ci) if ci else None,
            "seeds": [{"seed": run.seed, "bleu": run.result["bleu_main"], "bleu_all": run.result["bleu"],
                       "updates": run.result["updates"], "wall_time_s": run.result["wall_time_s"],
                       "off_recipe": recipe_note(run.result), "results": run.path} for run in self.runs],
            "unfinished": [dataclasses.asdict(u) for u in self.unfinished],
            "missing_seeds": self.missing_seeds,
        }


def collect_runs(paths, warn=None, seeds=()):
    """Group the runs under ``paths``: ({(row, dataset): RowGroup}, [Unfinished runs no group claims]).
    ``seeds``: seeds every row is expected to have, besides those any row of its dataset has."""
    warn = warn or (lambda message: print(message, file=sys.stderr))
    files, unfinished_dirs = _walk(paths)
    groups, seen = {}, {}
    for path in files:
        result = load_result(path)
        key = (result["row"], result["dataset"])
        run = Run(path, result, run_seed(os.path.dirname(os.path.abspath(path)), result))
        seed_key = key + (run.seed,)
        if seed_key in seen:
            seed_text = "" if run.seed is None else f" seed {run.seed}"
            raise ResultsError(
                f"{path}: a second result for row '{key[0]}' on '{key[1]}'{seed_text} (first: {seen[seed_key]}); "
                "pass the runs to compare explicitly"
            )
        seen[seed_key] = path
        paper = PAPER_BLEU.get(key)
        if paper is not None and result["paper_bleu"] is not None and abs(result["paper_bleu"] - paper.value) > 1e-6:
            warn(f"warning: {path}: paper_bleu {result['paper_bleu']} differs from PAPER_BLEU {paper.value}; "
                 "the table uses PAPER_BLEU")
        if recipe_note(result) is not None:
            warn(f"warning: {path}: not the recipe of row '{key[0]}': {recipe_note(result)}; "
                 f"marked {OFF_RECIPE} in the table, not reported as the row")
        groups.setdefault(key, RowGroup(*key)).runs.append(run)
    for group in groups.values():
        group.runs.sort(key=lambda r: (r.seed is None, r.seed or 0))
    # An unfinished seed<k> directory belongs to the group whose finished seeds sit beside it.
    by_parent = {}
    for group in groups.values():
        for run in group.runs:
            if _SEED_DIR_RE.fullmatch(os.path.basename(run.run_dir)):
                by_parent.setdefault(os.path.dirname(run.run_dir), group)
    orphans = []
    for run_dir in unfinished_dirs:
        run_dir = os.path.abspath(run_dir)
        item = Unfinished(run_dir, run_seed(run_dir), unfinished_state(run_dir))
        group = by_parent.get(os.path.dirname(run_dir)) if _SEED_DIR_RE.fullmatch(os.path.basename(run_dir)) else None
        (group.unfinished if group else orphans).append(item)
    # A seed that other rows of the dataset have, finished or not, is missing from a row without it.
    for dataset in {d for _, d in groups}:
        members = [g for (_, d), g in groups.items() if d == dataset]
        every = {s for g in members for s in g.seed_list() + [u.seed for u in g.unfinished] if s is not None}
        every |= set(seeds)
        for g in members:
            have = set(g.seed_list()) | {u.seed for u in g.unfinished}
            if None not in g.seed_list():
                g.missing_seeds = sorted(every - have)
    return groups, orphans


def collect(paths, warn=None, seeds=()):
    """Map (row, dataset) -> :class:`RowGroup` for the results.json files under ``paths``
    (``seeds``: as in :func:`collect_runs`)."""
    return collect_runs(paths, warn, seeds)[0]


def _format_paper(value, approx):
    return ("~" if approx else "") + f"{value:g}"


def format_cell(measured, paper_value=None, approx=False):
    """``measured (paper, delta)``; ``—`` stands in for what is missing."""
    if paper_value is None:
        return MISSING if measured is None else f"{measured:.2f}"
    paper_text = _format_paper(paper_value, approx)
    if measured is None:
        return f"{MISSING} ({paper_text})"
    return f"{measured:.2f} ({paper_text}, {measured - paper_value:+.2f})"


def _paper_for(key, result):
    paper = PAPER_BLEU.get(key)
    if paper is not None:
        return paper.value, paper.approx
    if result is not None and result["paper_bleu"] is not None:
        return result["paper_bleu"], False
    return None, False


def _number(value):
    return MISSING if value is None else f"{value:.2f}"


def _measured_text(group):
    if group is None or not group.runs:
        return None
    text = f"{group.mean:.2f}"
    if group.n > 1:
        text += f" ± {group.std:.2f}"
    if group.n > 1 or not group.complete:
        text += f" [{group.n} seeds]" if group.complete else f" [{group.n} of {group.expected} seeds]"
    return text


def _cell(group, paper_value, approx):
    measured = None if group is None or not group.runs else group.mean
    cell = format_cell(measured, paper_value, approx)
    text = _measured_text(group)
    if text is not None:
        cell = cell.replace(f"{measured:.2f}", text, 1)
    if group is not None and any(recipe_note(run.result) is not None for run in group.runs):
        cell += " " + OFF_RECIPE
    return cell


def _seed_text(seed):
    return "?" if seed is None else str(seed)


@dataclasses.dataclass
class Section:
    """One part of the report: pn-results renders it as markdown (:func:`render_markdown`),
    ``pn-analyze report`` as HTML, from the same cells, so the two cannot disagree."""

    title: str = ""  # heading; "" for none
    header: List[str] = dataclasses.field(default_factory=list)  # table columns; [] for no table
    rows: List[List[str]] = dataclasses.field(default_factory=list)
    text: str = ""  # paragraph after the table
    items: List[str] = dataclasses.field(default_factory=list)  # bullet list after the paragraph


def render_markdown(sections):
    """Sections as markdown: ``### title``, a pipe table, the paragraph, the bullets."""
    lines = []
    for s in sections:
        if s.title:
            lines += ["", f"### {s.title}", ""]
        elif s.header and lines:
            lines.append("")
        if s.header:
            lines += ["| " + " | ".join(s.header) + " |", "|---" * len(s.header) + "|"]
            lines += ["| " + " | ".join(row) + " |" for row in s.rows]
        if s.text:
            lines += ([""] if lines else []) + [s.text]
        lines += [f"- {item}" for item in s.items]
    return "\n".join(lines) + "\n"


def seeds_section(groups, dataset):
    """The seeds table of ``dataset`` (mean ± std, interval, each seed), or None when every row
    has one finished seed and nothing unfinished or missing (the main table says it all)."""
    members = [groups[(row, dataset)] for row in ROWS if (row, dataset) in groups]
    if not any(g.n > 1 or not g.complete for g in members):
        return None
    section = Section(
        f"{DATASETS[dataset]}: seeds",
        ["row", "seeds", "BLEU mean ± std", "95% CI of the mean", "per seed (seed: BLEU)",
         "valid loss at the last update: mean ± std (per seed)"],
        text="Mean and standard deviation (n - 1) over the finished seeds; the interval is Student's t "
        "over seeds. Unfinished or missing seeds are not averaged in. The validation loss (fairseq's, "
        "label-smoothed, base 2, from each run's train.log at the update its checkpoint holds) does "
        "not depend on the decoder's output length, which BLEU's brevity penalty does.")
    for g in members:
        seeds = str(g.n) if g.complete else f"{g.n} of {g.expected}"
        mean = f"{g.mean:.2f}" + (f" ± {g.std:.2f}" if g.std is not None else "") if g.runs else MISSING
        ci = f"[{g.ci95[0]:.2f}, {g.ci95[1]:.2f}]" if g.ci95 else MISSING
        per_seed = [f"{_seed_text(r.seed)}: {r.result['bleu_main']:.2f}" for r in g.runs]
        per_seed += [f"{_seed_text(u.seed)}: unfinished" for u in g.unfinished]
        per_seed += [f"{s}: missing" for s in g.missing_seeds]
        section.rows.append([g.row, seeds, mean, ci, ", ".join(per_seed), _valid_loss_cell(g.runs)])
    for g in members:
        for u in g.unfinished:
            section.items.append(f"{g.row} seed {_seed_text(u.seed)}: {u.state}: {u.run_dir}")
        if g.missing_seeds:
            section.items.append(f"{g.row}: no run for seed(s) {', '.join(map(str, g.missing_seeds))} "
                                 "(another row of this dataset has them, or --seeds names them)")
    return section


def final_valid_loss(run):
    """The validation loss a run's ``train.log`` records at the update of its checkpoint, or None
    (no log, no validation at that update)."""
    return valid_loss_at(run.run_dir, run.result["updates"])


def valid_loss_at(run_dir, updates):
    """The validation loss ``run_dir/train.log`` records at ``updates``, or None (no log, no
    validation at that update)."""
    from pn_fairseq.evaluation.curves import LogError, parse_validation_log

    try:
        points = dict(parse_validation_log(os.path.join(run_dir, "train.log")))
    except (OSError, LogError):
        return None
    return points.get(updates)


def _valid_loss_cell(runs):
    losses = [(run.seed, final_valid_loss(run)) for run in runs]
    known = [loss for _, loss in losses if loss is not None]
    if not known:
        return MISSING
    mean = f"{statistics.fmean(known):.3f}" + (f" ± {statistics.stdev(known):.3f}" if len(known) > 1 else "")
    return mean + " (" + ", ".join(f"{_seed_text(seed)}: {MISSING if loss is None else f'{loss:.3f}'}"
                                   for seed, loss in losses) + ")"


def significance_sections(comparison):
    """The paired-bootstrap tables of one :func:`pn_fairseq.evaluation.significance.compare_dataset` report
    (one per BLEU definition with compared rows), then its notes."""
    sections = []
    base = comparison["baseline"]
    name = DATASETS[comparison["dataset"]]
    for entry in comparison["definitions"].values():
        if not entry["rows"]:
            continue
        section = Section(
            f"{name}: paired bootstrap against {base} ({entry['label']})",
            ["row", "seed pairs", f"Δ BLEU vs {base}", "95% CI of Δ", "p", "per seed pair: Δ [95% CI] p"],
            text=f"Δ: the row's BLEU minus {base}'s, * where p < {comparison['alpha']:g}. Paired bootstrap on "
            f"sacrebleu's resamples of the test set ({comparison['n_samples']}, seed {comparison['seed']}); p "
            "two-sided (twice the share of resampled Δ across zero), so * only where the interval leaves out 0; "
            "with several seeds, seed k of the row is paired with seed k of the baseline and the pooled "
            "Δ is the mean of the pairs' Δ (the difference of the two rows' mean BLEU over the seeds both "
            "have), tested on "
            "resamples that draw the same sentences for every pair.")
        for row in ROWS:
            if row not in entry["rows"]:
                continue
            r = entry["rows"][row]
            pooled = r["pooled"]
            seeds = ", ".join(_seed_text(s) for s in r["seeds"]) + (" (pooled)" if len(r["pairs"]) > 1 else "")
            pairs = "; ".join(f"{_seed_text(pair['seed'])}: {format_delta(pair)} {format_interval(pair)} "
                              f"{format_p(pair['p_value'])}" for pair in r["pairs"])
            if pooled is None:  # the seeds could not be pooled (a note says why)
                section.rows.append([row, seeds, MISSING, MISSING, MISSING, pairs])
            else:
                section.rows.append([row, seeds, format_delta(pooled), format_interval(pooled),
                                     format_p(pooled["p_value"]), pairs])
        sections.append(section)
    if comparison["notes"]:
        sections.append(Section(items=list(comparison["notes"])))
    return sections


def _mean_std(values):
    """``mean ± std`` (n - 1; the mean alone for one value), or MISSING for none."""
    if not values:
        return MISSING
    text = f"{statistics.fmean(values):.2f}"
    return text + (f" ± {statistics.stdev(values):.2f}" if len(values) > 1 else "")


def averaging_rows(groups, dataset):
    """What averaging buys, per row of ``dataset`` whose runs scored their last checkpoint too
    (results.json ``last_checkpoint``, scripts/run_row.sh SCORE_LAST=1): ``[{"row", "averaged_checkpoints":
    [N per seed], "seeds": [{"seed", "averaged", "last", "delta"}], "not_scored": [seed], "averaged",
    "last", "delta": {"mean", "std"}}]`` (delta: averaged minus last, per seed; std n - 1, None for one
    seed). Empty when no run of the dataset has ``last_checkpoint``."""
    out = []
    for row in ROWS:
        group = groups.get((row, dataset))
        if group is None:
            continue
        pairs = [(run, run.result["last_checkpoint"]["bleu_main"]) for run in group.runs
                 if run.result.get("last_checkpoint") is not None]
        if not pairs:
            continue
        seeds = [{"seed": run.seed, "averaged": run.result["bleu_main"], "last": last,
                  "delta": run.result["bleu_main"] - last} for run, last in pairs]

        def stats(key):
            values = [s[key] for s in seeds]
            return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else None}

        out.append({"row": row, "averaged_checkpoints": [run.result.get("averaged_checkpoints") for run, _ in pairs],
                    "seeds": seeds, "not_scored": [run.seed for run in group.runs
                                                   if run.result.get("last_checkpoint") is None],
                    "averaged": stats("averaged"), "last": stats("last"), "delta": stats("delta")})
    return out


def averaging_section(groups, dataset):
    """The averaged checkpoint against the last one, a row per table row (mean ± std over the seeds
    that scored both), or None when no run of ``dataset`` scored its last checkpoint."""
    rows = averaging_rows(groups, dataset)
    if not rows:
        return None
    section = Section(
        f"{DATASETS[dataset]}: averaged checkpoint against the last one",
        ["row", "seeds", "checkpoints averaged", "averaged BLEU", "last-checkpoint BLEU", "Δ averaged − last",
         "per seed (seed: averaged / last, Δ)"],
        text="Both decoded with the row's beam and length penalty and scored alike (scripts/run_row.sh "
        "SCORE_LAST=1: checkpoint_last.pt beside the average); Δ is each seed's averaged minus last BLEU, "
        "mean ± standard deviation (n - 1) over the seeds that scored both.")
    for r in rows:
        per_seed = [f"{_seed_text(s['seed'])}: {s['averaged']:.2f} / {s['last']:.2f}, {s['delta']:+.2f}"
                    for s in r["seeds"]]
        per_seed += [f"{_seed_text(seed)}: last not scored" for seed in r["not_scored"]]
        averaged = sorted({MISSING if n is None else str(n) for n in r["averaged_checkpoints"]})
        delta = r["delta"]
        delta_text = f"{delta['mean']:+.2f}" + (f" ± {delta['std']:.2f}" if delta["std"] is not None else "")
        section.rows.append([r["row"], str(len(r["seeds"])), ", ".join(averaged),
                             _mean_std([s["averaged"] for s in r["seeds"]]), _mean_std([s["last"] for s in r["seeds"]]),
                             delta_text, "; ".join(per_seed)])
    missing = [row for row in ROWS if (row, dataset) in groups and groups[(row, dataset)].runs
               and row not in {r["row"] for r in rows}]
    if missing:
        section.items.append(f"no scored last checkpoint: {', '.join(missing)} (averaged fewer than 2 "
                             "checkpoints, or ran without SCORE_LAST=1)")
    return section


def dataset_sections(groups, dataset, comparison):
    """Per dataset: the seeds table (when there are several seeds or some are lacking), the averaged
    against the last checkpoint (when some run scored both), and the significance tables of
    ``comparison`` (None: no tests)."""
    seeds = seeds_section(groups, dataset)
    averaging = averaging_section(groups, dataset)
    return ([seeds] if seeds else []) + ([averaging] if averaging else []) + \
        (significance_sections(comparison) if comparison else [])


def compare_all(table, baseline=None):
    """pn-results' significance tests: ``{dataset: compare_dataset report}``, every row of each
    dataset against ``baseline`` (default: preln where the dataset has it; none without it)."""
    from pn_fairseq.evaluation import significance

    comparisons = {}
    for dataset in sorted({d for _, d in table}):
        base = baseline or significance.default_baseline(table, dataset)
        if base is not None:
            comparisons[dataset] = significance.compare_dataset(table, dataset, base)
    return comparisons


def main_table_section(table):
    """PowerNorm's Table 1 layout, with only the rows and datasets that have a finished run."""
    rows = [row for row in ROWS if any(r == row and g.runs for (r, _), g in table.items())]
    datasets = [d for d in DATASETS if any(ds == d and g.runs for (_, ds), g in table.items())]
    if not rows:
        return Section(text="No results (no results.json found).")
    section = Section(header=["Model"] + [DATASETS[d] for d in datasets], text=(
        "Cells: measured BLEU (paper, measured - paper); ~ marks a number the paper gives only "
        f"approximately; {MISSING}: not run / not reported. With several seeds: mean ± standard "
        "deviation [finished seeds, of those expected]. Only rows and datasets with a result are shown."))
    for row in rows:
        cells = []
        for dataset in datasets:
            group = table.get((row, dataset))
            result = group.runs[0].result if group and group.runs else None
            paper_value, approx = _paper_for((row, dataset), result)
            cells.append(_cell(group, paper_value, approx))
            section.items += [f"{OFF_RECIPE} {row} on {dataset}, seed {_seed_text(run.seed)}: not the row's recipe: "
                              f"{recipe_note(run.result)}" for run in (group.runs if group else ())
                              if recipe_note(run.result) is not None]
        section.rows.append([ROWS[row]] + cells)
    return section


def runs_section(table):
    """Every finished run: all its BLEU numbers, updates, time, checkpoint; then the sacrebleu signatures."""
    section = Section(header=["row", "dataset", "seed", "BLEU", "fairseq", "sacrebleu tok:none", "compound split",
                              "sacrebleu detok", "updates", "wall time (h)", "checkpoint"])
    for row in ROWS:
        for dataset in DATASETS:
            if (row, dataset) not in table:
                continue
            for run in table[(row, dataset)].runs:
                r = run.result
                b = r["bleu"]
                section.rows.append([row, dataset, _seed_text(run.seed), f"{r['bleu_main']:.2f}", _number(b["fairseq"]),
                                     _number(b["sacrebleu_tok_none"]), _number(b["compound_split"]),
                                     _number(b["sacrebleu_detok"]), str(r["updates"]),
                                     f"{r['wall_time_s'] / 3600:.2f}", r["checkpoint"]])
                signature = f"{row} / {dataset}: `{r['sacrebleu_signature']}`"
                if r["sacrebleu_signature"] and signature not in section.items:
                    section.items.append(signature)
    if section.items:
        section.text = "sacrebleu signatures:"
    return section


def report_sections(table, comparisons=None, orphans=()):
    """Everything pn-results prints, as :class:`Section` s (see :func:`render_table`)."""
    comparisons = comparisons or {}
    sections = [main_table_section(table)]
    for dataset in DATASETS:
        if any(d == dataset for _, d in table) or dataset in comparisons:
            sections += dataset_sections(table, dataset, comparisons.get(dataset))
    if orphans:
        sections.append(Section(text="Unfinished runs (no results.json):",
                                items=[f"{u.run_dir}: {u.state}" for u in orphans]))
    if table:
        sections.append(runs_section(table))
    return sections


def render_table(table, comparisons=None, orphans=()):
    """The markdown report for :func:`collect`'s mapping (groups of seeds).

    ``comparisons``: {dataset: :func:`pn_fairseq.evaluation.significance.compare_dataset` report};
    ``orphans``: unfinished runs no row claims (:func:`collect_runs`).
    """
    return render_markdown(report_sections(table, comparisons, orphans))


def summary_json(table, comparisons=None, orphans=()):
    """The JSON report: every row's seeds (each seed's BLEU), mean, std, and the significance tests."""
    return {
        "rows": [table[(row, dataset)].as_dict() for row in ROWS for dataset in DATASETS if (row, dataset) in table],
        "significance": [comparisons[d] for d in DATASETS if comparisons and d in comparisons],
        "averaging": {d: rows for d in DATASETS if (rows := averaging_rows(table, d))},
        "unfinished": [dataclasses.asdict(u) for u in orphans],
    }


def build_result(scores, *, row, dataset, paper_bleu, updates, wall_time_s, checkpoint, run_dir,
                 averaged_checkpoints, beam, lenpen):
    """The results.json record of a row: ``pn-score --json`` output (``scores``) plus the run's metadata."""
    return {
        "row": row,
        "dataset": dataset,
        "bleu": scores["bleu"],
        "bleu_main": scores["bleu_main"],
        "sacrebleu_signature": scores.get("sacrebleu_signature"),
        "paper_bleu": paper_bleu,
        "updates": updates,
        "wall_time_s": wall_time_s,
        "checkpoint": checkpoint,
        "run_dir": run_dir,
        "averaged_checkpoints": averaged_checkpoints,
        "beam": beam,
        "lenpen": lenpen,
    }


def write_result(path, result):
    """Check ``result`` against the contract and write it to ``path`` as JSON, atomically."""
    validate_result(result, path)
    write_text_atomic(path, json.dumps(result, indent=2) + "\n")


def bleu_per_row(table):
    """What the BLEU-per-row plot shows, per dataset in table order:
    ``{dataset: [{"row", "seeds", "bleus", "mean", "ci95", "complete"}]}`` (``ci95``: the Student-t
    interval of the mean over seeds, None for one seed)."""
    out = {}
    for dataset in DATASETS:
        for row in ROWS:
            group = table.get((row, dataset))
            if group is None or not group.runs:
                continue
            out.setdefault(dataset, []).append({
                "row": row, "seeds": group.seed_list(), "bleus": group.bleus, "mean": group.mean,
                "ci95": group.ci95, "complete": group.complete,
            })
    return out
