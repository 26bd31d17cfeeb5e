"""``--optimizer radam`` (pn_fairseq/optim/radam.py): torch's RAdam behind fairseq's optimizer API."""
import pytest
import torch
from omegaconf import OmegaConf

from fairseq import options
from fairseq.optim import build_optimizer

import pn_fairseq  # noqa: F401  (registers radam)
from pn_fairseq.optim.radam import FairseqRAdamConfig

from conftest import REPO


def _toy(seed=0):
    """A small least-squares problem: (weight 3 x 4, bias 3) and a loss over 16 fixed points."""
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(16, 4, generator=g), torch.randn(16, 3, generator=g)
    params = [torch.randn(3, 4, generator=g, requires_grad=True), torch.zeros(3, requires_grad=True)]

    def loss(w, b):
        return ((x @ w.t() + b - y) ** 2).mean()

    return params, loss


def _fairseq_radam(params, lr, betas="(0.9, 0.98)", eps=1e-8, weight_decay=0.0):
    cfg = OmegaConf.structured(FairseqRAdamConfig(lr=[lr], adam_betas=betas, adam_eps=eps, weight_decay=weight_decay))
    cfg._name = "radam"
    return build_optimizer(cfg, params)


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_equals_torch_radam_step_for_step(weight_decay):
    """30 steps (RAdam's un-rectified first steps and its rectified ones, rho_t > 5 from step 6 at
    beta2 = 0.98), the lr changed half-way as a scheduler does: the same parameters at every step."""
    ours, loss = _toy()
    theirs = [p.detach().clone().requires_grad_(True) for p in ours]
    opt = _fairseq_radam(ours, 5e-3, weight_decay=weight_decay)
    ref = torch.optim.RAdam(theirs, lr=5e-3, betas=(0.9, 0.98), eps=1e-8, weight_decay=weight_decay,
                            decoupled_weight_decay=True)
    for step in range(30):
        if step == 15:
            opt.set_lr(1e-3)
            for group in ref.param_groups:
                group["lr"] = 1e-3
        opt.zero_grad()
        loss(*ours).backward()
        opt.step()
        ref.zero_grad()
        loss(*theirs).backward()
        ref.step()
        for a, b in zip(ours, theirs):
            assert torch.equal(a, b), f"step {step + 1}"
    assert loss(*ours) < loss(*_toy()[0])  # it optimizes


def test_first_step_is_lr_times_gradient():
    """Step 1 is un-rectified (rho_1 = 1 < 5): the bias-corrected first moment is the gradient, so
    p <- p * (1 - lr * wd) - lr * g, computed here by hand."""
    params, loss = _toy(1)
    start = [p.detach().clone() for p in params]
    loss(*params).backward()
    grads = [p.grad.clone() for p in params]
    opt = _fairseq_radam(params, 0.1, weight_decay=0.5)
    opt.step()
    for p, p0, g in zip(params, start, grads):
        torch.testing.assert_close(p.detach(), p0 * (1 - 0.1 * 0.5) - 0.1 * g, rtol=0, atol=1e-7)


def test_command_line_flags_reach_torch():
    parser = options.get_training_parser()
    args = options.parse_args_and_arch(parser, [
        "data", "--user-dir", str(REPO / "pn_fairseq"), "--arch", "transformer", "--optimizer", "radam",
        "--adam-betas", "(0.9, 0.98)", "--adam-eps", "1e-9", "--weight-decay", "0.1", "--lr", "5e-4"])
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    cfg = convert_namespace_to_omegaconf(args)
    opt = build_optimizer(cfg.optimizer, [torch.zeros(2, requires_grad=True)])
    group = opt.optimizer.param_groups[0]
    assert type(opt.optimizer) is torch.optim.RAdam
    assert (group["lr"], group["betas"], group["eps"], group["weight_decay"], group["decoupled_weight_decay"]) == (
        5e-4, (0.9, 0.98), 1e-9, 0.1, True)


def test_bad_betas_say_what_is_expected():
    with pytest.raises(ValueError, match=r"--adam-betas must be two numbers in \[0, 1\)"):
        _fairseq_radam([torch.zeros(2, requires_grad=True)], 1e-3, betas="(0.9)")
