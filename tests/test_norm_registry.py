"""build_norm: names, option validation, shapes; LN equals F.layer_norm."""
import pytest
import torch
import torch.nn.functional as F

from pn_fairseq.norms import NORM_CHOICES, build_norm

from conftest import padded_batch


def test_choices_are_the_papers_four_norms_and_the_per_position_ones():
    assert set(NORM_CHOICES) == {"layer", "batch", "power_v", "power", "rms", "scale", "dyt"}


def test_unknown_name_lists_valid_choices():
    with pytest.raises(ValueError, match=r"unknown norm 'group'.*layer, batch, power_v, power, rms, scale, dyt"):
        build_norm("group", 8)


@pytest.mark.parametrize(
    "name, options, message",
    [
        ("power", dict(groups=3), "not divisible by groups=3"),
        ("power", dict(groups=-1), r"groups must be an integer >= 0 \(0 = no group scaling\)"),
        ("batch", dict(sync_stats=1), "sync_stats must be True or False"),
        ("power", dict(alpha_fwd=1.0), r"alpha_fwd must lie in \(0, 1\)"),
        ("power", dict(alpha_bkw=0.0), r"alpha_bkw must lie in \(0, 1\)"),
        ("power", dict(warmup_updates=-1), "warmup_updates must be an integer >= 0"),
        ("power", dict(variant="released"), "variant must be one of 'reference', 'paper'"),
        ("batch", dict(momentum=0.0), r"momentum must lie in \(0, 1\]"),
        ("batch", dict(variant="x"), "variant must be one of"),
        ("power_v", dict(eps=0.0), "eps must be > 0"),
        ("layer", dict(momentum=0.1), "does not take option"),
        ("batch", dict(alpha_fwd=0.9), r"valid options: variant, momentum, eps"),
    ],
)
def test_invalid_options_fail_at_build_time(name, options, message):
    with pytest.raises(ValueError, match=message):
        build_norm(name, 8, **options)


@pytest.mark.parametrize("name", NORM_CHOICES)
def test_accepts_TxBxC_with_mask_and_NxC(name):
    norm = build_norm(name, 8)
    x, mask = padded_batch(C=8, dtype=torch.float32)
    assert norm(x, mask).shape == x.shape
    assert norm(x).shape == x.shape
    assert norm(x.reshape(-1, 8)).shape == (x.shape[0] * x.shape[1], 8)


@pytest.mark.parametrize("name", ["batch", "power_v", "power"])
def test_bad_masks_are_rejected(name):
    norm = build_norm(name, 8)
    x, mask = padded_batch(C=8, dtype=torch.float32)
    with pytest.raises(ValueError, match="pad_mask must be B x T"):
        norm(x, mask.t())
    with pytest.raises(ValueError, match="every position as padding"):
        norm(x, torch.ones_like(mask))
    with pytest.raises(ValueError, match="only accepted with x of shape T x B x C"):
        norm(x.reshape(-1, 8), mask)


def test_layer_norm_equals_functional_layer_norm():
    norm = build_norm("layer", 8).double()
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-0.5, 0.5)
    x, mask = padded_batch()
    x.requires_grad_(True)
    y = norm(x, mask)
    expected = F.layer_norm(x, (8,), norm.weight, norm.bias, 1e-5)
    torch.testing.assert_close(y, expected, rtol=0, atol=0)


def test_low_precision_cast_keeps_statistics_float32():
    norm = build_norm("power", 8).half()
    assert norm.weight.dtype == torch.float16
    assert norm.running_psi2.dtype == torch.float32 and norm.running_nu.dtype == torch.float32
    assert norm.num_batches_tracked.dtype == torch.long
