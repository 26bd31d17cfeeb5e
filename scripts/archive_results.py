#!/usr/bin/env python3
"""Copy the evidence of finished runs into the repository, small enough to commit.

Usage: python scripts/archive_results.py SRC DEST   (e.g. checkpoints/multi30k results/multi30k)

Checkpoints live in the ignored ``checkpoints/`` and are lost with the machine; the
tables of docs/results.md must stay reproducible from files that exist. For every run directory
under SRC with a ``results.json`` (or a language-model row's ``results-lm.json``), this copies to
the same relative place under DEST: ``results.json``, ``scores.json``, ``results-lm.json`` and
``eval-lm.log`` (fairseq-eval-lm's output), the sorted hypotheses and references ``pn-results``
compares (``test.*.txt``), ``train.done`` / ``train.cmd``, and the JSON records of ``train.log``
(training and validation lines, no model dumps). ``pn-results DEST`` and ``pn-plot`` then work
on DEST as on SRC. Files are written through a temporary name, then renamed.

A run that has started (``train.log`` or ``checkpoint_last.pt``) but not finished gets
``DEST/<run>/in-progress.json`` instead (epoch and update of its last training record, when
recorded): committed with the rest, it lets ``scripts/run_queue.py`` on a new machine name the
runs whose checkpoints went with the old one. Beside it, ``train.partial.log`` keeps the records
so far, with ``train.cmd`` (``pn-analyze epochs DEST/<run>/train.partial.log`` draws them): the epochs a run reached
before its machine went are evidence too, not a ``train.log`` that a reader could take for a
finished run's. Archiving the finished run removes both.
"""
import json
import pathlib
import shutil
import sys
import time

from pn_fairseq.evaluation.lm_results import log_records  # the project's one train.log reader

KEEP = ("results.json", "scores.json", "scores.last.json", "train.done", "train.cmd",
        "results-lm.json", "eval-lm.log",  # language-model rows (scripts/run_lm_row.sh)
        "results-mlm.json")  # masked-LM rows (scripts/run_mlm_row.sh)
RESULTS = ("results.json", "results-lm.json", "results-mlm.json")
STARTED = ("train.log", "checkpoint_last.pt")
PROGRESS = "in-progress.json"  # scripts/run_queue.py reads it
PARTIAL_LOG = "train.partial.log"


def log_records_text(log: pathlib.Path):
    """The training and validation lines of a train.log (no model dumps, no warnings)."""
    return "".join(line + "\n" for line in log.read_text(errors="replace").splitlines()
                   if "| train_inner |" in line or "| train |" in line or "| valid |" in line)


def copy(src: pathlib.Path, dst: pathlib.Path, text: str = None):
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".tmp")
    if text is None:
        shutil.copyfile(src, tmp)
    else:
        tmp.write_text(text)
    tmp.replace(dst)


def last_training_record(log: pathlib.Path):
    """``(epoch, num_updates)`` of the last training record of a ``--log-format json`` train.log, or Nones."""
    last = None, None
    if log.is_file():
        for record in log_records(log):
            updates = record.get("num_updates", record.get("train_num_updates"))  # train_inner / epoch-end train
            if updates is not None:
                last = record.get("epoch", record.get("train_epoch")), int(updates)
    return last


def main(argv):
    if len(argv) != 2:
        sys.exit("usage: archive_results.py SRC DEST")
    src, dest = map(pathlib.Path, argv)
    if not src.is_dir():
        sys.exit(f"archive_results: error: no directory {src}")
    runs = sorted({p.parent for name in RESULTS for p in src.rglob(name)})
    for run in runs:
        out = dest / run.relative_to(src)
        for f in [run / k for k in KEEP] + sorted(run.glob("test.*.txt")):
            if f.is_file():
                copy(f, out / f.name)
        log = run / "train.log"
        if log.is_file():
            copy(log, out / "train.log", log_records_text(log))
        (out / PROGRESS).unlink(missing_ok=True)
        (out / PARTIAL_LOG).unlink(missing_ok=True)
    unfinished = sorted({p.parent for name in STARTED for p in src.rglob(name)} - set(runs))
    for run in unfinished:
        out, log = dest / run.relative_to(src), run / "train.log"
        epoch, updates = last_training_record(log)
        record = {"run_dir": str(run), "epoch": epoch, "num_updates": updates,
                  "checkpoint_last": (run / "checkpoint_last.pt").is_file(), "recorded": time.strftime("%Y-%m-%d %H:%M")}
        copy(None, out / PROGRESS, json.dumps(record, indent=1) + "\n")
        records = log_records_text(log) if log.is_file() else ""
        if records:
            copy(None, out / PARTIAL_LOG, records)
            if (run / "train.cmd").is_file():  # the figures' legends read its --warmup-updates
                copy(run / "train.cmd", out / "train.cmd")
    print(f"archive_results: {len(runs)} run(s) from {src} -> {dest}"
          + (f"; {len(unfinished)} unfinished, recorded in {PROGRESS}" if unfinished else ""))


if __name__ == "__main__":
    main(sys.argv[1:])
