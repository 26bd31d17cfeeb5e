"""PN-V: gradcheck with padding, the spec's closed-form backward, the running buffer."""
import torch

from pn_fairseq.norms import build_norm

from conftest import padded_batch

EPS = 1e-5


def _pnv(C=8):
    norm = build_norm("power_v", C).double()
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-0.5, 0.5)
    return norm


def test_gradcheck_with_padding():
    x, mask = padded_batch(T=4, B=3, C=4, lengths=(4, 2, 3))
    keep = ~mask.t()
    norm = _pnv(4)
    x.requires_grad_(True)
    # The function of the real tokens (padding outputs are irrelevant downstream), with
    # respect to every input, padding included, and to gamma and beta.
    assert torch.autograd.gradcheck(lambda x, w, b: _with_params(norm, w, b)(x, mask)[keep],
                                     (x, norm.weight.detach().clone().requires_grad_(),
                                      norm.bias.detach().clone().requires_grad_()))


def _with_params(norm, w, b):
    def run(x, mask):
        norm.weight.data, norm.bias.data = w.detach(), b.detach()
        z = norm(x, mask)
        # route gamma/beta through autograd by re-expressing y = w * z0 + b
        z0 = (z - norm.bias.detach()) / norm.weight.detach()
        return w * z0 + b
    return run


def test_closed_form_backward_and_forward():
    x, mask = padded_batch()
    keep = ~mask.t()
    norm = _pnv()
    dy = torch.randn_like(x)
    xg = x.clone().requires_grad_()
    y = norm(xg, mask)
    y.backward(dy)
    psi2_b = (x[keep] ** 2).mean(0)
    z = x / torch.sqrt(psi2_b + EPS)
    torch.testing.assert_close(y, norm.weight * z + norm.bias, rtol=0, atol=1e-13)
    g = norm.weight * dy
    expected = (g - z * (g * z)[keep].mean(0)) / torch.sqrt(psi2_b + EPS)
    torch.testing.assert_close(xg.grad[keep], expected[keep], rtol=0, atol=1e-13)
    # Padding rows: the statistic is a constant for them, so dx = g / sqrt(psi2_B + eps).
    torch.testing.assert_close(xg.grad[~keep], (g / torch.sqrt(psi2_b + EPS))[~keep], rtol=0, atol=1e-13)
    torch.testing.assert_close(norm.weight.grad, (dy * z)[keep].sum(0), rtol=0, atol=1e-13)
    torch.testing.assert_close(norm.bias.grad, dy[keep].sum(0), rtol=0, atol=1e-13)
    torch.testing.assert_close(norm.running_psi2, 0.95 + 0.05 * psi2_b, rtol=0, atol=1e-15)


def test_no_mean_centring():
    # A constant input is not centred away: z = x / sqrt(x^2 + eps) ~ 1.
    norm = build_norm("power_v", 3).double()
    y = norm(torch.full((5, 3), 2.0, dtype=torch.float64))
    torch.testing.assert_close(y, torch.full((5, 3), 2 / (4 + EPS) ** 0.5, dtype=torch.float64))
