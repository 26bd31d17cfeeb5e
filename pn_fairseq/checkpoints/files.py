"""fairseq checkpoints: find, load (``weights_only``), check and average them.

What ``pn-average-checkpoints`` (:mod:`pn_fairseq.cli.average_checkpoints`) and the row
scripts stand on. Averaging follows fairseq's ``scripts/average_checkpoints.py`` with three
deliberate differences:

* Floating tensors -- parameters *and* floating buffers such as PowerNorm's
  ``running_psi2`` / ``running_nu`` or BatchNorm's ``running_mean`` / ``running_var`` --
  are averaged, summed in float32 (float64 for float64 tensors) and cast back to their
  own dtype at the end.
* Integer (and bool) tensors, e.g. ``num_batches_tracked`` or PowerNorm's step counter,
  are copied from the *newest* checkpoint instead of being averaged: the average of a
  counter is a count the layer never had, and the newest value keeps state that depends
  on it (PowerNorm's warm-up switch) consistent with running statistics that, averaged
  over the last checkpoints, come mostly from post-warm-up steps.
* Loading keeps ``torch.load``'s ``weights_only=True``; the few plain-Python classes
  fairseq pickles are allow-listed by :mod:`pn_fairseq.checkpoints.serialization`.

The average is the newest input's checkpoint dict with ``"model"`` replaced by the
average (fairseq's script copies its first input, which in directory mode is the newest
one too); :func:`save_checkpoint` writes it atomically.
"""
import collections
import collections.abc
import os
import re
import sys

import torch

from pn_common.atomic import atomic_output
from . import serialization
from ..hooks.errors import summarize

EPOCH_CHECKPOINT_RE = re.compile(r"checkpoint(\d+)\.pt")
UPDATE_CHECKPOINT_RE = re.compile(r"checkpoint_(\d+)_(\d+)\.pt")


class CheckpointError(ValueError):
    """A checkpoint cannot be used; the message names the file."""


def last_n_checkpoints(directory, n, update_based, upper_bound=None):
    """Paths of the last ``n`` epoch (or update) checkpoints in ``directory``, newest first.

    Names are ``checkpointEPOCH.pt`` or ``checkpoint_EPOCH_UPDATES.pt``, as fairseq-train
    writes them; ``upper_bound`` excludes epochs (updates) above it.
    """
    pattern = UPDATE_CHECKPOINT_RE if update_based else EPOCH_CHECKPOINT_RE
    entries = []
    for name in os.listdir(directory):
        match = pattern.fullmatch(name)
        if match is None:
            continue
        number = int(match.group(match.lastindex))
        if upper_bound is None or number <= upper_bound:
            entries.append((number, name))
    kind = "update" if update_based else "epoch"
    if len(entries) < n:
        bound = "" if upper_bound is None else f" at or below {kind} {upper_bound}"
        raise CheckpointError(
            f"{directory}: found {len(entries)} {kind} checkpoint(s){bound} "
            f"({pattern.pattern}), but {n} were requested"
        )
    entries.sort(reverse=True)
    return [os.path.join(directory, name) for _, name in entries[:n]]


def load_checkpoint(path):
    """Load a fairseq checkpoint on CPU with ``weights_only=True``; check it has a model."""
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such file")
    serialization.allow_fairseq_checkpoint_globals()
    try:
        # weights_only=True explicitly, so TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD cannot turn
        # the protection off behind our back.
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a bad file; all mean "unusable"
        hint = ""
        if "Unsupported global" in str(err):
            hint = (
                " -- if this is a genuine fairseq checkpoint, the class it names must be added "
                "to pn_fairseq.checkpoints.serialization.FAIRSEQ_CHECKPOINT_GLOBALS (do not load with "
                "weights_only=False)"
            )
        # summarize: the first sentence (torch's messages run to a paragraph)
        raise CheckpointError(f"{path}: not a loadable torch checkpoint ({summarize(err)}){hint}") from err
    if not isinstance(state, collections.abc.Mapping) or "model" not in state:
        raise CheckpointError(f"{path}: not a fairseq checkpoint (no 'model' entry)")
    if not isinstance(state["model"], collections.abc.Mapping):
        raise CheckpointError(f"{path}: 'model' is a {type(state['model']).__name__}, not a state dict")
    return state


def checkpoint_age(path, state):
    """A sortable age for ``state``, or None when it cannot be told.

    fairseq records the update count in ``optimizer_history``; the file name (epoch or
    update number) is the fallback for checkpoints without one.
    """
    history = state.get("optimizer_history")
    if isinstance(history, (list, tuple)) and history and isinstance(history[-1], dict):
        updates = history[-1].get("num_updates")
        if isinstance(updates, int):
            return ("updates", updates)
    name = os.path.basename(path)
    match = UPDATE_CHECKPOINT_RE.fullmatch(name)
    if match:
        return ("updates", int(match.group(2)))
    match = EPOCH_CHECKPOINT_RE.fullmatch(name)
    if match:
        return ("epoch", int(match.group(1)))
    return None


def _format_keys(keys, limit=10):
    keys = sorted(keys)
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")


def _check_same_layout(path, model, ref_path, ref_model):
    missing = set(ref_model) - set(model)
    extra = set(model) - set(ref_model)
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {_format_keys(missing)}")
        if extra:
            parts.append(f"extra {_format_keys(extra)}")
        raise CheckpointError(
            f"{path}: parameter names differ from {ref_path}: " + "; ".join(parts)
        )
    for name, ref in ref_model.items():
        value = model[name]
        if isinstance(ref, torch.Tensor) != isinstance(value, torch.Tensor):
            raise CheckpointError(f"{path}: '{name}' is a tensor in one checkpoint only (see {ref_path})")
        if not isinstance(ref, torch.Tensor):
            continue
        if value.shape != ref.shape:
            raise CheckpointError(
                f"{path}: '{name}' has shape {tuple(value.shape)}, but {tuple(ref.shape)} in {ref_path}"
            )
        if value.dtype != ref.dtype:
            raise CheckpointError(f"{path}: '{name}' is {value.dtype}, but {ref.dtype} in {ref_path}")


def _accumulator_dtype(dtype):
    return torch.float64 if dtype == torch.float64 else torch.float32


def _restore_sharing(newest_model, averaged):
    """Re-tie entries that share storage in the newest checkpoint (e.g. tied embeddings).

    Averaging makes a separate tensor per name; re-tying them (only when the averages are
    equal, i.e. they were tied in every input) keeps the saved file from doubling.
    """
    first_name_for = {}
    for name, tensor in newest_model.items():
        if not isinstance(tensor, torch.Tensor) or tensor.numel() == 0:
            continue
        view = (
            tensor.untyped_storage().data_ptr(),
            tensor.storage_offset(),
            tuple(tensor.shape),
            tensor.stride(),
            tensor.dtype,
        )
        first = first_name_for.setdefault(view, name)
        if first != name and torch.equal(averaged[first], averaged[name]):
            averaged[name] = averaged[first]


def average_checkpoints(paths, log=print):
    """Average the checkpoints at ``paths``; return the newest one's dict with the average.

    Raises :class:`CheckpointError` naming the offending file when a checkpoint cannot be
    loaded or its parameters differ (names, shapes, dtypes) from the first one's.
    """
    if not paths:
        raise CheckpointError("no checkpoints to average")
    sums = collections.OrderedDict()
    ref_path = ref_model = None
    newest = newest_path = newest_age = None
    ages_comparable = True
    ages = {}
    for path in paths:
        state = load_checkpoint(path)
        model = state["model"]
        if ref_model is None:
            ref_path, ref_model = path, {k: _layout(v) for k, v in model.items()}
        else:
            _check_same_layout(path, model, ref_path, ref_model)
        for name, value in model.items():
            if isinstance(value, torch.Tensor) and value.is_floating_point():
                acc = value.detach().to(_accumulator_dtype(value.dtype))
                if name in sums:
                    sums[name] += acc
                else:
                    # clone: .to() of a float32 tensor is the tensor itself, and tied
                    # tensors would otherwise be accumulated into twice.
                    sums[name] = acc.clone()
        age = ages[path] = checkpoint_age(path, state)
        if newest is None:
            newest, newest_path, newest_age = state, path, age
        elif ages_comparable and age is not None and newest_age is not None and age[0] == newest_age[0]:
            if age[1] > newest_age[1]:
                newest, newest_path, newest_age = state, path, age
        else:
            ages_comparable = False
        del state, model
    if not ages_comparable:
        # Ages unknown or of different kinds: keep fairseq's convention that the first
        # input is the newest (its directory mode lists the newest first).
        if newest_path != paths[0]:
            newest = load_checkpoint(paths[0])
        newest_path, newest_age = paths[0], ages[paths[0]]
        log("note: cannot tell the checkpoints' ages apart; treating the first input as the newest")
    _warn_duplicate_ages(ages)

    count = len(paths)
    averaged = collections.OrderedDict()
    copied = []
    for name, value in newest["model"].items():
        if name in sums:
            averaged[name] = sums[name].div_(count).to(value.dtype)
        else:
            averaged[name] = value
            copied.append(name)
    _restore_sharing(newest["model"], averaged)
    newest["model"] = averaged

    age_text = "" if newest_age is None else f" ({newest_age[0]} {newest_age[1]})"
    log(f"averaged {count} checkpoint(s); newest{age_text}: {newest_path}")
    for path in paths:
        log(f"  {path}")
    log(f"  {len(sums)} floating tensor(s) averaged")
    if copied:
        log(f"  {len(copied)} non-floating entries taken from the newest: {_format_keys(copied)}")
    return newest


def _layout(value):
    """What later checkpoints are compared against, without keeping the first's tensors."""
    if isinstance(value, torch.Tensor):
        return torch.empty(value.shape, dtype=value.dtype, device="meta")
    return value


def _warn_duplicate_ages(ages):
    seen = {}
    for path, age in ages.items():
        if age is None or age[0] != "updates":
            continue
        if age in seen:
            print(
                f"warning: {seen[age]} and {path} were both saved at update {age[1]}; "
                "they are probably copies of one checkpoint (e.g. checkpoint_last.pt)",
                file=sys.stderr,
            )
        else:
            seen[age] = path


def checkpoint_progress(path):
    """(optimizer updates, training seconds) recorded in the fairseq checkpoint at ``path``.

    The seconds are fairseq's cumulative training clock (``extra_state["previous_training_time"]``,
    which a resumed trainer carries on), so they count every part of a run that was interrupted
    and resumed; None in a checkpoint without it.
    """
    state = load_checkpoint(path)
    seconds = (state.get("extra_state") or {}).get("previous_training_time")
    return int(state["optimizer_history"][-1]["num_updates"]), None if seconds is None else float(seconds)


def save_checkpoint(state, path):
    """``torch.save`` to ``path`` atomically (an interrupted write leaves no truncated file)."""
    with atomic_output(path) as tmp:
        torch.save(state, tmp)
