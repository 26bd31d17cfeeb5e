"""PN's warm-up under gradient accumulation, and fairseq's dummy batches.

fairseq calls ``model.set_num_updates(n)`` before every training forward (n = optimizer
updates done). PN then measures its warm-up in optimizer updates; a layer never told keeps
counting forward calls, as the released code. Dummy batches (``ignore_grad``) and steps that
die half-way must leave every statistic, counter and buffer where it was.
"""
import pytest
import torch
from fairseq import options, tasks

from pn_fairseq.norms import build_norm, dummy_batch_context
from pn_fairseq.norms.base import NormBase
from pn_fairseq.norms.power_norm import PowerNorm
from pn_fairseq.tasks import TranslationPNTask

from conftest import REPO
from test_power_norm import _steps, spec_power_norm

C = 8


def _pn(W, G=2, variant="reference"):
    gen = torch.Generator().manual_seed(1)
    pn = build_norm("power", C, variant=variant, warmup_updates=W, groups=G).double()
    with torch.no_grad():
        pn.weight.copy_(torch.rand(C, generator=gen, dtype=torch.float64) + 0.5)
        pn.bias.copy_(torch.rand(C, generator=gen, dtype=torch.float64) - 0.5)
    return pn


def _run(pn, steps, updates=None):
    out = []
    for i, (x, mask, dy) in enumerate(steps):
        if updates is not None:
            pn.set_num_updates(updates[i])
        pn.zero_grad()
        xg = x.clone().requires_grad_(True)
        y = pn(xg, mask)
        y.backward(dy)
        out.append((y.detach(), xg.grad, pn.weight.grad.clone(), pn.running_psi2.clone(), pn.running_nu.clone()))
    return out


def test_update_freq_1_is_bitwise_the_forward_call_clock():
    """n = k - 1 with one forward per update: both clocks take the same branches."""
    steps = _steps(7, C)
    told = _run(_pn(W=3), steps, updates=list(range(7)))
    alone = _run(_pn(W=3), steps)
    for a, b in zip(told, alone):
        for u, v in zip(a, b):
            assert torch.equal(u, v)


@pytest.mark.parametrize("W, U", [(2, 4), (3, 2)])
def test_update_freq_u_switches_at_the_same_optimizer_update(W, U):
    n_updates = W + 2
    steps = _steps(n_updates * U, C, seed=3)
    updates = [n for n in range(n_updates) for _ in range(U)]
    pn = _pn(W)
    got = _run(pn, steps, updates=updates)
    gamma, beta = pn.weight.detach(), pn.bias.detach()
    expected = spec_power_norm(steps, "reference", W, 2, gamma, beta, updates=updates)
    for (y, dx, _, psi2, nu), (y_e, dx_e, _, _, psi2_e, nu_e) in zip(got, expected):
        torch.testing.assert_close(y, y_e, rtol=1e-13, atol=1e-13)
        torch.testing.assert_close(dx, dx_e, rtol=1e-13, atol=1e-13)
        torch.testing.assert_close(psi2, psi2_e, rtol=1e-14, atol=1e-14)
        torch.testing.assert_close(nu, nu_e, rtol=1e-13, atol=1e-13)
    assert pn.k == n_updates * U  # the averages count micro-batches

    # The switch itself: the last micro-batch of update W-1 is normalized by its batch
    # statistic, the first of update W by the running one (not after W micro-batches).
    def batch_normalized(i):
        x, mask, _ = steps[i]
        probe = _pn(W)
        probe.load_state_dict(state_before[i])
        probe.set_num_updates(updates[i])
        y = probe(x, mask)
        xs = x.reshape(-1, C)
        parts = xs.view(-1, 2, C // 2)
        xs = (parts / torch.sqrt((parts ** 2).mean(-1, keepdim=True) + 1e-5)).view(-1, C)
        keep = ~mask.t().reshape(-1)
        z = xs / torch.sqrt((xs[keep] ** 2).mean(0) + 1e-5)
        return torch.allclose(y.reshape(-1, C), probe.weight * z + probe.bias, rtol=1e-12, atol=1e-12)

    replay, state_before = _pn(W), []
    for i, (x, mask, _) in enumerate(steps):
        state_before.append({k: v.clone() for k, v in replay.state_dict().items()})
        replay.set_num_updates(updates[i])
        replay(x, mask)
    assert batch_normalized(W * U - 1) and not batch_normalized(W * U)
    if W > U:  # the forward-call clock would already have switched here
        assert batch_normalized(W)


CASES = [
    ("batch", dict(variant="reference")),
    ("batch", dict(variant="paper")),
    ("power_v", {}),
    ("power", dict(variant="reference", warmup_updates=3, groups=2)),
    ("power", dict(variant="reference", warmup_updates=3, groups=0)),
    ("power", dict(variant="paper")),
]


@pytest.mark.parametrize("name, opts", CASES)
def test_dummy_batch_moves_nothing_and_stays_finite(name, opts):
    steps = _steps(4, C, seed=5)
    norm, twin = (build_norm(name, C, **opts).double() for _ in range(2))
    twin.load_state_dict(norm.state_dict())
    for x, mask, dy in steps[:2]:
        for layer in (norm, twin):
            layer(x.clone().requires_grad_(), mask).backward(dy)
    before = {k: v.clone() for k, v in norm.state_dict().items()}
    x, mask, dy = steps[2]
    xg = x.clone().requires_grad_()
    with dummy_batch_context(norm):
        y = norm(xg, mask)
        (y * dy).sum().mul(0).backward()  # fairseq multiplies a dummy batch's loss by 0
    assert torch.isfinite(y).all() and torch.isfinite(xg.grad).all()
    for k, v in norm.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert not norm.dummy_batch
    # and the next real step is exactly what it would have been without the dummy batch
    x, mask, dy = steps[3]
    outs = []
    for layer in (norm, twin):
        xg = x.clone().requires_grad_()
        y = layer(xg, mask)
        y.backward(dy)
        outs.append((y, xg.grad, layer.state_dict()))
    assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][1], outs[1][1])
    for k in outs[0][2]:
        assert torch.equal(outs[0][2][k], outs[1][2][k]), k


TINY = ["--encoder-layers", "2", "--decoder-layers", "1", "--encoder-embed-dim", "16", "--decoder-embed-dim", "16",
        "--encoder-ffn-embed-dim", "32", "--decoder-ffn-embed-dim", "32", "--encoder-attention-heads", "2",
        "--decoder-attention-heads", "2", "--share-all-embeddings"]


class _Optimizer:
    """What FairseqTask.train_step needs of an optimizer: backward."""

    def backward(self, loss):
        loss.backward()


def _task_model(data_bin, arch, extra=()):
    parser = options.get_training_parser()
    args = options.parse_args_and_arch(parser, [
        str(data_bin), "--user-dir", str(REPO / "pn_fairseq"), "--task", "translation_pn", "--arch", arch, *TINY,
        "--cpu", "--max-tokens", "200", "--warmup-updates", "2", "--criterion", "label_smoothed_cross_entropy",
        "--optimizer", "adam", *extra])
    task = tasks.setup_task(args)
    assert isinstance(task, TranslationPNTask)
    task.load_dataset("train")
    model, criterion = task.build_model(args), task.build_criterion(args)
    itr = task.get_batch_iterator(dataset=task.dataset("train"), max_tokens=200, seed=1).next_epoch_itr(shuffle=False)
    return task, model, criterion, [next(itr) for _ in range(3)]


def _norm_state(model):
    return {k: v.clone() for k, v in model.state_dict().items() if "running" in k or "num_batches" in k}


@pytest.mark.parametrize("arch", ["transformer_pn", "transformer_bn", "transformer_pnv"])
def test_translation_pn_task_dummy_batch_and_aborted_step(arch, data_bin):
    task, model, criterion, batches = _task_model(data_bin, arch)
    task.train_step(batches[0], model, criterion, _Optimizer(), update_num=0)
    state = _norm_state(model)
    assert state, "the architecture has batch-statistics norms"

    # fairseq's dummy batch: forward and backward in training mode, loss x 0
    loss, _, _ = task.train_step(batches[1], model, criterion, _Optimizer(), update_num=1, ignore_grad=True)
    assert torch.isfinite(loss)
    for k, v in _norm_state(model).items():
        assert torch.equal(v, state[k]), k
    assert not any(m.dummy_batch for m in model.modules() if isinstance(m, NormBase))

    # a step that dies in the decoder (an out-of-memory error) after the encoder's norms moved
    def oom(*_):
        raise RuntimeError("CUDA out of memory (simulated)")

    hook = model.decoder.register_forward_pre_hook(oom)
    with pytest.raises(RuntimeError, match="out of memory"):
        task.train_step(batches[1], model, criterion, _Optimizer(), update_num=1)
    hook.remove()
    for k, v in _norm_state(model).items():
        assert torch.equal(v, state[k]), k

    # a real step moves them, and PN learnt the update count from fairseq's hook
    task.train_step(batches[2], model, criterion, _Optimizer(), update_num=7)
    moved = _norm_state(model)
    assert any(not torch.equal(moved[k], state[k]) for k in state)
    counters = [k for k in moved if k.endswith("num_batches_tracked")]
    assert all(int(moved[k]) == int(state[k]) + 1 for k in counters)
    pns = [m for m in model.modules() if isinstance(m, PowerNorm)]
    assert bool(pns) == (arch == "transformer_pn"), [type(m).__name__ for m in model.modules()]
    for m in pns:
        assert m._num_updates == 7 and m.k == int(moved[counters[0]])
        # update 7 >= --warmup-updates 2: past the warm-up (counting forward calls, k = 2, would not be)
        assert m.warmup_updates == 2 and m.in_warmup(m.k) == (False, False)
