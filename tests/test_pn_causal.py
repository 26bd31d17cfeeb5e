"""PN's ``causal=True`` (issue 35): in training mode the forward never divides by the current
batch's statistic, so a position's output does not depend on later tokens of its sequence,
also during the reference variant's warm-up (where ``causal=False`` divides by the batch)."""
import pytest
import torch

from pn_fairseq.norms import build_norm

T, B, C, EPS = 6, 3, 8, 1e-5


def _batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(T, B, C, generator=g) * 2 + 0.3
    mask = torch.arange(T)[None, :] >= torch.tensor([6, 5, 4])[:, None]
    return x, mask


def _group_scale(x, groups):
    if not groups:
        return x
    parts = x.reshape(-1, groups, C // groups)
    return (parts / torch.sqrt((parts ** 2).mean(-1, keepdim=True) + EPS)).reshape(x.shape)


@pytest.mark.parametrize("impl", ["fused", "eager"])
@pytest.mark.parametrize("groups", [0, 2])
@pytest.mark.parametrize("clock", ["forward calls", "fairseq updates"])
def test_later_tokens_change_no_earlier_output_at_update_0(impl, groups, clock):
    x, mask = _batch()
    t, b = 2, 0
    later = x.clone()
    later[t + 1:, b] += 5 * torch.randn(T - t - 1, C)  # only positions > t of sequence b

    def first_output(causal, inp):
        pn = build_norm("power", C, variant="reference", warmup_updates=4, groups=groups, impl=impl, causal=causal)
        if clock == "fairseq updates":
            pn.set_num_updates(0)
        return pn(inp, mask).detach()

    same, moved = first_output(True, x), first_output(True, later)
    assert torch.equal(same[: t + 1], moved[: t + 1])  # every sequence, positions <= t: exactly
    assert not torch.equal(same[t + 1:, b], moved[t + 1:, b])
    # Without causal the warm-up divides by this batch's statistic: earlier outputs move.
    leaky, leaky_moved = first_output(False, x), first_output(False, later)
    assert (leaky[: t + 1, b] - leaky_moved[: t + 1, b]).abs().max() > 1e-3


@pytest.mark.parametrize("impl", ["fused", "eager"])
@pytest.mark.parametrize("warmup", [0, 4])
def test_divides_by_the_running_statistic_of_earlier_batches(impl, warmup):
    """Update 0 divides by psi2's init 1; update 1 by psi2 after batch 0: with a warm-up the
    cumulative average of batch 0 alone (its own psi2_B), without one the EMA 0.9 * 1 + 0.1 psi2_B."""
    groups = 2
    pn = build_norm("power", C, variant="reference", warmup_updates=warmup, groups=groups, impl=impl, causal=True)
    with torch.no_grad():
        pn.weight.uniform_(0.5, 1.5)
        pn.bias.uniform_(-0.5, 0.5)
    gamma, beta = pn.weight.detach().double(), pn.bias.detach().double()
    (x0, mask0), (x1, mask1) = _batch(0), _batch(1)
    y0 = pn(x0.requires_grad_(), mask0)
    y0.sum().backward()
    xs0 = _group_scale(x0.detach().double(), groups)
    torch.testing.assert_close(y0.detach().double(), gamma * xs0 / (1 + EPS) ** 0.5 + beta, rtol=1e-5, atol=1e-5)
    psi2_b0 = (xs0.reshape(-1, C)[~mask0.t().reshape(-1)] ** 2).mean(0)
    psi2_1 = psi2_b0 if warmup else 0.9 + 0.1 * psi2_b0
    y1 = pn(x1, mask1)
    xs1 = _group_scale(x1.double(), groups)
    torch.testing.assert_close(y1.detach().double(), gamma * xs1 / torch.sqrt(psi2_1 + EPS) + beta, rtol=1e-5, atol=1e-5)


def test_causal_is_a_registry_option_and_checked():
    assert build_norm("power", C, causal=True).causal is True
    assert "causal=True" in repr(build_norm("power", C, causal=True))
    with pytest.raises(ValueError, match="causal must be True or False"):
        build_norm("power", C, causal="yes")
