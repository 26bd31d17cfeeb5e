"""Language-model rows' results (``results-lm.json``), written by ``scripts/run_lm_row.sh``.

``python -m pn_fairseq.evaluation.lm_results write --eval-log EVAL --train-log LOG --output OUT ...``
reads fairseq-eval-lm's closing line (``Loss (base 2): L, Perplexity: P``) and the per-epoch
validation records of the training log, and writes, atomically::

    {"kind": "lm", "row": "pn", "dataset": "multi30k-lm", "seed": 1,
     "test_ppl": 61.2, "test_loss_nats": 4.114,           # ln(test_ppl): per token incl. </s>
     "checkpoint": "checkpoint_last.pt", "updates": 1500, "wall_time_s": 1234.5,
     "valid": {"updates": [...], "loss_nats": [...], "ppl": [...]},   # one point per validation
     "paper_ppl": null, "train_command": "fairseq-train ..."}

Perplexity is lower-better; fairseq logs losses in base 2, this file holds nats.
"""
import argparse
import json
import math
import re
import sys

from pn_common.atomic import write_text_atomic

EVAL_LINE = re.compile(r"Loss \(base 2\): ([0-9.eE+-]+|nan|inf), Perplexity: ([0-9.eE+-]+|nan|inf)")


class LMResultsError(ValueError):
    """Bad input; the message is one line naming the file."""


def read_eval_lm(path):
    """``(loss_base2, ppl)`` from the last closing line of a fairseq-eval-lm log."""
    found = None
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            m = EVAL_LINE.search(line)
            if m:
                found = (float(m.group(1)), float(m.group(2)))
    if found is None:
        raise LMResultsError(f"{path}: no 'Loss (base 2): ..., Perplexity: ...' line (did fairseq-eval-lm finish?)")
    if not all(math.isfinite(v) for v in found):
        raise LMResultsError(f"{path}: fairseq-eval-lm reports a non-finite loss/perplexity {found}: the model diverged")
    return found


def read_validation(path):
    """Per-validation ``updates`` and losses in nats from a ``--log-format json`` training log."""
    points = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            start = line.find("{")
            if start < 0:
                continue
            try:
                record = json.loads(line[start:])
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and "valid_loss" in record and "valid_num_updates" in record:
                points[int(float(record["valid_num_updates"]))] = float(record["valid_loss"]) * math.log(2)
    updates = sorted(points)
    losses = [points[u] for u in updates]
    return {"updates": updates, "loss_nats": losses, "ppl": [math.exp(v) for v in losses]}


def build(args):
    loss2, ppl = read_eval_lm(args.eval_log)
    valid = read_validation(args.train_log)
    return {
        "kind": "lm", "row": args.row, "dataset": args.dataset, "seed": args.seed,
        "test_ppl": ppl, "test_loss_nats": loss2 * math.log(2), "checkpoint": args.checkpoint,
        "updates": args.updates, "wall_time_s": args.wall_time, "valid": valid,
        "paper_ppl": float(args.paper) if args.paper else None, "train_command": args.train_command,
    }


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m pn_fairseq.evaluation.lm_results")
    sub = p.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("write")
    for name in ("eval-log", "train-log", "output", "row", "dataset", "checkpoint", "train-command"):
        w.add_argument("--" + name, required=True)
    w.add_argument("--seed", type=int, required=True)
    w.add_argument("--updates", type=int, required=True)
    w.add_argument("--wall-time", type=float, default=0.0)
    w.add_argument("--paper", default="")
    args = p.parse_args(argv)
    try:
        record = build(args)
    except (OSError, LMResultsError) as err:
        print(f"lm_results: error: {err}", file=sys.stderr)
        return 1
    write_text_atomic(args.output, json.dumps(record, indent=2) + "\n")
    print(json.dumps({k: record[k] for k in ("row", "seed", "test_ppl", "updates")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
