"""Half precision at the layer level (what fairseq's --fp16 / --bf16 trainers hand the norms:
a half-cast model and half activations; and bf16 autocast): statistics and buffers stay
float32, activations up to |x| = 1e4 give no inf/nan, the warm-up switch and counters match
float32, and a few updates stay close to float32's."""
import pytest
import torch

from pn_fairseq.norms import build_norm

from conftest import padded_batch

CASES = [
    ("batch", dict(variant="reference")),
    ("batch", dict(variant="paper")),
    ("power_v", {}),
    ("power", dict(variant="reference", warmup_updates=2, groups=2)),
    ("power", dict(variant="reference", warmup_updates=2, groups=0)),
    ("power", dict(variant="paper")),
]


def _inputs(step, scale):
    torch.manual_seed(step)
    x, mask = padded_batch(scale=scale * (1 + step), dtype=torch.float32)
    dy = torch.randn(x.shape, generator=torch.Generator().manual_seed(step)) * 1e-2
    dy[mask.t()] = 0.0
    return x, mask, dy


def _train(norm, dtype, steps=4, scale=1.0):
    outs = []
    for s in range(steps):
        x, mask, dy = _inputs(s, scale)
        xg = x.to(dtype).requires_grad_()
        norm.set_num_updates(s) if hasattr(norm, "set_num_updates") else None
        y = norm(xg, mask)
        y.backward(dy.to(dtype))
        outs.append((y.float(), xg.grad.float()))
    return outs


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name, opts", CASES)
def test_half_cast_layer_large_activations(name, opts, dtype):
    """|x| up to 1e4 (x^2 = 1e8 overflows fp16's 65504): finite outputs, gradients, buffers."""
    norm = build_norm(name, 8, **opts).to(dtype)
    assert norm.weight.dtype == dtype
    assert all(b.dtype in (torch.float32, torch.long) for b in norm.buffers())
    outs = _train(norm, dtype, scale=2.5e3)
    for y, dx in outs:
        assert torch.isfinite(y).all() and torch.isfinite(dx).all()
    for k, b in norm.state_dict().items():
        assert torch.isfinite(b.float()).all(), k
    psi2 = getattr(norm, "running_psi2", None)
    if psi2 is not None and not opts.get("groups"):  # (group scaling brings the input to RMS 1 first)
        assert psi2.dtype == torch.float32 and psi2.max() > 1e6  # the statistic itself did not overflow


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name, opts", CASES)
def test_half_close_to_float32_with_same_counters(name, opts, dtype):
    ref = build_norm(name, 8, **opts)
    half = build_norm(name, 8, **opts).to(dtype)
    half.load_state_dict(ref.state_dict())
    ref_out, half_out = _train(ref, torch.float32), _train(half, dtype)
    tol = dict(rtol=2e-2, atol=2e-2) if dtype == torch.float16 else dict(rtol=6e-2, atol=6e-2)
    for (y_r, dx_r), (y_h, dx_h) in zip(ref_out, half_out):
        torch.testing.assert_close(y_h, y_r, **tol)
        torch.testing.assert_close(dx_h, dx_r, **tol)
    for k, v in ref.state_dict().items():
        if v.dtype == torch.long:
            assert torch.equal(half.state_dict()[k], v), k
        else:
            torch.testing.assert_close(half.state_dict()[k].float(), v, **tol)
    if hasattr(ref, "k"):
        assert half.k == ref.k == 4


@pytest.mark.parametrize("name, opts", CASES)
def test_bf16_autocast(name, opts):
    """A linear layer under CPU bf16 autocast feeds the norm bf16 activations."""
    torch.manual_seed(0)
    lin = torch.nn.Linear(8, 8)
    norm, ref = build_norm(name, 8, **opts), build_norm(name, 8, **opts)
    ref.load_state_dict(norm.state_dict())
    for s in range(4):
        x, mask, dy = _inputs(s, 1.0)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            h = lin(x)
            assert h.dtype == torch.bfloat16
            y = norm(h, mask)
        y.float().backward(dy)
        y_ref = ref(lin(x).detach(), mask)
        assert y.dtype == torch.bfloat16 and torch.isfinite(y.float()).all()
        torch.testing.assert_close(y.float(), y_ref.detach(), rtol=6e-2, atol=6e-2)
    for k, b in norm.state_dict().items():
        assert b.dtype in (torch.float32, torch.long), k
        if b.dtype == torch.float32:
            torch.testing.assert_close(b, ref.state_dict()[k], rtol=3e-2, atol=3e-2)
        else:
            assert torch.equal(b, ref.state_dict()[k])
