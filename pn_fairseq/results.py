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
                                    #   table uses pn_fairseq.scoring.PAPER_BLEU)
      "updates": 50000,             # optimizer updates of the scored checkpoint(s)
      "wall_time_s": 12345.6,       # training wall time in seconds
      "checkpoint": "checkpoints/pn/checkpoint_avg5.pt",
      "run_dir": "runs/iwslt14-pn"
    }

``pn-score --json`` writes the ``bleu``, ``bleu_main`` and ``sacrebleu_signature`` entries
in this form. Extra keys are allowed and ignored.
"""
import json
import numbers
import os
import sys

from pn_dataprep.atomic import write_text_atomic
from pn_fairseq.scoring import PAPER_BLEU

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

# Table order and labels: PowerNorm's Table 1 first, then the Pre-LN paper's rows.
ROWS = {
    "preln": "Transformer-LN (Pre-LN)",
    "bn": "Transformer-BN",
    "pnv": "Transformer-PN-V",
    "pn": "Transformer-PN",
    "postln": "Post-LN",
    "postln-warmup4k": "Post-LN, warm-up 4k",
    "postln-warmup500": "Post-LN, warm-up 500",
    "postln-nowarmup": "Post-LN, no warm-up",
    "preln-nowarmup": "Pre-LN, no warm-up",
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
    return data


def load_result(path):
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as err:
        raise ResultsError(f"{path}: not valid JSON ({err})") from None
    return validate_result(data, path)


def find_result_files(paths):
    """results.json files: each path itself, or every results.json below a directory."""
    files = []
    for path in paths:
        if os.path.isdir(path):
            for root, dirs, names in os.walk(path):
                dirs.sort()
                if "results.json" in names:
                    files.append(os.path.join(root, "results.json"))
        elif os.path.isfile(path):
            files.append(path)
        else:
            raise ResultsError(f"{path}: no such file or directory")
    return files


def collect(paths, warn=None):
    """Map (row, dataset) -> (path, result) for the results.json files under ``paths``."""
    warn = warn or (lambda message: print(message, file=sys.stderr))
    table = {}
    for path in find_result_files(paths):
        result = load_result(path)
        key = (result["row"], result["dataset"])
        if key in table:
            raise ResultsError(
                f"{path}: a second result for row '{key[0]}' on '{key[1]}' (first: {table[key][0]}); "
                "pass the runs to compare explicitly"
            )
        paper = PAPER_BLEU.get(key)
        if paper is not None and result["paper_bleu"] is not None and abs(result["paper_bleu"] - paper.value) > 1e-6:
            warn(f"warning: {path}: paper_bleu {result['paper_bleu']} differs from PAPER_BLEU {paper.value}; "
                 "the table uses PAPER_BLEU")
        table[key] = (path, result)
    return table


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


def render_table(table):
    """The markdown report for :func:`collect`'s mapping."""
    lines = ["| Model | " + " | ".join(DATASETS.values()) + " |", "|---" * (len(DATASETS) + 1) + "|"]
    for row, label in ROWS.items():
        cells = []
        for dataset in DATASETS:
            entry = table.get((row, dataset))
            result = entry[1] if entry else None
            paper_value, approx = _paper_for((row, dataset), result)
            cells.append(format_cell(result["bleu_main"] if result else None, paper_value, approx))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Cells: measured BLEU (paper, measured - paper); ~ marks a number the paper gives only "
        f"approximately; {MISSING}: not run / not reported.",
    ]
    if table:
        lines += [
            "",
            "| row | dataset | BLEU | fairseq | sacrebleu tok:none | compound split | sacrebleu detok "
            "| updates | wall time (h) | checkpoint |",
            "|---" * 10 + "|",
        ]
        signatures = []
        for row in ROWS:
            for dataset in DATASETS:
                if (row, dataset) not in table:
                    continue
                path, r = table[(row, dataset)]
                b = r["bleu"]
                lines.append(
                    f"| {row} | {dataset} | {r['bleu_main']:.2f} | {_number(b['fairseq'])} "
                    f"| {_number(b['sacrebleu_tok_none'])} | {_number(b['compound_split'])} "
                    f"| {_number(b['sacrebleu_detok'])} | {r['updates']} | {r['wall_time_s'] / 3600:.2f} "
                    f"| {r['checkpoint']} |"
                )
                if r["sacrebleu_signature"]:
                    signatures.append(f"- {row} / {dataset}: `{r['sacrebleu_signature']}`")
        if signatures:
            lines += ["", "sacrebleu signatures:"] + signatures
    return "\n".join(lines) + "\n"


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
