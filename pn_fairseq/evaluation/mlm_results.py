"""Masked-LM rows' results (``results-mlm.json``), written by ``scripts/run_mlm_row.sh``.

``python -m pn_fairseq.evaluation.mlm_results write --train-log LOG --output OUT ...`` reads the
validation records of a ``--log-format json`` training log (one every ``--validate-interval-updates``
and at each epoch end, on the same masked positions each time) and writes, atomically::

    {"kind": "mlm", "row": "preln-nowarmup", "dataset": "bert-multi30k", "seed": 1,
     "valid": {"updates": [100, 106, 200, ...], "loss_nats": [6.1, 6.0, 5.2, ...]},
     "final_valid_loss_nats": 3.9, "best_valid_loss_nats": 3.9,   # null without any validation
     "updates": 1200, "max_update": 1200, "wall_time_s": 4100.0,   # training seconds, all resumes
     "diverged": null,             # or {"update": 310, "reason": "gradients are Nan/Inf"}
     "train_command": "fairseq-train ..."}

Losses are per masked token in nats (fairseq logs bits); a non-finite validation loss is kept
as null. ``diverged``: the training stopped on a non-finite loss or gradient (``--failed``:
the driver saw fairseq-train fail; without a divergence in the log that is an error, not a result).
"""
import argparse
import json
import math
import sys

from pn_common.atomic import write_text_atomic

from .lm_results import load_checked, log_records, read_validation, training_wall

FILENAME = "results-mlm.json"
KEYS = ("kind", "row", "dataset", "seed", "valid", "final_valid_loss_nats", "best_valid_loss_nats", "updates",
        "max_update", "wall_time_s", "diverged", "train_command")
# What fairseq and the plugin print when a run blows up (fairseq's trainer, the NormDivergence line).
DIVERGENCE_MARKERS = ("gradients are Nan/Inf", "Minimum loss scale reached", "training diverged at update",
                      "FloatingPointError")


class MLMResultsError(ValueError):
    """Bad input; the message is one line naming the file."""


def read_progress(path):
    """``(last num_updates, seconds of training over all resumed runs)`` of a training log
    (:func:`~pn_fairseq.evaluation.lm_results.training_wall`)."""
    updates = 0
    for record in log_records(path):
        for key in ("num_updates", "valid_num_updates", "train_num_updates"):
            if key in record:
                updates = max(updates, int(float(record[key])))
    return updates, training_wall(path)


def find_divergence(path):
    """The first line of ``path`` that names a divergence, or None."""
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if any(marker in line for marker in DIVERGENCE_MARKERS):
                return line.strip()[-300:]
    return None


def build(args):
    valid = read_validation(args.train_log)
    losses = [v if math.isfinite(v) else None for v in valid["loss_nats"]]
    finite = [v for v in losses if v is not None]
    updates, wall = read_progress(args.train_log)
    diverged = None
    if args.failed:
        reason = find_divergence(args.train_log)
        if reason is None:
            raise MLMResultsError(f"{args.train_log}: fairseq-train failed without a divergence in its log "
                                  "(see the log's last lines; rerun to resume from checkpoint_last.pt)")
        diverged = {"update": updates, "reason": reason}
    return {
        "kind": "mlm", "row": args.row, "dataset": args.dataset, "seed": args.seed,
        "valid": {"updates": valid["updates"], "loss_nats": losses},
        "final_valid_loss_nats": losses[-1] if losses else None,
        "best_valid_loss_nats": min(finite) if finite else None,
        "updates": updates, "max_update": args.max_update, "wall_time_s": wall, "diverged": diverged,
        "train_command": args.train_command,
    }


def validate(data, path):
    """``data`` (a parsed results-mlm.json) if it holds every key with usable values, else
    MLMResultsError naming ``path`` and the key."""
    if not isinstance(data, dict):
        raise MLMResultsError(f"{path}: expected a JSON object, got {type(data).__name__}")
    for key in KEYS:
        if key not in data:
            raise MLMResultsError(f"{path}: missing key '{key}': rewrite it with scripts/run_mlm_row.sh")
    if data["kind"] != "mlm":
        raise MLMResultsError(f"{path}: 'kind' is {data['kind']!r}, expected 'mlm'")
    valid = data["valid"]
    if not isinstance(valid, dict) or not all(isinstance(valid.get(k), list) for k in ("updates", "loss_nats")) \
            or len(valid["updates"]) != len(valid["loss_nats"]):
        raise MLMResultsError(f"{path}: 'valid' must hold lists 'updates' and 'loss_nats' of one length")
    if valid["updates"] != sorted(set(valid["updates"])):
        raise MLMResultsError(f"{path}: 'valid.updates' must increase")
    for key in ("seed", "updates", "max_update"):
        if not isinstance(data[key], int) or isinstance(data[key], bool):
            raise MLMResultsError(f"{path}: '{key}' must be an integer, got {data[key]!r}")
    return data


def load(path):
    """The checked contents of a results-mlm.json (:func:`validate`)."""
    return load_checked(path, validate, MLMResultsError)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m pn_fairseq.evaluation.mlm_results")
    sub = p.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("write")
    for name in ("train-log", "output", "row", "dataset", "train-command"):
        w.add_argument("--" + name, required=True)
    w.add_argument("--seed", type=int, required=True)
    w.add_argument("--max-update", type=int, required=True)
    w.add_argument("--failed", action="store_true", help="fairseq-train exited with an error")
    c = sub.add_parser("check-diverged", help="exit 0 if the training log names a divergence (printed), else 1")
    c.add_argument("train_log")
    args = p.parse_args(argv)
    if args.cmd == "check-diverged":
        try:
            reason = find_divergence(args.train_log)
        except OSError as err:
            print(f"mlm_results: error: {err}", file=sys.stderr)
            return 1
        print(reason or f"no divergence in {args.train_log}")
        return 0 if reason else 1
    try:
        record = build(args)
    except (OSError, MLMResultsError) as err:
        print(f"mlm_results: error: {err}", file=sys.stderr)
        return 1
    write_text_atomic(args.output, json.dumps(record, indent=2, allow_nan=False) + "\n")
    print(json.dumps({k: record[k] for k in ("row", "seed", "updates", "final_valid_loss_nats", "diverged")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
