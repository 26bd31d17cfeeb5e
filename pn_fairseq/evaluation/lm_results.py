"""Language-model rows' results (``results-lm.json``), written by ``scripts/run_lm_row.sh``.

``python -m pn_fairseq.evaluation.lm_results write --eval-log EVAL --train-log LOG --output OUT ...``
reads fairseq-eval-lm's closing line (``Loss (base 2): L, Perplexity: P``) and the per-epoch
validation records of the training log, and writes, atomically::

    {"kind": "lm", "row": "pn", "dataset": "lm-multi30k", "seed": 1,
     "test_ppl": 61.2, "test_loss_nats": 4.114,           # ln(test_ppl): per token incl. </s>
     "checkpoint": "checkpoint_last.pt", "updates": 1500, "wall_time_s": 1234.5,   # training, all resumes
     "valid": {"updates": [...], "loss_nats": [...], "ppl": [...]},   # one point per validation
     "paper_ppl": null, "train_command": "fairseq-train ...",
     "test_blocks": {"loss_nats": [...], "tokens": [...]}}   # optional, see below

``test_blocks`` (optional; null or absent in files written before it): each test block's summed
loss in nats and its token count, block i at index i (fairseq-eval-lm's sample id), read from
the per-token log-probabilities ``fairseq-eval-lm --output-word-probs`` logs (``ID word [ln p]\t...``,
6 decimals: the blocks' total agrees with the closing line to rounding, checked on writing). They
make the paired bootstrap over test blocks of :mod:`pn_fairseq.evaluation.lm_bootstrap` possible.

Perplexity is lower-better; fairseq logs losses in base 2, this file holds nats.
:func:`load` reads one back, checked (every key above, finite perplexities); the tables and plots
of ``pn-results`` / ``pn-plot`` / ``pn-analyze report``: :mod:`pn_fairseq.evaluation.lm_tables`.
"""
import argparse
import json
import math
import re
import sys

from pn_common.atomic import write_text_atomic

EVAL_LINE = re.compile(r"Loss \(base 2\): ([0-9.eE+-]+|nan|inf), Perplexity: ([0-9.eE+-]+|nan|inf)")
# --output-word-probs: "<sample id> <word> [<ln p>]\t<word> [<ln p>]...", after the logger's name
# (fairseq's own format "... | fairseq_cli.eval_lm | " or Python's default "INFO:fairseq_cli.eval_lm:").
BLOCK_LINE = re.compile(r"fairseq_cli\.eval_lm(?: \| |:)(\d+) (.*)$")
WORD_SCORE = re.compile(r" \[(-?(?:[0-9.]+(?:[eE][+-]?\d+)?|inf|nan))\]$")


FILENAME = "results-lm.json"
KEYS = ("kind", "row", "dataset", "seed", "test_ppl", "test_loss_nats", "checkpoint", "updates",
        "wall_time_s", "valid", "paper_ppl", "train_command")
VALID_KEYS = ("updates", "loss_nats", "ppl")
# fairseq-eval-lm prints the loss to 4 decimals (bits) and the perplexity to 2: ln(test_ppl) and
# test_loss_nats agree to 1e-4 * ln 2 + 0.005 / ppl nats; more apart means a damaged file.
_ROUNDING_NATS = 1e-3


class LMResultsError(ValueError):
    """Bad input; the message is one line naming the file."""


def _number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def validate(data, path):
    """``data`` (a parsed results-lm.json) if it holds every key of the schema with usable values,
    else LMResultsError naming ``path`` and the key."""
    fix = "rewrite it with scripts/run_lm_row.sh (it reuses the trained checkpoint)"
    if not isinstance(data, dict):
        raise LMResultsError(f"{path}: expected a JSON object, got {type(data).__name__}")
    for key in KEYS:
        if key not in data:
            raise LMResultsError(f"{path}: missing key '{key}': {fix}")
    if data["kind"] != "lm":
        raise LMResultsError(f"{path}: 'kind' is {data['kind']!r}, expected 'lm'")
    for key in ("row", "dataset"):
        if not isinstance(data[key], str) or not data[key]:
            raise LMResultsError(f"{path}: '{key}' must be a non-empty string, got {data[key]!r}")
    for key in ("seed", "updates"):
        if not (isinstance(data[key], int) and not isinstance(data[key], bool)):
            raise LMResultsError(f"{path}: '{key}' must be an integer, got {data[key]!r}")
    for key in ("test_ppl", "test_loss_nats", "wall_time_s"):
        if not _number(data[key]) or not math.isfinite(data[key]):
            raise LMResultsError(f"{path}: '{key}' must be a finite number, got {data[key]!r} "
                                 "(a non-finite perplexity: the model diverged; nothing to tabulate)")
    if data["test_ppl"] < 1:
        raise LMResultsError(f"{path}: 'test_ppl' is {data['test_ppl']!r}, below 1 (no perplexity is)")
    if abs(math.log(data["test_ppl"]) - data["test_loss_nats"]) > _ROUNDING_NATS + 0.005 / data["test_ppl"]:
        raise LMResultsError(f"{path}: 'test_loss_nats' {data['test_loss_nats']!r} is not ln('test_ppl' "
                             f"{data['test_ppl']!r}) (bits for nats?): {fix}")
    if data["paper_ppl"] is not None and not (_number(data["paper_ppl"]) and math.isfinite(data["paper_ppl"])):
        raise LMResultsError(f"{path}: 'paper_ppl' must be a finite number or null, got {data['paper_ppl']!r}")
    if data.get("test_blocks") is not None:
        check_blocks(data["test_blocks"], data["test_loss_nats"], path)
    valid = data["valid"]
    if not isinstance(valid, dict) or any(not isinstance(valid.get(k), list) for k in VALID_KEYS):
        raise LMResultsError(f"{path}: 'valid' must be an object of lists {', '.join(VALID_KEYS)}: {fix}")
    if len({len(valid[k]) for k in VALID_KEYS}) != 1:
        raise LMResultsError(f"{path}: 'valid' lists {', '.join(VALID_KEYS)} differ in length: {fix}")
    for key in VALID_KEYS:
        bad = [v for v in valid[key] if not _number(v) or not math.isfinite(v)]
        if bad:
            raise LMResultsError(f"{path}: 'valid.{key}' holds {bad[0]!r}, not a finite number "
                                 "(a non-finite validation perplexity: the model diverged)")
    return data


def load_checked(path, check, error):
    """``check(parsed JSON of path, path)``; invalid JSON raises ``error`` naming the file."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as err:
        raise error(f"{path}: not valid JSON ({err})") from None
    return check(data, path)


def load(path):
    """The checked contents of a results-lm.json (:func:`validate`)."""
    return load_checked(path, validate, LMResultsError)


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


def read_block_losses(path):
    """``{"loss_nats": [...], "tokens": [...]}`` per test block (index = sample id) from the
    ``--output-word-probs`` lines of a fairseq-eval-lm log, or None when it has none."""
    blocks = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            m = BLOCK_LINE.search(line.rstrip("\n"))
            if not m:
                continue
            scores = [WORD_SCORE.search(item) for item in m.group(2).split("\t")]
            if not all(scores):
                continue  # another message that happens to start with a number
            block = int(m.group(1))
            if block in blocks:
                raise LMResultsError(f"{path}: test block {block} is logged twice (two evaluations in one log?): "
                                     "rerun fairseq-eval-lm into an empty log")
            blocks[block] = [float(sc.group(1)) for sc in scores]
    if not blocks:
        return None
    if sorted(blocks) != list(range(len(blocks))):
        missing = sorted(set(range(max(blocks) + 1)) - set(blocks))
        raise LMResultsError(f"{path}: per-block scores of blocks 0..{max(blocks)} lack {missing[:5]} "
                             "(a truncated log?): rerun fairseq-eval-lm")
    losses = [-sum(blocks[i]) for i in range(len(blocks))]
    if not all(math.isfinite(v) for v in losses):
        raise LMResultsError(f"{path}: a test block has a non-finite loss: the model diverged")
    return {"loss_nats": losses, "tokens": [len(blocks[i]) for i in range(len(blocks))]}


def check_blocks(blocks, loss_nats, path):
    """``blocks`` if well formed and adding up to ``loss_nats`` per token, else LMResultsError."""
    fix = "rerun fairseq-eval-lm with --output-word-probs (scripts/run_lm_row.sh does)"
    if not isinstance(blocks, dict) or any(not isinstance(blocks.get(k), list) for k in ("loss_nats", "tokens")):
        raise LMResultsError(f"{path}: 'test_blocks' must be null or an object of lists loss_nats, tokens: {fix}")
    losses, tokens = blocks["loss_nats"], blocks["tokens"]
    if len(losses) != len(tokens) or not losses:
        raise LMResultsError(f"{path}: 'test_blocks' has {len(losses)} losses and {len(tokens)} token counts: {fix}")
    if any(not _number(v) or not math.isfinite(v) for v in losses) or \
            any(not isinstance(n, int) or isinstance(n, bool) or n < 1 for n in tokens):
        raise LMResultsError(f"{path}: 'test_blocks' holds a non-finite loss or a token count below 1: {fix}")
    per_token = sum(losses) / sum(tokens)
    # 6 printed decimals per token score: the blocks' mean is off by at most 5e-7 nats per token.
    if abs(per_token - loss_nats) > _ROUNDING_NATS:
        raise LMResultsError(f"{path}: the test blocks' losses give {per_token:.5f} nats/token, the closing line "
                             f"{loss_nats:.5f}: scores of another evaluation? {fix}")
    return blocks


def log_records(path):
    """The JSON records of a fairseq ``--log-format json`` training log, in order."""
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            start = line.find("{")
            if start < 0:
                continue
            try:
                record = json.loads(line[start:])
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict):
                yield record


def training_wall(path):
    """Seconds of training in a ``--log-format json`` training log, summed over resumed runs:
    fairseq's ``wall`` clock of the per-interval records starts again at 0 in a resumed process
    (fairseq 0.12 does not restore it), so each drop closes a segment whose last value counts.

    A process that starts over (the queue restarts a run stopped before its first checkpoint;
    ``train.log`` is appended to) logs updates from the beginning again: the segments it
    supersedes, those that began at or after its first logged update, are abandoned work and
    do not count."""
    segments = []  # [first logged update, last wall] per process
    for record in log_records(path):
        if "wall" in record:
            wall = float(record["wall"])
            updates = int(float(record.get("num_updates", 0)))
            if not segments or wall < segments[-1][1]:
                segments = [seg for seg in segments if seg[0] < updates]
                segments.append([updates, wall])
            segments[-1][1] = wall
    return sum(wall for _, wall in segments)


def read_validation(path):
    """Per-validation ``updates`` and losses in nats from a ``--log-format json`` training log."""
    points = {}
    for record in log_records(path):
        if "valid_loss" in record and "valid_num_updates" in record:
            points[int(float(record["valid_num_updates"]))] = float(record["valid_loss"]) * math.log(2)
    updates = sorted(points)
    losses = [points[u] for u in updates]
    return {"updates": updates, "loss_nats": losses, "ppl": [math.exp(v) for v in losses]}


def build(args):
    loss2, ppl = read_eval_lm(args.eval_log)
    valid = read_validation(args.train_log)
    blocks = read_block_losses(args.eval_log)
    if blocks is not None:
        check_blocks(blocks, loss2 * math.log(2), args.eval_log)
    return {
        "kind": "lm", "row": args.row, "dataset": args.dataset, "seed": args.seed,
        "test_ppl": ppl, "test_loss_nats": loss2 * math.log(2), "checkpoint": args.checkpoint,
        "updates": args.updates, "wall_time_s": training_wall(args.train_log) or args.wall_time, "valid": valid,
        "paper_ppl": float(args.paper) if args.paper else None, "train_command": args.train_command,
        "test_blocks": blocks,
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
