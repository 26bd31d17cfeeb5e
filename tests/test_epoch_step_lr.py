"""The epoch_step LR scheduler: constant, x factor at the listed epochs, optional warm-up."""
import pytest
from omegaconf import OmegaConf

from fairseq.optim import FairseqOptimizer

import pn_fairseq  # noqa: F401
from pn_fairseq.optim.epoch_step import EpochStepLR, EpochStepLRConfig


class _Opt(FairseqOptimizer):
    """Records the LR the scheduler sets."""

    def __init__(self):
        self.lr = None

    def set_lr(self, lr):
        self.lr = lr

    def get_lr(self):
        return self.lr


def _sched(**kw):
    cfg = OmegaConf.structured(EpochStepLRConfig(lr=[5e-4], **kw))
    opt = _Opt()
    return EpochStepLR(cfg, opt), opt


def test_constant_then_times_factor_from_epoch_8_once():
    sched, opt = _sched()
    lrs = {}
    for epoch in range(1, 11):
        sched.step_begin_epoch(epoch)
        sched.step_update(epoch * 100)
        lrs[epoch] = opt.get_lr()
    assert all(lrs[e] == pytest.approx(5e-4) for e in range(1, 8))
    assert all(lrs[e] == pytest.approx(5e-5) for e in range(8, 11))  # once, not 0.1 per epoch


def test_linear_warmup_then_constant():
    sched, opt = _sched(warmup_updates=4, warmup_init_lr=0.0, lr_decay_epochs="3,5", lr_decay_factor=0.5)
    assert opt.get_lr() == 0.0
    got = [sched.step_update(n) for n in range(6)]
    assert got == pytest.approx([0.0, 1.25e-4, 2.5e-4, 3.75e-4, 5e-4, 5e-4])
    sched.step_begin_epoch(5)
    assert opt.get_lr() == pytest.approx(1.25e-4)


@pytest.mark.parametrize("kw, msg", [(dict(lr_decay_epochs="eight"), "comma-separated integers"),
                                     (dict(lr_decay_epochs="0"), ">= 1"),
                                     (dict(lr_decay_factor=0.0), "must be > 0")])
def test_bad_options(kw, msg):
    with pytest.raises(ValueError, match=msg):
        _sched(**kw)
