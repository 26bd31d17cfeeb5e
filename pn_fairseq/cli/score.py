"""``pn-score``: BLEU of a fairseq-generate output file, as the papers report it.

See :mod:`pn_fairseq.evaluation.scoring` for the two schemes. Exits with status 1 when fairseq's
printed BLEU, its recomputation and sacrebleu ``tokenize='none'`` disagree by more than
0.01 (the recipe requires them to agree), unless ``--allow-mismatch`` is given, and when
test sentences are missing from the output (fairseq-generate drops a short last batch
unless run with ``--required-batch-size-multiple 1``), unless ``--allow-missing`` is
given. The JSON is written either way, with ``"agree"`` / ``"complete"`` false.
"""
import argparse
import json
import sys

from pn_common.atomic import write_text_atomic
from pn_fairseq.evaluation import scoring
from pn_fairseq.cli import quiet_library_logging


def build_parser():
    parser = argparse.ArgumentParser(
        prog="pn-score",
        description="Score a fairseq-generate output file (tokenized BLEU for IWSLT14/Multi30k, "
        "compound-split tokenized BLEU plus detokenized sacrebleu for WMT14).",
    )
    parser.add_argument("--gen-output", required=True, metavar="FILE",
                        help="stdout of fairseq-generate (S-/T-/H-/D- lines and the 'Generate ... BLEU4 =' line)")
    parser.add_argument("--scheme", choices=("tokenized", "wmt"), default="tokenized",
                        help="tokenized: IWSLT14/Multi30k protocol; wmt: WMT14 protocol (default: %(default)s)")
    parser.add_argument("--raw-ref", metavar="FILE",
                        help="raw (untokenized) reference file, one line per test sentence in the "
                        "original order; with --scheme wmt adds detokenized sacrebleu")
    parser.add_argument("--lang", default="de", help="target language for Moses detokenization (default: %(default)s)")
    parser.add_argument("--json", metavar="OUT", help="also write the numbers to this JSON file (atomically)")
    parser.add_argument("--expected-sentences", type=int, metavar="N",
                        help="number of sentences in the test set; any id of 0..N-1 missing from the "
                        "output is an error (without it only gaps below the largest id are seen)")
    parser.add_argument("--allow-mismatch", action="store_true",
                        help="exit 0 even if fairseq's BLEU and sacrebleu tokenize=none disagree")
    parser.add_argument("--allow-missing", action="store_true",
                        help="exit 0 even if test sentences are missing from the output")
    return parser


def main(argv=None):
    quiet_library_logging()
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.raw_ref is not None and args.scheme != "wmt":
        parser.error("--raw-ref is only used with --scheme wmt")
    try:
        result = scoring.score_generate_output(args.gen_output, args.scheme, args.raw_ref, args.lang,
                                               args.expected_sentences)
    except (OSError, scoring.ScoringError) as err:
        raise SystemExit(f"pn-score: error: {err}") from None
    print(scoring.format_report(result))
    if args.json:
        write_text_atomic(args.json, json.dumps(result, indent=2) + "\n")
    status = 0
    if not result["agree"] and not args.allow_mismatch:
        print("pn-score: error: fairseq's BLEU and sacrebleu tokenize=none disagree "
              "(use --allow-mismatch to accept)", file=sys.stderr)
        status = 1
    if not result["complete"] and not args.allow_missing:
        print(f"pn-score: error: {result['missing_sentences']} test sentence(s) missing from "
              f"{args.gen_output} (use --allow-missing to accept)", file=sys.stderr)
        status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
