"""Helpers the row scripts (scripts/run_row.sh) call: ``python -m pn_fairseq.cli.row_results``.

* ``count-test DATA SRC TGT``: number of sentences in the binarized test split (so that
  ``pn-score --expected-sentences`` notices any sentence fairseq-generate dropped).
* ``write``: merge ``pn-score --json`` output with the run's metadata into
  ``results.json`` (schema: :mod:`pn_fairseq.results`), atomically.
"""
import argparse
import json
import sys

from pn_fairseq import results
from pn_fairseq.checkpoints import checkpoint_updates
from pn_fairseq.scoring import ScoringError, count_split_sentences


def write_results(args):
    with open(args.scores) as f:
        scores = json.load(f)
    result = results.build_result(
        scores, row=args.row, dataset=args.dataset, paper_bleu=float(args.paper) if args.paper else None,
        updates=checkpoint_updates(args.last_checkpoint), wall_time_s=float(args.wall_time),
        checkpoint=args.checkpoint, run_dir=args.run_dir, averaged_checkpoints=args.averaged,
        beam=args.beam, lenpen=args.lenpen,
    )
    results.write_result(args.output, result)
    print(json.dumps(result, indent=2))


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m pn_fairseq.cli.row_results")
    sub = parser.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("count-test")
    c.add_argument("data")
    c.add_argument("src")
    c.add_argument("tgt")
    w = sub.add_parser("write")
    for name in ("scores", "row", "dataset", "paper", "last-checkpoint", "wall-time", "checkpoint", "run-dir", "output"):
        w.add_argument("--" + name, required=name != "paper", default="")
    w.add_argument("--averaged", type=int, default=1)
    w.add_argument("--beam", type=int, required=True)
    w.add_argument("--lenpen", type=float, required=True)
    args = parser.parse_args(argv)
    if args.cmd == "count-test":
        try:
            print(count_split_sentences(args.data, args.src, args.tgt))
        except ScoringError as err:
            raise SystemExit(str(err)) from None
    else:
        write_results(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
