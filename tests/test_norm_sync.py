"""Synchronized statistics: 2 workers (torch.distributed, gloo, CPU) with batches b1, b2 give
the outputs, input and parameter gradients and buffers that 1 worker gives on their
concatenation (float64, 3 steps, across the end of PN's warm-up); a worker holding fairseq's
dummy batch contributes nothing; with one worker, sync changes nothing."""
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from pn_fairseq.norms import build_norm, dummy_batch_context

C, T, STEPS = 8, 5, 3
CASES = {
    "bn_reference": ("batch", dict(variant="reference")),
    "bn_paper": ("batch", dict(variant="paper")),
    "pnv": ("power_v", {}),
    "pn_reference": ("power", dict(variant="reference", warmup_updates=2, groups=2)),
    "pn_reference_nogroup": ("power", dict(variant="reference", warmup_updates=2, groups=0)),
    "pn_paper": ("power", dict(variant="paper")),
}
BATCH = (3, 2)  # sentences per worker; T is shared (PN reference's nu averages over all T*B rows)


def _batch(step, rank):
    """Worker ``rank``'s batch at ``step``: x: T x B x C, pad_mask: B x T, dy (0 at padding)."""
    gen = torch.Generator().manual_seed(100 * step + rank)
    B = BATCH[rank]
    x = torch.randn(T, B, C, generator=gen, dtype=torch.float64) * (1 + step + rank) + 0.3 * rank
    lengths = torch.randint(1, T + 1, (B,), generator=gen)
    lengths[0] = T
    mask = torch.arange(T)[None, :] >= lengths[:, None]
    x[mask.t()] = 30.0  # padding values must not matter
    dy = torch.randn(T, B, C, generator=gen, dtype=torch.float64)
    dy[mask.t()] = 0.0
    return x, mask, dy


def _norm(case, sync):
    name, opts = CASES[case]
    torch.manual_seed(7)
    norm = build_norm(name, C, sync_stats=sync, **opts).double()
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-0.5, 0.5)
    return norm


def _steps(norm, batches, dummy=False):
    """Run the steps; per step: (y, dx, dgamma, dbeta, buffers)."""
    out = []
    for x, mask, dy in batches:
        norm.zero_grad()
        xg = x.clone().requires_grad_(True)
        with dummy_batch_context(norm, dummy):
            y = norm(xg, mask)
            (y * dy).sum().mul(0.0 if dummy else 1.0).backward()
        out.append((y.detach(), xg.grad.clone(), norm.weight.grad.clone(), norm.bias.grad.clone(),
                    {k: v.clone() for k, v in norm.state_dict().items()}))
    return out


def _worker(rank, world, port, result_file, dummy_rank):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    results = {}
    for case in CASES:
        batches = [_batch(s, rank) for s in range(STEPS)]
        results[case] = _steps(_norm(case, True), batches)
        results[case + "+dummy"] = _steps(_norm(case, True), batches, dummy=rank == dummy_rank)
    torch.save(results, f"{result_file}.{rank}")
    dist.barrier()
    dist.destroy_process_group()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn(world, tmp_path, dummy_rank=-1):
    result_file = str(tmp_path / f"w{world}")
    mp.spawn(_worker, args=(world, _free_port(), result_file, dummy_rank), nprocs=world, join=True)
    return [torch.load(f"{result_file}.{r}") for r in range(world)]


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory):
    return _spawn(2, tmp_path_factory.mktemp("sync"), dummy_rank=1)


def _close(a, b, what):
    torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9, msg=lambda m: f"{what}: {m}")


@pytest.mark.parametrize("case", list(CASES))
def test_two_workers_equal_one_worker_on_the_concatenation(case, two_workers):
    batches = [_batch(s, r) for s in range(STEPS) for r in (0, 1)]
    joined = []
    for s in range(STEPS):
        (x0, m0, d0), (x1, m1, d1) = batches[2 * s], batches[2 * s + 1]
        joined.append((torch.cat([x0, x1], 1), torch.cat([m0, m1], 0), torch.cat([d0, d1], 1)))
    single = _steps(_norm(case, False), joined)
    split = BATCH[0]
    for s in range(STEPS):
        y, dx, dg, db, buffers = single[s]
        w0, w1 = two_workers[0][case][s], two_workers[1][case][s]
        _close(w0[0], y[:, :split], f"step {s} y rank 0")
        _close(w1[0], y[:, split:], f"step {s} y rank 1")
        _close(w0[1], dx[:, :split], f"step {s} dx rank 0")
        _close(w1[1], dx[:, split:], f"step {s} dx rank 1")
        _close(w0[2] + w1[2], dg, f"step {s} dgamma (summed over workers, as data parallelism does)")
        _close(w0[3] + w1[3], db, f"step {s} dbeta")
        for k, v in buffers.items():
            _close(w0[4][k].double(), v.double(), f"step {s} {k} rank 0")
            _close(w1[4][k].double(), v.double(), f"step {s} {k} rank 1")


@pytest.mark.parametrize("case", list(CASES))
def test_dummy_worker_contributes_nothing(case, two_workers):
    """Rank 1 holds fairseq's dummy batch: both ranks end as one worker on rank 0's batches."""
    single = _steps(_norm(case, False), [_batch(s, 0) for s in range(STEPS)])
    for s in range(STEPS):
        y, dx, _, _, buffers = single[s]
        w0, w1 = two_workers[0][case + "+dummy"][s], two_workers[1][case + "+dummy"][s]
        _close(w0[0], y, f"step {s} y rank 0")
        _close(w0[1], dx, f"step {s} dx rank 0")
        assert torch.isfinite(w1[0]).all() and torch.isfinite(w1[1]).all()
        for k, v in buffers.items():
            _close(w0[4][k].double(), v.double(), f"step {s} {k} rank 0")
            _close(w1[4][k].double(), v.double(), f"step {s} {k} rank 1 (dummy)")


def test_one_worker_sync_equals_unsynchronized_exactly(tmp_path):
    (results,) = _spawn(1, tmp_path)
    for case in CASES:
        plain = _steps(_norm(case, False), [_batch(s, 0) for s in range(STEPS)])
        for got, ref in zip(results[case], plain):
            for a, b in zip(got[:4], ref[:4]):
                assert torch.equal(a, b), case
            for k in ref[4]:
                assert torch.equal(got[4][k], ref[4][k]), (case, k)
