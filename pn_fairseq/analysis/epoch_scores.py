"""Validation loss and BLEU per epoch of a training run, as the Pre-LN paper plots them (Fig. 2, 4).

Where the numbers come from: the Pre-LN rows (configs/preln/common.conf) train with fairseq's
``--eval-bleu`` family, so each end-of-epoch validation decodes the validation set with the
row's beam and length penalty and logs ``valid_bleu`` beside ``valid_loss`` in the JSON log the
row scripts tee to ``<run>/train.log``. The log is the per-run store: reading it decodes
nothing, so a finished run is never decoded again. ``valid_bleu`` is sacrebleu with
``tokenize='none'`` on the tokenized, BPE-removed text, the number ``pn-score`` reports as
``sacrebleu_tok_none`` for ``fairseq-generate --gen-subset valid`` on that epoch's checkpoint
(tests/test_epoch_scores.py checks they agree).

Why inside training rather than decoding every ``checkpoint{N}.pt`` afterwards: no epoch
checkpoint has to be kept (an IWSLT14 6+6 checkpoint with Adam's state is about 0.5 GB, 30 of
them per run), no process start and checkpoint load per epoch, and the row scripts need no
extra step; the decoding itself costs the same either way (docs/preln.md has the
measured cost).
"""
import os

from pn_fairseq.analysis.logs import json_records, number

FIELDS = ("loss", "nll_loss", "ppl", "bleu")


class EpochScoresError(ValueError):
    """A log has no per-epoch validation; the message names the file and the fix."""


def log_path(run):
    """``run``'s log: a run directory's ``train.log``, or the file itself."""
    path = os.path.join(run, "train.log") if os.path.isdir(run) else run
    if not os.path.isfile(path):
        raise EpochScoresError(f"{run}: no train.log (expected a run directory of scripts/run_row.sh or a log file)")
    return path


def epoch_scores(run, subset="valid"):
    """One record per epoch, in epoch order: ``{"epoch", "updates", "loss", "nll_loss", "ppl",
    "bleu"}`` (a field the log lacks is None; losses in bits per token, as fairseq logs them).

    Per epoch the validation with the most updates counts (the end-of-epoch one, when a run also
    validates mid-epoch); a resumed run that logs the same validation twice keeps the later line.
    """
    path = log_path(run)
    prefix = subset + "_"
    by_epoch = {}
    for record in json_records(path):
        updates = number(record.get(prefix + "num_updates"))
        epoch = number(record.get("epoch"))
        if updates is None or epoch is None:
            continue  # training lines, other subsets
        entry = {"epoch": int(epoch), "updates": int(updates)}
        entry.update({name: number(record.get(prefix + name)) for name in FIELDS})
        old = by_epoch.get(entry["epoch"])
        if old is None or entry["updates"] >= old["updates"]:
            by_epoch[entry["epoch"]] = entry
    if not by_epoch:
        raise EpochScoresError(f"{path}: no '{subset}' validation lines (expected fairseq-train --log-format json output)")
    return [by_epoch[e] for e in sorted(by_epoch)]


def require_bleu(scores, run):
    """``scores`` if every epoch has a BLEU, else an error naming the fix."""
    missing = [s["epoch"] for s in scores if s["bleu"] is None]
    if missing:
        raise EpochScoresError(
            f"{run}: no validation BLEU logged for epoch(s) {', '.join(map(str, missing))}: train with "
            "--eval-bleu --eval-bleu-args '{\"beam\": 5, \"lenpen\": 1.2}' --eval-bleu-remove-bpe "
            "--eval-tokenized-bleu (configs/preln/common.conf does)")
    return scores


def format_table(scores):
    """The records as a small text table."""
    lines = ["epoch  updates  valid_loss  valid_bleu"]
    for s in scores:
        loss = "-" if s["loss"] is None else f"{s['loss']:.3f}"
        bleu = "-" if s["bleu"] is None else f"{s['bleu']:.2f}"
        lines.append(f"{s['epoch']:>5}  {s['updates']:>7}  {loss:>10}  {bleu:>10}")
    return "\n".join(lines)
