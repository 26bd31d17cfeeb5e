"""A non-finite value never reaches a running buffer (issue 38): a plain PyTorch loop with
``torch.amp.GradScaler`` on CPU (scale the loss, skip the optimizer step on inf, halve the
scale) around ``lin2(norm(lin1(x)))``, for BN, PN-V and PN (both variants, both paths).

What differs from the same loop without the overflowed step, and why:

* An inf in the gradient reaching the norm (what an fp16 overflow gives before the scaler
  skips the step): the forward of that step ran on finite values, so its batch statistic
  entered the forward buffers (BN's running mean/variance, PN-V's and PN's ``psi2``) and
  ``num_batches_tracked`` counts it: nothing in the layer can know at forward time that the
  backward will overflow. The backward statistic (PN's ``nu``) is left as it was and PN counts
  the skip in ``nonfinite_skips``; BN and PN-V keep no backward statistic and skip nothing.
  So the loop equals, exactly, the same loop in which that step is a forward only, apart from
  PN's ``nonfinite_skips`` (1 against 0); against the loop without the step at all, right after
  it, the parameters and ``nu`` are equal, the forward buffers are one update further (checked
  against the spec's update computed here) and ``num_batches_tracked`` is one higher.
* An inf in the activations reaching the norm: its batch statistic is not finite, so nothing
  moves, counters included (PN's warm-up clock too), and every later step equals, exactly, the
  same loop without that step; ``nonfinite_skips`` is 1 (the forward) for BN and PN-V, 2 for PN
  (the forward and the backward, whose gradient is then not finite either).

Equality is exact although the scaler halves its scale at the overflow: the norms are told the
scale (``loss_scale_context``) and a power-of-two factor scales every product and sum exactly.
"""
import math

import pytest
import torch
import torch.nn as nn

from pn_fairseq.models import norm_monitor
from pn_fairseq.norms import build_norm, loss_scale_context

C, EPS, STEPS = 8, 1e-5, 7
CASES = [
    ("batch", dict(variant="reference")),
    ("batch", dict(variant="paper")),
    ("power_v", {}),
    ("power", dict(variant="reference", warmup_updates=3, groups=2)),
    ("power", dict(variant="paper")),
]
IDS = ["bn-reference", "bn-paper", "pnv", "pn-reference", "pn-paper"]


def _batches(n=STEPS, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        lengths = torch.tensor([(i + j) % 4 + 3 for j in range(3)])
        T = int(lengths.max())
        x = torch.randn(T, 3, C, generator=g) * (1 + 0.3 * i) + 0.2
        mask = torch.arange(T)[None, :] >= lengths[:, None]
        target = torch.randn(T, 3, C, generator=g)
        out.append((x, mask, target))
    return out


class Net(nn.Module):
    def __init__(self, name, opts, impl):
        super().__init__()
        torch.manual_seed(0)
        self.lin1, self.lin2 = nn.Linear(C, C), nn.Linear(C, C)
        self.norm = build_norm(name, C, impl=impl, **opts)
        with torch.no_grad():  # gamma, beta away from 1, 0
            self.norm.weight.uniform_(0.5, 1.5)
            self.norm.bias.uniform_(-0.5, 0.5)


def _loss(out, target, mask):
    keep = (~mask).t().unsqueeze(-1).to(out.dtype)
    return ((out - target) ** 2 * keep).sum() / keep.sum()


def _train(name, opts, impl, plan):
    """The loop; ``plan``: {step: "grad_inf" | "act_inf" | "forward_only" | "omit"}. Returns
    {step: (loss, buffers, parameters, scale, the norm's input)} after each step taken."""
    net = Net(name, opts, impl)
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 10, growth_interval=10 ** 6)
    seen = {}
    for i, (x, mask, target) in enumerate(_batches()):
        what = plan.get(i)
        if what == "omit":
            continue
        loss = None
        if what == "forward_only":
            h = net.lin1(x)
            net.norm(h, mask)  # a training-mode forward, then nothing
        else:
            if what == "act_inf":
                x = x.clone()
                x[0, 0, 0] = math.inf  # a real token (every sequence is at least 3 long)
            opt.zero_grad()
            with loss_scale_context(net, scaler.get_scale()):
                h = net.lin1(x)
                y = net.norm(h, mask)
                if what == "grad_inf":
                    y.register_hook(_one_inf)
                loss = _loss(net.lin2(y), target, mask)
                scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        seen[i] = (None if loss is None else float(loss.detach()), _clone(net.norm.named_buffers()),
                   _clone(net.named_parameters()), scaler.get_scale(), h.detach().clone())
    return seen


def _one_inf(grad):
    grad = grad.clone()
    grad[1, 2, 3] = math.inf
    return grad


def _clone(named):
    return {k: v.detach().clone() for k, v in named}


def _skips_per_overflow(name, kind):
    if kind == "grad_inf":
        return 1 if name == "power" else 0  # only PN keeps a backward statistic
    return 2 if name == "power" else 1


def _assert_same(a, b, what):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{what}: {k} differs: {a[k]} vs {b[k]}"


def _spec_forward_update(name, opts, before, h, mask):
    """The forward buffers after one training batch ``h: T x B x C`` (float64, spec notation),
    from ``before`` (the buffers)."""
    keep = (~mask).t().reshape(-1)
    x = h.double().reshape(-1, C)
    if name == "batch":
        m = 0.05
        if opts["variant"] == "reference":  # layer scaling, padding filled with the mean, all rows
            xs = x / torch.sqrt((x ** 2).mean(-1, keepdim=True) + EPS)
            mu = xs[keep].mean(0)
            n = x.shape[0]
            var = ((xs[keep] - mu) ** 2).sum(0) / n
        else:
            mu = x[keep].mean(0)
            n = int(keep.sum())
            var = ((x[keep] - mu) ** 2).mean(0)
        return {"running_mean": (1 - m) * before["running_mean"].double() + m * mu,
                "running_var": (1 - m) * before["running_var"].double() + m * var * n / (n - 1)}
    if name == "power_v":
        psi2_b = (x[keep] ** 2).mean(0)
        return {"running_psi2": 0.95 * before["running_psi2"].double() + 0.05 * psi2_b}
    groups = opts.get("groups", 0)
    if groups:
        parts = x.view(x.shape[0], groups, C // groups)
        x = (parts / torch.sqrt((parts ** 2).mean(-1, keepdim=True) + EPS)).view(-1, C)
    psi2_b = (x[keep] ** 2).mean(0)
    psi2, k = before["running_psi2"].double(), int(before["num_batches_tracked"]) + 1
    if opts["variant"] == "reference" and k < opts["warmup_updates"]:
        psi2 = psi2 * (k - 1) / k + psi2_b / k
    return {"running_psi2": 0.9 * psi2 + 0.1 * psi2_b}


def _check_finite_after(run, s):
    for i, (loss, buffers, params, _, _) in run.items():
        if i > s:
            assert math.isfinite(loss), i
        if i != s:
            assert all(torch.isfinite(v).all() for v in params.values()), i
        assert all(torch.isfinite(v).all() for v in buffers.values()), (i, buffers)


@pytest.mark.parametrize("impl", ["fused", "eager"])
@pytest.mark.parametrize("s", [1, 4])
@pytest.mark.parametrize("name, opts", CASES, ids=IDS)
def test_inf_gradient_leaves_the_backward_statistic_and_the_loop_goes_on(name, opts, impl, s):
    overflowed = _train(name, opts, impl, {s: "grad_inf"})
    forward_only = _train(name, opts, impl, {s: "forward_only"})
    without = _train(name, opts, impl, {s: "omit"})

    assert overflowed[s][3] == overflowed[s - 1][3] / 2  # the scaler saw the inf and skipped the step
    _assert_same(overflowed[s][2], overflowed[s - 1][2], "parameters across the skipped step")
    _check_finite_after(overflowed, s)

    skips = _skips_per_overflow(name, "grad_inf")
    for i in range(STEPS):  # the whole loop: as if step s had been a forward only
        _assert_same(overflowed[i][2], forward_only[i][2], f"parameters after step {i}")
        a, b = dict(overflowed[i][1]), dict(forward_only[i][1])
        assert int(b.pop("nonfinite_skips")) == 0
        assert int(a.pop("nonfinite_skips")) == (skips if i >= s else 0)
        _assert_same(a, b, f"buffers after step {i}")
        if i != s:
            assert overflowed[i][0] == forward_only[i][0]

    # Right after the overflow, against the loop without step s at all.
    a, b = overflowed[s][1], without[s - 1][1]
    _assert_same(overflowed[s][2], without[s - 1][2], "parameters")
    assert int(a["num_batches_tracked"]) == int(b["num_batches_tracked"]) + 1  # it counts the forward
    assert int(a["nonfinite_skips"]) == int(b["nonfinite_skips"]) + skips
    if name == "power":
        assert torch.equal(a["running_nu"], b["running_nu"])  # the backward statistic did not move
        assert b["running_nu"].abs().max() > 0  # ... and is not trivially zero
    expected = _spec_forward_update(name, opts, b, overflowed[s][4], _batches()[s][1])
    for key, value in expected.items():  # the forward statistic of step s entered them, as the spec says
        assert not torch.equal(a[key], b[key]), key
        torch.testing.assert_close(a[key].double(), value, rtol=2e-6, atol=1e-7)


@pytest.mark.parametrize("impl", ["fused", "eager"])
@pytest.mark.parametrize("s", [1, 4])
@pytest.mark.parametrize("name, opts", CASES, ids=IDS)
def test_inf_activation_moves_nothing_not_even_a_counter(name, opts, impl, s):
    overflowed = _train(name, opts, impl, {s: "act_inf"})
    without = _train(name, opts, impl, {s: "omit"})

    assert not math.isfinite(overflowed[s][0])  # the output is what it is: the loss sees the inf
    assert overflowed[s][3] == overflowed[s - 1][3] / 2
    _check_finite_after(overflowed, s)
    skips = _skips_per_overflow(name, "act_inf")
    for i in range(STEPS):
        before = s - 1 if i == s else i  # the loop without step s, at the same point
        _assert_same(overflowed[i][2], without[before][2], f"parameters after step {i}")
        a, b = dict(overflowed[i][1]), dict(without[before][1])
        assert int(b.pop("nonfinite_skips")) == 0
        assert int(a.pop("nonfinite_skips")) == (skips if i >= s else 0)
        _assert_same(a, b, f"buffers after step {i}")  # num_batches_tracked (PN's warm-up clock) too
        if i != s:
            assert overflowed[i][0] == without[i][0]


def test_skips_reach_the_log_and_the_divergence_line():
    """--log-norm-stats gets nonfinite_skips = 1 for a skipped update, 0 for a written one; the
    divergence check still stops a run whose statistic was not finite, in its one line, now
    with the layer's count of skips."""
    pn = build_norm("power", C, variant="paper")
    got = []
    pn.stats_sink = lambda n, stat, value: got.append((stat, float(value)))
    x = torch.randn(5, 2, C)
    pn(x)
    norms = {"encoder.layers.0.final_layer_norm": pn}
    norm_monitor.check_finite(norms, 3)  # finite: nothing happens
    x[1, 1, 2] = math.inf
    pn(x)
    assert [v for k, v in got if k == "nonfinite_skips"] == [0.0, 1.0]
    assert torch.isfinite(pn.running_psi2).all() and int(pn.num_batches_tracked) == 1 and int(pn.nonfinite_skips) == 1
    with pytest.raises(norm_monitor.NormDivergence) as err:
        norm_monitor.check_finite(norms, 4)
    assert str(err.value).startswith(
        "training diverged at update 4: running_psi2 of the norm enc0.ffn (encoder.layers.0.final_layer_norm), "
        "which skipped 1 non-finite update, is no longer finite.")
    assert "\n" not in str(err.value)


def test_finiteness_flags_stay_bounded_without_anyone_reading_them():
    """A plain loop never pops the flags the divergence check reads: one per buffer, not one per step."""
    pn = build_norm("power", C, variant="paper")
    for _ in range(20):
        x = torch.randn(4, 2, C, requires_grad=True)
        pn(x).sum().backward()
    flags = pn.pop_finite_flags()
    assert sorted(name for name, _ in flags) == ["running_nu", "running_psi2"]
    assert all(bool(flag) for _, flag in flags)


def test_skip_counter_is_no_checkpoint_state():
    """nonfinite_skips is a diagnostic of the process: not in the state_dict, so a checkpoint
    written before it existed loads strictly and BN's state still loads into BatchNorm1d."""
    bn = build_norm("batch", C, variant="paper")
    assert "nonfinite_skips" in dict(bn.named_buffers()) and "nonfinite_skips" not in bn.state_dict()
    torch.nn.BatchNorm1d(C).load_state_dict(bn.state_dict())
    old = {k: v for k, v in build_norm("power", C).state_dict().items()}
    build_norm("power", C).load_state_dict(old, strict=True)
