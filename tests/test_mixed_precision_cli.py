"""The GPU user's path through the real fairseq-train, on CPU (issue 18): fp16 overflows that
fairseq skips, and activation checkpointing."""
import json
import math
import subprocess
import sys

import pytest
import torch

import pn_fairseq  # noqa: F401  (allow-lists fairseq's checkpoint globals for torch.load)
from conftest import REPO
from test_scale_cli import train, train_argv, train_steps

# fairseq's overflow handler calls torch.tensor(0.0).cuda() (trainer.py), which fails on a
# machine without CUDA. In this test's own fairseq-train process only, .cuda() is the identity.
HARNESS = """
import sys, torch
torch.Tensor.cuda = lambda self, *args, **kwargs: self
from fairseq_cli.train import cli_main
sys.argv = ["fairseq-train"] + sys.argv[1:]
cli_main()
"""

ROWS = {  # the row families of the tables, by their architecture and flags
    "preln": ("transformer_preln", []),
    "bn": ("transformer_bn", []),
    "pnv": ("transformer_pnv", []),
    "pn": ("transformer_pn", []),
    "pn-paper": ("transformer_pn", ["--norm-variant", "paper"]),
    "rms": ("transformer_rms", []),
}


def train_with_harness(argv):
    proc = subprocess.run([sys.executable, "-c", HARNESS, *argv[1:]], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def norm_counters(checkpoint):
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    model = state["model"]
    counters = {k: int(v) for k, v in model.items() if k.endswith("num_batches_tracked")}
    buffers = {k: v for k, v in model.items() if k.split(".")[-1].startswith("running_")}
    return counters, buffers, state["optimizer_history"][-1]["num_updates"]


@pytest.mark.parametrize("row", list(ROWS))
def test_fp16_overflows_are_skipped_and_change_no_norm_state(row, data_bin, tmp_path):
    """--memory-efficient-fp16 with a loss scale of 2^24: fairseq skips several overflowed
    steps and halves the scale; then every loss is finite to the end, and every norm counted
    exactly the applied updates (PN used to stop with a non-finite nu at update 0)."""
    arch, flags = ROWS[row]
    log = train_with_harness(train_argv(data_bin, tmp_path / "run", arch, 6, "--memory-efficient-fp16",
                                        "--fp16-init-scale", 2 ** 24, "--warmup-updates", 2, *flags))
    skipped = log.count("gradient overflow detected")
    assert skipped >= 3, log[-2000:]
    steps = train_steps(log)
    assert sorted(steps) == [1, 2, 3, 4, 5, 6]
    assert all(math.isfinite(float(s["loss"])) for s in steps.values())
    counters, buffers, applied = norm_counters(tmp_path / "run" / "checkpoint_last.pt")
    assert applied == 6
    if row in ("preln", "rms"):
        assert not counters  # no batch-statistics norm: nothing else to count
    else:
        assert counters and set(counters.values()) == {6}, counters
        assert all(torch.isfinite(b).all() for b in buffers.values())


@pytest.mark.parametrize("row", ["pn", "bn", "pnv"])
def test_checkpoint_activations_counts_once_and_changes_nothing(row, data_bin, tmp_path):
    """4 updates with and without --checkpoint-activations: the same loss at every update,
    the same parameters, norm buffers and counters (PN's warm-up ends inside the run, so the
    recomputed forward would otherwise divide by an already-moved psi2)."""
    arch, flags = ROWS[row]
    plain = train(data_bin, tmp_path / "plain", arch, 4, "--warmup-updates", 2, *flags)
    ckpt = train(data_bin, tmp_path / "ckpt", arch, 4, "--warmup-updates", 2, "--checkpoint-activations", *flags)
    a, b = train_steps(plain), train_steps(ckpt)
    assert sorted(a) == [1, 2, 3, 4]
    for n in a:
        assert float(b[n]["loss"]) == pytest.approx(float(a[n]["loss"]), rel=1e-6, abs=1e-6), n
    sa = torch.load(tmp_path / "plain" / "checkpoint_last.pt", map_location="cpu", weights_only=False)["model"]
    sb = torch.load(tmp_path / "ckpt" / "checkpoint_last.pt", map_location="cpu", weights_only=False)["model"]
    assert sa.keys() == sb.keys()
    for k in sa:
        if k.endswith("num_batches_tracked"):
            assert int(sa[k]) == int(sb[k]) == 4, k
        elif not k.endswith("k_proj.bias"):
            # (the attention key bias has a zero gradient in exact arithmetic: Adam turns its
            # rounding noise into full-size steps, so it is the one parameter left out)
            torch.testing.assert_close(sb[k].float(), sa[k].float(), rtol=1e-5, atol=1e-6, msg=k)
