"""Helpers the row scripts (scripts/run_row.sh) call: ``python -m pn_fairseq.cli.row_results``.

* ``count-test DATA SRC TGT``: number of sentences in the binarized test split (so that
  ``pn-score --expected-sentences`` notices any sentence fairseq-generate dropped).
* ``write``: merge ``pn-score --json`` output with the run's metadata into
  ``results.json`` (schema: :mod:`pn_fairseq.cli.results`), atomically.
"""
import argparse
import json
import os
import sys

from pn_fairseq.cli import write_text_atomic
from pn_fairseq.cli.results import validate_result


def count_test(data, src, tgt, split="test"):
    from fairseq.data import data_utils

    prefix = os.path.join(data, f"{split}.{src}-{tgt}.{src}")
    dataset = data_utils.load_indexed_dataset(prefix, None)
    if dataset is None:
        raise SystemExit(f"no binarized {split} split at {prefix}.{{bin,idx}}: prepare the data first")
    return len(dataset)


def checkpoint_updates(path):
    from pn_fairseq.cli.average_checkpoints import load_checkpoint

    return int(load_checkpoint(path)["optimizer_history"][-1]["num_updates"])


def write_results(args):
    with open(args.scores) as f:
        scores = json.load(f)
    result = {
        "row": args.row,
        "dataset": args.dataset,
        "bleu": scores["bleu"],
        "bleu_main": scores["bleu_main"],
        "sacrebleu_signature": scores.get("sacrebleu_signature"),
        "paper_bleu": float(args.paper) if args.paper else None,
        "updates": checkpoint_updates(args.last_checkpoint),
        "wall_time_s": float(args.wall_time),
        "checkpoint": args.checkpoint,
        "run_dir": args.run_dir,
        "averaged_checkpoints": args.averaged,
        "beam": args.beam,
        "lenpen": args.lenpen,
    }
    validate_result(result, args.output)
    write_text_atomic(args.output, json.dumps(result, indent=2) + "\n")
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
        print(count_test(args.data, args.src, args.tgt))
    else:
        write_results(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
