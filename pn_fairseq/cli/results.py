"""``pn-results``: collect ``results.json`` files into a table laid out like PowerNorm's Table 1.

Runs of the same row and dataset (one per seed) are grouped into mean, standard deviation and
seed count; every row is compared with the baseline row (``--baseline``, default ``preln``
where a dataset has it) by sacrebleu's paired bootstrap.
Where runs also scored their last checkpoint (results.json ``last_checkpoint``, SCORE_LAST=1), a
table per dataset compares it with the averaged one: averaged BLEU, last-checkpoint BLEU and their
difference, mean ± std over seeds.

Language-model rows (``results-lm.json``, scripts/run_lm_row.sh) get a test-perplexity table per
dataset (lower is better; mean ± std over seeds, each seed, the paper's, the last validation's)
and a comparison with the baseline row paired by seed (test loss in nats/token, Student-t
interval over the seed pairs): :mod:`pn_fairseq.evaluation.lm_tables`. Masked-LM (BERT) rows
(``results-mlm.json``, scripts/run_mlm_row.sh) get a validation-loss table per dataset (final and
best loss in nats, updates, divergences) with the updates each row needs to reach the reference
row's final loss (``--mlm-reference``, default ``postln-warmup``; the Pre-LN paper's Figure 5(a)):
:mod:`pn_fairseq.evaluation.mlm_tables`. A directory holding several kinds prints each.

The ``results.json`` contract, collection, seeds and rendering: :mod:`pn_fairseq.evaluation.results`;
the significance tests: :mod:`pn_fairseq.evaluation.significance`.
"""
import argparse
import json
import sys

from pn_common.atomic import write_text_atomic
from pn_fairseq.evaluation import lm_tables, mlm_tables, significance
from pn_fairseq.cli import quiet_library_logging, seed_list
from pn_fairseq.evaluation.lm_results import LMResultsError
from pn_fairseq.evaluation.mlm_results import MLMResultsError
from pn_fairseq.evaluation.results import (ROWS, ResultsError, Section, collect_runs, compare_all, render_markdown,
                                           report_sections, summary_json)
from pn_fairseq.evaluation.scoring import ScoringError


def build_parser():
    parser = argparse.ArgumentParser(
        prog="pn-results",
        description="Collect results.json files into a markdown table like PowerNorm's Table 1, group "
        "seeds, and test every row against a baseline row (sacrebleu's paired bootstrap); language-model "
        "rows' results-lm.json into a test-perplexity table (lower is better) compared with the "
        "baseline row seed by seed; masked-LM rows' results-mlm.json into a validation-loss table with the "
        "updates each row needs to reach the reference row's final loss.",
    )
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="results.json / results-lm.json / results-mlm.json files, or directories searched "
                        "recursively for them")
    parser.add_argument("--output", metavar="FILE.md", help="also write the table here (atomically)")
    parser.add_argument("--json", metavar="FILE.json",
                        help="also write every row's seeds, mean, std and the tests here (atomically)")
    parser.add_argument("--baseline", metavar="ROW",
                        help="row every other row is tested against (default: preln where a dataset has it)")
    parser.add_argument("--mlm-reference", metavar="ROW",
                        help="masked-LM rows: the row whose final validation loss the others are timed to reach "
                        f"(default: {mlm_tables.DEFAULT_REFERENCE}; a dataset without it gets a note)")
    parser.add_argument("--seeds", type=seed_list, default=(), metavar="1,2,3",
                        help="seeds every row should have: a row without one is marked as missing it "
                        "(default: the seeds any row of the dataset has)")
    parser.add_argument("--no-significance", action="store_true",
                        help="skip the comparisons with the baseline: the paired bootstrap (and deriving the "
                        "runs' text files), and the language models' comparison over seeds")
    return parser


def main(argv=None):
    quiet_library_logging()
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.baseline is not None and args.baseline not in ROWS:
        parser.error(f"--baseline: unknown row '{args.baseline}' (rows: {', '.join(ROWS)})")
    try:
        table, orphans = collect_runs(args.paths, seeds=args.seeds)
        lm_groups, orphans = lm_tables.collect(args.paths, seeds=args.seeds, unfinished=orphans)
        comparisons = {} if args.no_significance else compare_all(table, args.baseline)
        lm_comparisons = {} if args.no_significance else lm_tables.compare_all(lm_groups, args.baseline)
        mlm_groups, orphans = mlm_tables.collect(args.paths, seeds=args.seeds, unfinished=orphans)
    except (OSError, ResultsError, LMResultsError, MLMResultsError, ScoringError,
            significance.SignificanceError) as err:
        raise SystemExit(f"pn-results: error: {err}") from None
    mlm_rows = sorted({row for row, _ in mlm_groups})
    if mlm_groups and args.mlm_reference is not None and args.mlm_reference not in mlm_rows:
        raise SystemExit(f"pn-results: error: --mlm-reference: no results-mlm.json of row '{args.mlm_reference}' "
                         f"under {' '.join(args.paths)} (masked-LM rows there: {', '.join(mlm_rows)})")
    mlm_reports = mlm_tables.reach_all(mlm_groups, args.mlm_reference or mlm_tables.DEFAULT_REFERENCE)
    if not table and not lm_groups and not mlm_groups:
        print(f"warning: no results.json, results-lm.json or results-mlm.json under {' '.join(args.paths)}",
              file=sys.stderr)
    if table or not (lm_groups or mlm_groups):
        sections = report_sections(table, comparisons, orphans)
    else:  # language models only: no empty translation table
        sections = [Section(text="Unfinished runs (no results file):",
                            items=[f"{u.run_dir}: {u.state}" for u in orphans])] if orphans else []
    text = render_markdown(sections + lm_tables.sections(lm_groups, lm_comparisons)
                           + mlm_tables.sections(mlm_groups, mlm_reports))
    sys.stdout.write(text)
    if args.output:
        write_text_atomic(args.output, text)
    if args.json:
        summary = summary_json(table, comparisons, orphans)
        summary["lm"] = lm_tables.summary_json(lm_groups, lm_comparisons)
        summary["mlm"] = mlm_tables.summary_json(mlm_groups, mlm_reports)
        write_text_atomic(args.json, json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
