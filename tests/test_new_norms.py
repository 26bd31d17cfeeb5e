"""RMSNorm, ScaleNorm and DyT (docs/usage.md "Beyond the two papers"): forward and gradients against
the equations written out here in float64, padding invariance, half-precision inputs."""
import copy

import pytest
import torch

from pn_fairseq.norms import NORM_CHOICES, DyT, RMSNorm, ScaleNorm, build_norm
from pn_fairseq.models.norm_options import NORM_DEFAULTS, build_side_norm
from pn_fairseq.models.transformer_pn import norm_kind_in_state

from conftest import padded_batch

NEW = ("rms", "scale", "dyt")


def rms_eq(x, g, eps):
    return g * x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps)


def scale_eq(x, g, eps):
    return g * x / torch.maximum(torch.sqrt((x * x).sum(-1, keepdim=True)), torch.tensor(eps, dtype=x.dtype))


def dyt_eq(x, alpha, gamma, beta):
    return gamma * torch.tanh(alpha * x) + beta


def equation(name, norm, x):
    if name == "rms":
        return rms_eq(x, norm.weight, norm.eps)
    if name == "scale":
        return scale_eq(x, norm.scale, norm.eps)
    return dyt_eq(x, norm.alpha, norm.weight, norm.bias)


def randomized(name, C=8):
    norm = build_norm(name, C).double()
    with torch.no_grad():
        for p in norm.parameters():
            p.uniform_(0.5, 1.5) if p.numel() > 1 or name != "dyt" else p.fill_(0.7)
        if name == "dyt":
            norm.bias.uniform_(-0.5, 0.5)
    return norm


def test_registered_beside_the_paper_norms():
    assert set(NEW) <= set(NORM_CHOICES)
    assert isinstance(build_norm("rms", 8), RMSNorm)
    assert isinstance(build_norm("scale", 8), ScaleNorm)
    assert isinstance(build_norm("dyt", 8), DyT)


def test_initial_parameters():
    rms = build_norm("rms", 16)
    assert torch.equal(rms.weight, torch.ones(16)) and rms.bias is None
    assert [n for n, _ in rms.named_parameters()] == ["weight"]
    scale = build_norm("scale", 16)
    assert scale.scale.shape == (1,) and scale.scale.item() == pytest.approx(4.0)  # sqrt(C)
    dyt = build_norm("dyt", 16)
    assert dyt.alpha.item() == 0.5 and torch.equal(dyt.weight, torch.ones(16)) and torch.equal(dyt.bias, torch.zeros(16))
    assert build_norm("dyt", 16, alpha_init=2.0).alpha.item() == 2.0
    assert build_norm("rms", 16, bias=True).bias.shape == (16,)


@pytest.mark.parametrize("name, options, message", [
    ("rms", dict(eps=0.0), "eps must be > 0"),
    ("rms", dict(momentum=0.1), "does not take option"),
    ("scale", dict(scale_init=-1.0), "scale_init must be a finite number > 0"),
    ("dyt", dict(alpha_init=0.0), "alpha_init must be a finite number > 0"),
    ("dyt", dict(alpha_init=float("nan")), "alpha_init must be a finite number > 0"),
])
def test_invalid_options(name, options, message):
    with pytest.raises(ValueError, match=message):
        build_norm(name, 8, **options)


@pytest.mark.parametrize("name", NEW)
def test_forward_and_gradients_equal_the_equation(name):
    norm = randomized(name)
    x, mask = padded_batch()
    dy = torch.randn_like(x)
    xa = x.clone().requires_grad_()
    y = norm(xa, mask)
    y.backward(dy)
    got = {n: p.grad.clone() for n, p in norm.named_parameters()}
    norm.zero_grad()
    xb = x.clone().requires_grad_()
    expected = equation(name, norm, xb)
    expected.backward(dy)
    torch.testing.assert_close(y, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-10, atol=1e-12)
    for n, p in norm.named_parameters():
        torch.testing.assert_close(got[n], p.grad, rtol=1e-10, atol=1e-12)
    assert norm(x.reshape(-1, 8)).shape == (x.shape[0] * x.shape[1], 8)


@pytest.mark.parametrize("name", NEW)
def test_gradcheck(name):
    norm = randomized(name, C=5)
    x = torch.randn(3, 2, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda inp, *ps: norm(inp), (x, *norm.parameters()))


def test_scale_norm_eps_clamps_tiny_vectors():
    norm = build_norm("scale", 4).double()
    x = torch.full((2, 4), 1e-7, dtype=torch.float64)  # ||x|| = 2e-7 < eps = 1e-5
    torch.testing.assert_close(norm(x), 2.0 * x / 1e-5)


@pytest.mark.parametrize("name", NEW)
def test_padding_values_change_nothing_at_real_tokens(name):
    outs = []
    for fill in (1, 2):
        torch.manual_seed(0)
        norm = randomized(name)
        x, mask = padded_batch()
        x[mask.t()] = 100 * torch.randn(int(mask.sum()), 8, dtype=torch.float64,
                                        generator=torch.Generator().manual_seed(fill))
        dy = torch.randn(x.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
        dy[mask.t()] = 0.0  # fairseq sends no gradient to padding outputs
        x.requires_grad_()
        y = norm(x, mask)
        y.backward(dy)
        keep = ~mask.t()
        outs.append((y[keep].detach(), x.grad[keep], {n: p.grad.clone() for n, p in norm.named_parameters()}))
        # and the mask itself changes nothing: the norms are per position
        torch.testing.assert_close(norm(x, mask), norm(x))
    (ya, ga, pa), (yb, gb, pb) = outs
    torch.testing.assert_close(ya, yb, rtol=0, atol=0)
    torch.testing.assert_close(ga, gb, rtol=0, atol=0)
    for n in pa:
        torch.testing.assert_close(pa[n], pb[n], rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", NEW)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_inputs_with_large_values_stay_finite_and_accurate(name, dtype):
    # |x| ~ 1000: x^2 overflows fp16 (max 65504), so the reduction must run in float32.
    norm = randomized(name).to(dtype)
    x, mask = padded_batch(dtype=torch.float64, scale=1000.0)
    xh = x.to(dtype)
    y = norm(xh, mask)
    assert y.dtype == dtype and torch.isfinite(y).all()
    ref = equation(name, copy.deepcopy(norm).double(), xh.double())
    tol = 1e-2 if dtype == torch.float16 else 2e-2
    torch.testing.assert_close(y.double(), ref, rtol=tol, atol=tol)
    # half parameters with a float32 input (fairseq's fp16 keeps float32 master weights elsewhere)
    assert norm(x.float()).dtype == torch.float32


@pytest.mark.parametrize("name", NEW)
def test_model_half_keeps_working(name):
    norm = build_norm(name, 8).half()
    x = torch.randn(5, 8, dtype=torch.float16) * 300
    assert torch.isfinite(norm(x)).all()


def _cfg(**kw):
    from argparse import Namespace

    cfg = Namespace(**dict(NORM_DEFAULTS, pn_warmup_updates=0))
    for k, v in kw.items():
        setattr(cfg, k, v)
    return cfg


def test_flags_reach_the_norms():
    dyt = build_side_norm(_cfg(norm_type="dyt", dyt_alpha_init=0.25), "encoder", 8, 2)
    assert isinstance(dyt, DyT) and dyt.alpha.item() == 0.25
    assert isinstance(build_side_norm(_cfg(decoder_norm_type="rms"), "decoder", 8, 2), RMSNorm)
    assert isinstance(build_side_norm(_cfg(decoder_norm_type="scale"), "decoder", 8, 2), ScaleNorm)


@pytest.mark.parametrize("name", ("layer",) + NEW)
def test_checkpoint_norm_kind_is_recognised(name):
    state = {f"enc.n.{k}": v for k, v in build_norm(name, 8).state_dict().items()}
    assert norm_kind_in_state(state, "enc.n") == name
