"""The fused training path (``impl="fused"``, norms/fused.py + norms/kernels/) against the eager
reference (``impl="eager"``): outputs, input gradients, dgamma / dbeta and every buffer over
several steps across the end of PN's warm-up, float32 tight and half-precision inputs loose;
the kernels' sums against plain torch; the fallbacks."""
import subprocess
import sys

import pytest
import torch

from pn_fairseq.norms import build_norm, dummy_batch_context, kernels

CASES = [
    ("power", dict(variant="paper")),
    ("power", dict(variant="paper", groups=4)),
    ("power", dict(variant="reference", groups=4, warmup_updates=2)),
    ("power", dict(variant="reference", groups=0, warmup_updates=2)),
    ("power_v", {}),
    ("batch", dict(variant="paper")),
    ("batch", dict(variant="reference")),
]
IDS = [f"{n}-{'-'.join(f'{k}{v}' for k, v in o.items())}" for n, o in CASES]


def test_kernels_build_on_this_machine():
    # CI machines have a C compiler; without one the fused path silently becomes eager.
    assert kernels.load() is not None, kernels.unavailable_reason()


def pair(name, options, C):
    fused, eager = build_norm(name, C, **options), build_norm(name, C, impl="eager", **options)
    with torch.no_grad():
        for n in (fused, eager):
            n.weight.copy_(torch.linspace(0.5, 1.5, C))
            n.bias.copy_(torch.linspace(-0.2, 0.3, C))
    return fused, eager


def batches(steps, T, B, C, dtype, mean=0.5):
    """Random ``T x B x C`` inputs with padding (``B x T`` masks), one step without padding."""
    for step in range(steps):
        x = (torch.randn(T, B, C) * 2 + mean).to(dtype)
        lengths = torch.randint(1, T + 1, (B,))
        lengths[0] = T
        mask = torch.arange(T)[None, :] >= lengths[:, None]
        yield x, (None if step == 3 else mask), torch.randn(T, B, C).to(dtype)


def step(norm, x, mask, grad):
    xi = x.clone().requires_grad_(True)
    y = norm(xi, mask)
    y.backward(grad)
    out = dict(y=y.detach().float(), dx=xi.grad.float(), dw=norm.weight.grad.clone(), db=norm.bias.grad.clone())
    out.update({k: v.clone().float() for k, v in norm.state_dict().items() if k not in ("weight", "bias")})
    norm.weight.grad = norm.bias.grad = None
    return out


def assert_close(a, b, atol, rtol, what):
    for key in a:
        scale = b[key].abs().max().clamp_min(1.0)
        err = (a[key] - b[key]).abs().max() / scale
        assert err <= atol + rtol, f"{what}: {key} differs by {err:.2e} (relative to {scale:.3g})"


@pytest.mark.parametrize("name,options", CASES, ids=IDS)
def test_fused_equals_eager_float32(name, options):
    fused, eager = pair(name, options, 32)
    for i, (x, mask, grad) in enumerate(batches(6, 9, 5, 32, torch.float32)):
        assert_close(step(fused, x, mask, grad), step(eager, x, mask, grad), 2e-6, 0.0, f"step {i}")
    assert int(fused.num_batches_tracked) == int(eager.num_batches_tracked) == 6


def rounding_steps_apart(a, b, dtype):
    """Elementwise, how many of ``dtype``'s rounding steps (its spacing at ``b``) separate
    ``a`` and ``b``, two tensors of ``dtype`` values held as float32."""
    assert torch.equal(a.to(dtype).float(), a) and torch.equal(b.to(dtype).float(), b)
    bh = b.abs().to(dtype)
    spacing = torch.nextafter(bh, torch.tensor(float("inf"), dtype=dtype)).float() - bh.float()
    return (a - b).abs() / spacing


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name,options", CASES, ids=IDS)
def test_fused_equals_eager_half_inputs(name, options, dtype):
    """Both paths compute in float32 from the same half inputs: y and dx are float32 results
    rounded to ``dtype`` once, so they may land one rounding step apart (measured: at most 2
    of the 896 elements, by one step); the float32 buffers and parameter gradients agree to
    1e-5 of each tensor's largest value (measured: at most 6e-7)."""
    fused, eager = pair(name, options, 32)
    for i, (x, mask, grad) in enumerate(batches(4, 7, 4, 32, dtype)):
        a, b = step(fused, x, mask, grad), step(eager, x, mask, grad)
        assert a.keys() == b.keys()
        for key in a:
            what = f"{dtype} step {i}: {key}"
            if key in ("y", "dx"):
                steps = rounding_steps_apart(a[key], b[key], dtype).max()
                assert steps <= 1, f"{what} differs by {steps:.3g} rounding steps of {dtype}"
            elif key == "num_batches_tracked":
                assert torch.equal(a[key], b[key]), what
            else:
                err, scale = (a[key] - b[key]).abs().max(), b[key].abs().max()
                assert err <= 1e-5 * scale, f"{what} differs by {err:.2e} (largest value {scale:.3g})"
    statistics = {"power": {"running_psi2", "running_nu"}, "power_v": {"running_psi2"},
                  "batch": {"running_mean", "running_var"}}[name]
    for module in (fused, eager):  # the statistics stay float32 whatever the activations' type
        dtypes = dict((k, b.dtype) for k, b in module.named_buffers())
        assert {k for k, d in dtypes.items() if d.is_floating_point} == statistics
        assert all(dtypes[k] == torch.float32 for k in statistics), dtypes


def test_fused_path_is_taken_only_where_it_applies(monkeypatch):
    calls = []
    real = kernels.forward
    monkeypatch.setattr(kernels, "forward", lambda *a, **k: calls.append(1) or real(*a, **k))
    norm = build_norm("power", 8, variant="paper")
    x = torch.randn(5, 3, 8)
    norm(x)
    assert calls, "float32 CPU training must use the fused kernels"
    calls.clear()
    for n, inp in ((build_norm("power", 8, variant="paper", impl="eager"), x), (norm, x.double())):
        n(inp)
    norm.eval()
    norm(x)
    norm.train()
    with dummy_batch_context(norm):
        norm(x)
    assert not calls, "eager impl, float64, eval mode and dummy batches take the eager path"


def test_unknown_impl_is_refused():
    with pytest.raises(ValueError, match="impl must be one of 'fused', 'eager'"):
        build_norm("power", 8, impl="triton")


@pytest.fixture
def threads(request):
    """torch's intra-op thread count for one test (the kernels split rows over that many), restored after."""
    saved = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(saved)


@pytest.mark.parametrize("threads", [1, 3], indirect=True, ids=["1-thread", "3-threads"])
@pytest.mark.parametrize("with_shift", [True, False], ids=["shift", "no-shift"])
def test_kernel_sums_and_outputs_against_torch(with_shift, threads):
    # Without a shift the kernels take the real rows' sums as (all rows) - (padding rows).
    assert torch.get_num_threads() == threads
    torch.manual_seed(1)
    N, C, G, eps = 301, 48, 4, 1e-5  # N not a multiple of the thread count or of the flush block
    x, dy = torch.randn(N, C) * 3, torch.randn(N, C)
    w = (torch.rand(N) > 0.3).float()
    a, b, shift, pad = torch.rand(C), torch.rand(C), torch.rand(C), torch.rand(C)
    if not with_shift:
        shift = None
    c1, c2, c3 = torch.rand(C), torch.rand(C), torch.rand(C)
    xd, dyd, wd = x.double(), dy.double(), w.double()
    r = torch.rsqrt(xd.reshape(N, G, -1).pow(2).mean(-1) + eps)
    xs = (xd.reshape(N, G, -1) * r[..., None]).reshape(N, C)
    y, s1, s2, sa, r_out = kernels.forward(x, G, eps, w, shift, (True, True, True), a, b, pad)
    torch.testing.assert_close(r_out.double(), r, atol=1e-6, rtol=1e-5)
    real = w.bool()
    torch.testing.assert_close(y[real].double(), (xs * a.double() + b.double())[real], atol=1e-5, rtol=1e-5)
    assert torch.equal(y[~real], pad.expand(int((~real).sum()), C))
    sd = shift.double() if shift is not None else 0.0
    torch.testing.assert_close(s1, wd @ (xs - sd), atol=1e-3, rtol=1e-6)
    torch.testing.assert_close(s2, wd @ (xs - sd) ** 2, atol=1e-3, rtol=1e-6)
    torch.testing.assert_close(sa, (xs ** 2).sum(0), atol=1e-3, rtol=1e-6)
    dx, sk, sall, sxk, sxa = kernels.backward(dy, x, G, eps, w, shift, (True, True, True, True), c1, c2, c3, 2)
    dxs = dyd * c1.double() - xs * c2.double() + c3.double()
    proj = (dxs * xs).reshape(N, G, -1).mean(-1, keepdim=True)
    expect = ((dxs.reshape(N, G, -1) - xs.reshape(N, G, -1) * proj) * r[..., None]).reshape(N, C)
    torch.testing.assert_close(dx[real].double(), expect[real], atol=1e-4, rtol=1e-4)
    assert not dx[~real].any(), "pad_mode 2 zeroes padding rows"
    # The same with the forward's group factors handed in instead of recomputed.
    dx_r, *_ = kernels.backward(dy, x, G, eps, w, shift, (False, False, False, False), c1, c2, c3, 2, r=r_out)
    torch.testing.assert_close(dx_r, dx)
    y_r, *_ = kernels.forward(x, G, eps, w, a=a, b=b, pad_value=pad, r=r_out)
    torch.testing.assert_close(y_r, y)
    torch.testing.assert_close(sk, wd @ dyd, atol=1e-3, rtol=1e-6)
    torch.testing.assert_close(sall, dyd.sum(0), atol=1e-3, rtol=1e-6)
    torch.testing.assert_close(sxk, wd @ (dyd * (xs - sd)), atol=1e-3, rtol=1e-6)
    torch.testing.assert_close(sxa, (dyd * xs).sum(0), atol=1e-3, rtol=1e-6)
    # pad_mode 1: padding rows get dy * c1; without groups, dx = dxs.
    dx1, *_ = kernels.backward(dy, x, 0, eps, w, c1=c1, c2=c2, pad_mode=1)
    torch.testing.assert_close(dx1[~real], dy[~real] * c1)
    torch.testing.assert_close(dx1[real], (dy * c1 - x * c2)[real])


def test_kernel_sums_are_exact_for_long_batches():
    # Sums accumulate in float over 32 rows, then in double: a float32 running sum over
    # 200k rows of 1.0 + 1e-4 noise would drift; this one stays at float64 accuracy.
    N, C = 200_000, 16
    x = torch.full((N, C), 1.0) + torch.randn(N, C) * 1e-4
    _, s1, *_ = kernels.forward(x, 0, 1e-5, stats=(True, False, False))
    torch.testing.assert_close(s1, x.double().sum(0), atol=1e-6 * N, rtol=1e-9)


def test_kernel_rejects_wrong_inputs():
    with pytest.raises(ValueError, match="contiguous torch.float32 CPU tensor"):
        kernels.forward(torch.randn(4, 8).double(), 0, 1e-5, stats=(False, True, False))
    with pytest.raises(ValueError, match="contiguous"):
        kernels.forward(torch.randn(8, 4).t(), 0, 1e-5, stats=(False, True, False))


def test_without_a_compiler_the_layers_train_eagerly_with_one_warning(tmp_path):
    # A fresh process whose compiler does not exist and whose kernel cache is empty.
    code = (
        "import logging, torch; logging.basicConfig()\n"
        "from pn_fairseq.norms import build_norm, kernels\n"
        "n = build_norm('power', 8, variant='paper')\n"
        "x = torch.randn(5, 3, 8, requires_grad=True); n(x).sum().backward(); n(x).sum().backward()\n"
        "assert kernels.load() is None\n"
        "print('REASON', kernels.unavailable_reason())\n"
    )
    env = {"PN_FAIRSEQ_KERNEL_CACHE": str(tmp_path / "cache"), "CC": str(tmp_path / "no-such-cc"), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert "REASON building pn_fairseq/norms/kernels/norm_kernels.c failed" in out.stdout
    assert out.stderr.count("fused norms unavailable, using the eager path") == 1
