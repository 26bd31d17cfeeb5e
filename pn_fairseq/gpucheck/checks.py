"""What a mixed-precision run must show (stage c, and tests/test_cuda.py): finite losses in the
log, and in the checkpoint every norm's counter equal to the optimizer updates fairseq applied.

fairseq skips a step whose gradients overflowed (fp16: the loss scale halves and the update
counter does not move; --amp: the batch is retried, then skipped). BN's, PN-V's and PN's
``num_batches_tracked`` (PN's step ``k``) count the training forwards that moved their
statistics, so with ``--update-freq 1`` each must equal ``num_updates`` in the checkpoint's
``optimizer_history``: a skipped step must leave no trace in the norms.
"""
import json
import math
from pathlib import Path
from typing import Dict, List

import torch

from pn_fairseq.checkpoints.files import load_checkpoint

OVERFLOW_MARKERS = {"fp16": "gradient overflow detected", "amp": "AMP: overflow detected"}
COUNTER = "num_batches_tracked"


class RunCheckFailed(ValueError):
    """One line saying what a run got wrong."""


def train_records(log_text: str) -> List[dict]:
    """fairseq's per-interval and per-epoch training records (--log-format json)."""
    records = []
    for line in log_text.splitlines():
        for tag in ("| train_inner | ", "| train | "):
            head, sep, payload = line.partition(tag)
            if sep:
                try:
                    records.append(json.loads(payload))
                except ValueError:
                    pass
    return records


def check_losses(log_text: str) -> List[float]:
    """The logged training losses; all must be finite, and there must be some."""
    losses = [float(r["loss"]) for r in train_records(log_text) if "loss" in r]
    if not losses:
        raise RunCheckFailed("no training loss was logged (expected fairseq-train --log-format json output)")
    bad = [x for x in losses if not math.isfinite(x)]
    if bad:
        raise RunCheckFailed(f"{len(bad)} of {len(losses)} logged losses are not finite (first: {bad[0]})")
    return losses


def overflow_count(log_text: str, mode: str) -> int:
    """How many overflowed steps fairseq reported (fp16: skipped updates; amp: scale back-offs)."""
    return log_text.count(OVERFLOW_MARKERS[mode])


def norm_counters(checkpoint: Path) -> Dict:
    """(applied updates, {buffer name: counter}, names of non-finite float tensors)."""
    state = load_checkpoint(str(checkpoint))
    updates = int(state["optimizer_history"][-1]["num_updates"])
    counters = {k: int(v) for k, v in state["model"].items() if k.endswith("." + COUNTER)}
    not_finite = [k for k, v in state["model"].items()
                  if torch.is_tensor(v) and v.is_floating_point() and not torch.isfinite(v).all()]
    return {"updates": updates, "counters": counters, "not_finite": not_finite}


def check_run(log: Path, checkpoint: Path, expected_updates: int, mode: str = None,
              expect_overflow: bool = False, expect_counters: bool = True) -> dict:
    """All of the module docstring for one run; returns what was measured, raises RunCheckFailed."""
    text = log.read_text(errors="replace")
    losses = check_losses(text)
    overflows = overflow_count(text, mode) if mode in OVERFLOW_MARKERS else 0
    if expect_overflow and overflows == 0:
        raise RunCheckFailed(f"no overflow was reported (expected '{OVERFLOW_MARKERS[mode]}' in the log: "
                             f"is --fp16-init-scale large enough?)")
    if not checkpoint.is_file():
        raise RunCheckFailed(f"no checkpoint at {checkpoint}")
    found = norm_counters(checkpoint)
    if found["not_finite"]:
        raise RunCheckFailed(f"non-finite values in the checkpoint: {', '.join(found['not_finite'][:3])}")
    if found["updates"] != expected_updates:
        raise RunCheckFailed(f"{found['updates']} updates applied, {expected_updates} asked for")
    if expect_counters and not found["counters"]:
        raise RunCheckFailed(f"the checkpoint has no {COUNTER} buffers (a BN/PN-V/PN model has them)")
    wrong = {k: v for k, v in found["counters"].items() if v != found["updates"]}
    if wrong:
        name, value = next(iter(wrong.items()))
        raise RunCheckFailed(f"{len(wrong)} of {len(found['counters'])} norm counters differ from the "
                             f"{found['updates']} applied updates (e.g. {name} = {value}): a skipped step "
                             f"moved a norm")
    return {"losses": len(losses), "last_loss": losses[-1], "overflows": overflows,
            "updates": found["updates"], "counters": len(found["counters"])}
