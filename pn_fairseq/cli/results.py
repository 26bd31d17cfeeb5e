"""``pn-results``: collect ``results.json`` files into a table laid out like PowerNorm's Table 1.

The ``results.json`` contract, collection and rendering: :mod:`pn_fairseq.results`.
"""
import argparse
import sys

from pn_dataprep.atomic import write_text_atomic
from pn_fairseq.cli import quiet_library_logging
from pn_fairseq.results import ResultsError, collect, render_table


def build_parser():
    parser = argparse.ArgumentParser(
        prog="pn-results",
        description="Collect results.json files into a markdown table like PowerNorm's Table 1.",
    )
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="results.json files, or directories searched recursively for them")
    parser.add_argument("--output", metavar="FILE.md", help="also write the table here (atomically)")
    return parser


def main(argv=None):
    quiet_library_logging()
    args = build_parser().parse_args(argv)
    try:
        table = collect(args.paths)
    except (OSError, ResultsError) as err:
        raise SystemExit(f"pn-results: error: {err}") from None
    if not table:
        print(f"warning: no results.json under {' '.join(args.paths)}", file=sys.stderr)
    text = render_table(table)
    sys.stdout.write(text)
    if args.output:
        write_text_atomic(args.output, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
