"""The language model under the translation rows' scale mechanisms (issue 35): fp16 overflows
that fairseq skips change no norm state (the step ledger), and synchronized statistics make 2
workers equal 1 worker on their concatenated batches."""
import json
import math
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import pn_fairseq  # noqa: F401
from test_lm import TINY, lm_data  # noqa: F401  (the module-scoped tiny corpus fixture)
from test_mixed_precision_cli import norm_counters, train_with_harness


def train_losses(log):
    """{num_updates: loss} of the train_inner records of a --log-format json log."""
    records = [json.loads(line.split("| train_inner | ", 1)[1]) for line in log.splitlines() if "| train_inner | " in line]
    return {int(r["num_updates"]): float(r["loss"]) for r in records}


@pytest.mark.parametrize("norm", ["power"])  # BN's and PN-V's ledger: test_mixed_precision_cli (translation)
def test_lm_fp16_overflows_are_skipped_and_change_no_norm_state(norm, lm_data, tmp_path):
    """--memory-efficient-fp16 from a loss scale of 2^24: fairseq skips the overflowed steps
    (the harness makes its .cuda() call harmless in this test's process only); every norm
    counted exactly the 6 applied updates and every running buffer is finite."""
    argv = ["fairseq-train", str(lm_data), "--user-dir", "pn_fairseq", "--task", "language_modeling_pn",
            "--arch", "transformer_lm_pn_postln", "--norm-type", norm, *TINY.split(), "--tokens-per-sample", "32",
            "--optimizer", "adam", "--lr", "1e-3", "--max-update", "6", "--cpu", "--save-dir", str(tmp_path / "run"),
            "--memory-efficient-fp16", "--fp16-init-scale", str(2 ** 24), "--warmup-updates", "2",
            "--log-format", "json", "--log-interval", "1", "--no-epoch-checkpoints", "--disable-validation"]
    log = train_with_harness(argv)
    assert log.count("gradient overflow detected") >= 3, log[-2000:]
    losses = train_losses(log)
    assert sorted(losses) == [1, 2, 3, 4, 5, 6]
    assert all(math.isfinite(v) for v in losses.values())
    counters, buffers, applied = norm_counters(tmp_path / "run" / "checkpoint_last.pt")
    assert applied == 6
    assert counters and set(counters.values()) == {6}, counters
    assert all(torch.isfinite(b).all() for b in buffers.values())


# --- synchronized statistics in the LM ---------------------------------------------------------

SEQS, LENGTH = 4, 9  # 4 sequences: 2 per worker


def _model(norm, sync):
    from pn_fairseq.analysis.causality import build_lm

    flags = ["--norm-sync-stats"] if sync else []
    if norm == "power":
        flags += ["--pn-warmup-updates", "1"]  # step 0 in warm-up, step 1 after it
    model, task = build_lm(norm, flags, layers=2, dim=16, heads=2)
    return model.double(), task


def _tokens(step):
    g = torch.Generator().manual_seed(step)
    return torch.randint(4, 68, (SEQS, LENGTH), generator=g)


def _run(norm, sync, rows):
    """Two training steps on ``rows`` of each step's batch; summed token losses (additive over
    workers), gradients all-reduced when distributed. Returns per step (loss, grads, buffers)."""
    model, _ = _model(norm, sync)
    if sync and dist.is_initialized():
        for m in model._norms.values():
            m.process_group = dist.group.WORLD
    out = []
    for step in range(2):
        model.train()
        model.set_num_updates(step)
        model.zero_grad()
        tokens = _tokens(step)[rows]
        logits = model(tokens[:, :-1])[0]
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), tokens[:, 1:].reshape(-1),
                                                 reduction="sum")
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters()}
        if dist.is_initialized():
            for g in grads.values():
                dist.all_reduce(g)
            total = loss.detach().clone()
            dist.all_reduce(total)
        else:
            total = loss.detach()
        out.append((float(total), grads, {k: v.clone() for k, v in model.state_dict().items()
                                          if k.split(".")[-1].startswith("running_")}))
        with torch.no_grad():
            for n, p in model.named_parameters():
                p -= 1e-2 * grads[n]
    return out


SYNC_NORMS = ["power", "batch", "power_v"]


def _worker(rank, port, result_file):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    torch.save({norm: _run(norm, True, slice(2 * rank, 2 * rank + 2)) for norm in SYNC_NORMS}, f"{result_file}.{rank}")
    dist.barrier()
    dist.destroy_process_group()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory):
    """Both workers' steps for every norm of SYNC_NORMS: one spawn (each worker imports fairseq once)."""
    result_file = str(tmp_path_factory.mktemp("lm-sync") / "w")
    mp.spawn(_worker, args=(_free_port(), result_file), nprocs=2, join=True)
    return [torch.load(f"{result_file}.{r}", weights_only=False) for r in range(2)]


@pytest.mark.parametrize("norm", SYNC_NORMS)
def test_lm_two_synced_workers_equal_one_worker_on_the_concatenation(norm, two_workers):
    workers = [w[norm] for w in two_workers]
    single = _run(norm, False, slice(0, SEQS))
    for step, (loss, grads, buffers) in enumerate(single):
        for rank, w in enumerate(workers):
            w_loss, w_grads, w_buffers = w[step]
            assert w_loss == pytest.approx(loss, rel=1e-10), (step, rank)
            for n in grads:
                torch.testing.assert_close(w_grads[n], grads[n], rtol=1e-8, atol=1e-10, msg=f"{step} {rank} {n}")
            assert buffers and w_buffers.keys() == buffers.keys()
            for k in buffers:
                torch.testing.assert_close(w_buffers[k], buffers[k], rtol=1e-9, atol=1e-12, msg=f"{step} {rank} {k}")
