"""Reading ``fairseq-train --log-format json`` logs (the row driver tees them to ``<run>/train.log``).

Lines look like ``2026-... | INFO | train_inner | {"epoch": 1, "loss": "9.12", ...,
"num_updates": "50"}``; epoch-end ``train`` and ``valid`` lines carry the same statistics
with a ``train_`` / ``valid_`` prefix. Values are strings written with ``{:g}``.
"""
import os

from ..evaluation.lm_results import log_records as json_records  # noqa: F401  (the log reader, one copy)
from . import AnalysisError


def find_log(run):
    """The log of ``run``: a run directory's ``train.log``, or the file itself."""
    if os.path.isdir(run):
        path = os.path.join(run, "train.log")
        if not os.path.isfile(path):
            raise AnalysisError(f"{run}: no train.log in this run directory")
        return path
    if os.path.isfile(run):
        return run
    raise AnalysisError(f"{run}: no such run directory or log file")


# A run's log names the run by its directory; train.partial.log is an unfinished run's records,
# archived by scripts/archive_results.py.
RUN_LOGS = ("train.log", "train.partial.log")


def run_labels(runs):
    """A short legend label per run: ``LABEL=PATH`` gives LABEL, else the run's directory name.

    ``runs``: list of strings; returns a list of ``(label, path)``. Two runs with the same
    directory name are told apart by their parent directory.
    """
    pairs = []
    for text in runs:
        label, sep, path = text.partition("=")
        if sep and label and path and not os.path.exists(text):
            pairs.append((label, path))
            continue
        path = text
        directory = path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
        name = os.path.basename(os.path.normpath(directory))
        if not os.path.isdir(path) and os.path.basename(path) not in RUN_LOGS:
            name = os.path.basename(path)
        pairs.append((name, path))
    # Runs with the same name get parent directories in front, as many as it takes
    # (pn/seed1/checkpoint_last.pt vs pn-nogroup/seed1/checkpoint_last.pt).
    out = list(pairs)
    for depth in range(1, 64):
        labels = [label for label, _ in out]
        clashes = {i for i, label in enumerate(labels) if labels.count(label) > 1}
        if not clashes:
            break
        for i in clashes:
            label, path = pairs[i]
            parents = os.path.dirname(os.path.normpath(os.path.abspath(path))).split(os.sep)
            if not os.path.isdir(path) and os.path.basename(path) in RUN_LOGS:
                parents = parents[:-1]  # the label is already its directory's name
            prefix = "/".join(p for p in parents[len(parents) - depth:] if p)
            out[i] = (f"{prefix}/{label}" if prefix else label, path)
    return out




def number(value):
    """A logged value as float, or None when it is not a number."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def train_inner_records(path):
    """The ``train_inner`` records: the only ones with an unprefixed ``num_updates``."""
    for record in json_records(path):
        if "num_updates" in record and number(record["num_updates"]) is not None:
            yield record


def _series(points):
    # A resumed run logs some updates twice: the later line wins, as in pn-plot.
    ordered = sorted(points.items())
    return [u for u, _ in ordered], [v for _, v in ordered]


def loss_curves(path):
    """Train and validation loss against updates from one log.

    Returns ``{"train_loss": (updates, values), "valid_loss": (updates, values)}``; either
    may be empty lists. fairseq logs losses in base 2 (bits per target token).
    """
    train, valid = {}, {}
    for record in json_records(path):
        if "num_updates" in record and number(record.get("loss")) is not None:
            train[int(number(record["num_updates"]))] = number(record["loss"])
        elif "valid_num_updates" in record and number(record.get("valid_loss")) is not None:
            valid[int(number(record["valid_num_updates"]))] = number(record["valid_loss"])
    return {"train_loss": _series(train), "valid_loss": _series(valid)}
