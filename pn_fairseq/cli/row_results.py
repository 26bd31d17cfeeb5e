"""Helpers the row scripts (scripts/run_row.sh) call: ``python -m pn_fairseq.cli.row_results``.

* ``count-test DATA SRC TGT``: number of sentences in the binarized test split (so that
  ``pn-score --expected-sentences`` notices any sentence fairseq-generate dropped).
* ``write``: merge ``pn-score --json`` output with the run's metadata into
  ``results.json`` (schema: :mod:`pn_fairseq.results`), atomically; with ``--gen-output``
  first write the sorted hypotheses and references beside it (``test.hyp.txt``,
  ``test.ref.txt``; with ``--raw-ref`` also ``test.hyp.detok.txt``, ``test.ref.raw.txt``),
  the texts :mod:`pn_fairseq.significance` compares.
* ``texts RUN_DIR...``: write those text files for finished runs that lack them, from their
  ``generate-test.txt`` (runs made before the files existed).
"""
import os
import argparse
import json
import sys

from pn_fairseq import results, significance
from pn_fairseq.checkpoints import checkpoint_updates
from pn_fairseq.scoring import ScoringError, count_split_sentences


def write_results(args):
    with open(args.scores) as f:
        scores = json.load(f)
    texts = None
    if args.gen_output:
        names = significance.write_test_texts(os.path.dirname(os.path.abspath(args.output)), args.gen_output,
                                              args.raw_ref or None, args.lang)
        texts = {"hypotheses": names[0], "references": names[1]}
        if len(names) > 2:
            texts.update(hypotheses_detok=names[2], references_raw=names[3])
    result = results.build_result(
        scores, row=args.row, dataset=args.dataset, paper_bleu=float(args.paper) if args.paper else None,
        updates=checkpoint_updates(args.last_checkpoint), wall_time_s=float(args.wall_time),
        checkpoint=args.checkpoint, run_dir=args.run_dir, averaged_checkpoints=args.averaged,
        beam=args.beam, lenpen=args.lenpen,
    )
    if args.seed is not None:
        result["seed"] = args.seed
    if texts is not None:
        result["texts"] = texts
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
    w.add_argument("--seed", type=int, help="the run's training seed (recorded in results.json)")
    w.add_argument("--gen-output", help="fairseq-generate output: write the sorted texts beside results.json")
    w.add_argument("--raw-ref", help="with --gen-output: raw references (WMT14), for the detokenized texts")
    w.add_argument("--lang", default="de", help="target language for Moses detokenization (default: %(default)s)")
    t = sub.add_parser("texts")
    t.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    args = parser.parse_args(argv)
    if args.cmd == "count-test":
        try:
            print(count_split_sentences(args.data, args.src, args.tgt))
        except ScoringError as err:
            raise SystemExit(str(err)) from None
    elif args.cmd == "texts":
        for run_dir in args.run_dirs:
            gen = os.path.join(run_dir, significance.GENERATE_FILE)
            if os.path.exists(os.path.join(run_dir, significance.HYP_FILE)):
                print(f"{run_dir}: already has {significance.HYP_FILE}")
                continue
            try:
                names = significance.write_test_texts(run_dir, gen)
            except (OSError, ScoringError, significance.SignificanceError) as err:
                raise SystemExit(f"{run_dir}: {err}") from None
            print(f"{run_dir}: wrote {', '.join(names)}")
    else:
        write_results(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
