"""Half precision at the layer level (what fairseq's --fp16 / --bf16 trainers hand the norms:
a half-cast model and half activations; and bf16 autocast): statistics and buffers stay
float32, activations up to |x| = 1e4 give no inf/nan, the warm-up switch and counters match
float32, and a few updates stay within the half type's rounding of float32's, tensor by tensor."""
import pytest
import torch

from pn_fairseq.norms import build_norm
from pn_fairseq.norms.power_norm import PowerNorm

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
    """x, pad_mask and an O(1) upstream gradient (|dx| and PN's nu of order 0.1, well above
    half precision's rounding: a nu that never moves or a dx off by 2x shows at its own scale)."""
    torch.manual_seed(step)
    x, mask = padded_batch(scale=scale * (1 + step), dtype=torch.float32)
    dy = torch.randn(x.shape, generator=torch.Generator().manual_seed(step))
    dy[mask.t()] = 0.0
    return x, mask, dy


def _train(norm, dtype, steps=4, scale=1.0):
    outs = []
    for s in range(steps):
        x, mask, dy = _inputs(s, scale)
        xg = x.to(dtype).requires_grad_()
        if isinstance(norm, PowerNorm):
            norm.set_num_updates(s)
        y = norm(xg, mask)
        y.backward(dy.to(dtype))
        outs.append((y.float(), xg.grad.float()))
    return outs


def _assert_close_at_scale(actual, expected, ulps, dtype, what):
    """max |actual - expected| within ``ulps`` units of ``dtype``'s rounding at the scale of
    the tensor (max |expected|); a tensor that is all zeros must stay exactly zero."""
    actual, expected = actual.detach().float(), expected.detach().float()
    scale = float(expected.abs().max())
    err = float((actual - expected).abs().max())
    bound = ulps * torch.finfo(dtype).eps * scale
    assert err <= bound, f"{what}: differs by {err:.3g}, more than {bound:.3g} ({ulps} x eps at scale {scale:.3g})"


def _assert_nu_moved(norm):
    # From its initial zeros to O(0.1) in four steps (measured 0.05 to 0.12 here).
    if isinstance(norm, PowerNorm):
        assert float(norm.running_nu.abs().max()) > 1e-2, norm.running_nu


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
    if name in ("power", "power_v") and not opts.get("groups"):  # (group scaling brings the input to RMS 1 first)
        psi2 = norm.running_psi2
        assert psi2.dtype == torch.float32 and psi2.max() > 1e6  # the statistic itself did not overflow


# Within this many units of the half type's rounding (torch.finfo(dtype).eps: 9.8e-4 fp16,
# 7.8e-3 bf16) at each tensor's scale; measured: at most 0.75 (fp16) and 0.8 (bf16) for
# outputs, input and parameter gradients and buffers, 1.15 under autocast (bf16 linear first).
ULPS = 2


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name, opts", CASES)
def test_half_close_to_float32_with_same_counters(name, opts, dtype):
    ref = build_norm(name, 8, **opts)
    half = build_norm(name, 8, **opts).to(dtype)
    half.load_state_dict(ref.state_dict())
    ref_out, half_out = _train(ref, torch.float32), _train(half, dtype)
    for step, ((y_r, dx_r), (y_h, dx_h)) in enumerate(zip(ref_out, half_out)):
        _assert_close_at_scale(y_h, y_r, ULPS, dtype, f"y, step {step}")
        _assert_close_at_scale(dx_h, dx_r, ULPS, dtype, f"dx, step {step}")
    for k in ("weight", "bias"):  # the four steps' gradients, accumulated
        _assert_close_at_scale(getattr(half, k).grad, getattr(ref, k).grad, ULPS, dtype, f"d{k}")
    _assert_nu_moved(ref)
    for k, v in ref.state_dict().items():
        if v.dtype == torch.long:
            assert torch.equal(half.state_dict()[k], v), k
        else:
            _assert_close_at_scale(half.state_dict()[k], v, ULPS, dtype, k)
    if isinstance(ref, PowerNorm):
        assert half.k == ref.k == 4


@pytest.mark.parametrize("name, opts", CASES)
def test_bf16_autocast(name, opts):
    """A linear layer under CPU bf16 autocast feeds the norm bf16 activations: outputs, the
    gradient reaching the linear layer's input and the buffers match the same two layers in
    float32 (its backward too, which is what moves PN's nu)."""
    torch.manual_seed(0)
    lin = torch.nn.Linear(8, 8)
    norm, ref = build_norm(name, 8, **opts), build_norm(name, 8, **opts)
    ref.load_state_dict(norm.state_dict())
    for s in range(4):
        x, mask, dy = _inputs(s, 1.0)
        xa, xr = x.clone().requires_grad_(), x.clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            h = lin(xa)
            assert h.dtype == torch.bfloat16
            y = norm(h, mask)
        y.float().backward(dy)
        y_ref = ref(lin(xr), mask)
        y_ref.backward(dy)
        assert y.dtype == torch.bfloat16 and torch.isfinite(y.float()).all()
        _assert_close_at_scale(y, y_ref.detach(), ULPS, torch.bfloat16, f"y, step {s}")
        _assert_close_at_scale(xa.grad, xr.grad, ULPS, torch.bfloat16, f"dx, step {s}")
    _assert_nu_moved(ref)
    for k, b in norm.state_dict().items():
        assert b.dtype in (torch.float32, torch.long), k
        if b.dtype == torch.float32:
            _assert_close_at_scale(b, ref.state_dict()[k], ULPS, torch.bfloat16, k)
        else:
            assert torch.equal(b, ref.state_dict()[k])
