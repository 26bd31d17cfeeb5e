"""BN: the paper variant against torch.nn.BatchNorm1d and the masked equations; the
reference variant's layer scaling and mean-filled padding against hand-computed values."""
import torch

from pn_fairseq.norms import build_norm

from conftest import padded_batch


def _randomize_affine(norm):
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-0.5, 0.5)


def test_paper_without_padding_equals_batchnorm1d_train_and_eval():
    T, B, C = 5, 3, 8
    ours = build_norm("batch", C, variant="paper", momentum=0.05).double()
    ref = torch.nn.BatchNorm1d(C, momentum=0.05, eps=1e-5).double()
    _randomize_affine(ours)
    ref.load_state_dict(ours.state_dict())
    for step in range(3):
        x = torch.randn(T, B, C, dtype=torch.float64) * (step + 1) + step
        grad = torch.randn(T, B, C, dtype=torch.float64)
        xa, xb = x.clone().requires_grad_(), x.reshape(-1, C).clone().requires_grad_()
        ya, yb = ours(xa), ref(xb)
        (ya * grad).sum().backward()
        (yb * grad.reshape(-1, C)).sum().backward()
        torch.testing.assert_close(ya.reshape(-1, C), yb, rtol=0, atol=1e-12)
        torch.testing.assert_close(xa.grad.reshape(-1, C), xb.grad, rtol=0, atol=1e-12)
        torch.testing.assert_close(ours.weight.grad, ref.weight.grad, rtol=0, atol=1e-12)
        torch.testing.assert_close(ours.bias.grad, ref.bias.grad, rtol=0, atol=1e-12)
        torch.testing.assert_close(ours.running_mean, ref.running_mean, rtol=0, atol=1e-14)
        torch.testing.assert_close(ours.running_var, ref.running_var, rtol=0, atol=1e-14)
        ours.zero_grad(), ref.zero_grad()
    ours.eval(), ref.eval()
    x = torch.randn(T, B, C, dtype=torch.float64)
    torch.testing.assert_close(ours(x).reshape(-1, C), ref(x.reshape(-1, C)), rtol=0, atol=1e-12)
    assert int(ours.num_batches_tracked) == 3


def test_paper_with_padding_equals_batchnorm1d_on_the_real_tokens():
    x, mask = padded_batch()
    keep = ~mask.t()
    ours = build_norm("batch", 8, variant="paper").double()
    ref = torch.nn.BatchNorm1d(8, momentum=0.05).double()
    grad = torch.randn_like(x)
    xa = x.clone().requires_grad_()
    ya = ours(xa, mask)
    (ya[keep] * grad[keep]).sum().backward()
    xb = x[keep].clone().requires_grad_()
    yb = ref(xb)
    (yb * grad[keep]).sum().backward()
    torch.testing.assert_close(ya[keep], yb, rtol=0, atol=1e-12)
    torch.testing.assert_close(xa.grad[keep], xb.grad, rtol=0, atol=1e-12)
    torch.testing.assert_close(ours.running_var, ref.running_var, rtol=0, atol=1e-14)
    torch.testing.assert_close(ours.weight.grad, ref.weight.grad, rtol=0, atol=1e-12)


def test_reference_layer_scaling_and_mean_filled_padding_by_hand():
    # T=2, B=2, C=2; position (t=1, b=1) is padding.
    x = torch.tensor([[[3.0, 4.0], [1.0, 1.0]], [[0.0, 2.0], [9.0, -9.0]]], dtype=torch.float64)
    mask = torch.tensor([[False, False], [False, True]])
    bn = build_norm("batch", 2, variant="reference", momentum=0.05).double()
    y = bn(x, mask)
    eps = 1e-5
    # Layer scaling: divide each position by its RMS over C.
    s00 = [3 / (12.5 + eps) ** 0.5, 4 / (12.5 + eps) ** 0.5]
    s01 = [1 / (1 + eps) ** 0.5, 1 / (1 + eps) ** 0.5]
    s10 = [0.0, 2 / (2 + eps) ** 0.5]
    real = [s00, s01, s10]
    for c in range(2):
        vals = [r[c] for r in real]
        mu = sum(vals) / 3
        # Padding holds mu, so the variance over all T*B = 4 rows has denominator 4.
        var = sum((v - mu) ** 2 for v in vals) / 4
        for (t, b), v in zip([(0, 0), (0, 1), (1, 0)], vals):
            assert abs(y[t, b, c].item() - (v - mu) / (var + eps) ** 0.5) < 1e-12
        assert abs(y[1, 1, c].item()) < 1e-12  # the filled mean normalizes to beta = 0
        assert abs(bn.running_mean[c].item() - 0.05 * mu) < 1e-14
        assert abs(bn.running_var[c].item() - (0.95 + 0.05 * var * 4 / 3)) < 1e-14
    bn.eval()
    y_eval = bn(x, mask)
    mu_r, var_r = bn.running_mean, bn.running_var
    expected = (torch.tensor(s00, dtype=torch.float64) - mu_r) / (var_r + eps).sqrt()
    torch.testing.assert_close(y_eval[0, 0], expected, rtol=0, atol=1e-12)
