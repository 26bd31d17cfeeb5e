"""The Pre-LN paper's (Xiong et al. 2020) learning-rate schedules, indexed as the paper indexes them.

``--lr-scheduler warmup_rsqrt`` (Sec. 3.2): the t-th update (t = 1, 2, ...) runs at
``lr(t) = lr_max * t / T`` for ``t <= T`` and ``lr_max * sqrt(T / t)`` after, so ``T = 1`` (the
paper's "no warm-up") is ``lr_max / sqrt(t)`` from the first update. fairseq's
``inverse_sqrt`` is one update late: the lr it sets after ``n`` updates,
``warmup_init_lr + n * lr_max / T`` or ``lr_max * sqrt(T / n)``, is the lr of update ``n + 1``,
so with ``T = 1`` the first update runs at ``--warmup-init-lr`` (0 by default) and update t at
``lr_max / sqrt(t - 1)``.

``--lr-scheduler epoch_rsqrt`` (Sec. 4.1, WMT14): ``lr_max`` from the first update, then from
the first update of epoch E (``--lr-decay-epoch``), the t-th update runs at
``lr_max * factor * sqrt(t_E / t)``, t_E being the index of that first update.

The trainer calls ``step_update(n)`` after ``n`` updates (and at start-up and epoch
boundaries with the current ``n``); the lr set there is the one update ``n + 1`` uses.
"""
import logging
import math
from dataclasses import dataclass, field
from typing import List

from omegaconf import II

from fairseq.dataclass import FairseqDataclass
from fairseq.optim.lr_scheduler import FairseqLRScheduler, register_lr_scheduler

logger = logging.getLogger(__name__)


def _single_lr(cfg, name):
    if len(cfg.lr) > 1:
        raise ValueError(f"{name} takes a single --lr value, got {list(cfg.lr)}")
    if cfg.lr[0] <= 0:
        raise ValueError(f"{name}: --lr must be > 0, got {cfg.lr[0]}")
    return cfg.lr[0]


@dataclass
class WarmupRsqrtConfig(FairseqDataclass):
    warmup_updates: int = field(default=4000, metadata={
        "help": "T: update t runs at lr*t/T for t <= T, then lr*sqrt(T/t); 1 = no warm-up"})
    lr: List[float] = II("optimization.lr")


@register_lr_scheduler("warmup_rsqrt", dataclass=WarmupRsqrtConfig)
class WarmupRsqrtSchedule(FairseqLRScheduler):
    def __init__(self, cfg: WarmupRsqrtConfig, optimizer):
        super().__init__(cfg, optimizer)
        self.lr_max = _single_lr(cfg, "warmup_rsqrt")
        if cfg.warmup_updates < 1:
            raise ValueError(f"warmup_rsqrt: --warmup-updates must be >= 1 (1 = no warm-up), got {cfg.warmup_updates}")
        self.optimizer.set_lr(self.lr_of(1))

    def lr_of(self, t):
        """The lr of the t-th update (t >= 1)."""
        T = self.cfg.warmup_updates
        return self.lr_max * t / T if t <= T else self.lr_max * math.sqrt(T / t)

    def step_update(self, num_updates):
        self.optimizer.set_lr(self.lr_of(num_updates + 1))
        return self.optimizer.get_lr()


@dataclass
class EpochRsqrtConfig(FairseqDataclass):
    lr_decay_epoch: int = field(default=6, metadata={
        "help": "E: constant lr before epoch E; from its first update t_E, lr*factor*sqrt(t_E/t)"})
    lr_decay_factor: float = field(default=1.0, metadata={"help": "factor applied at epoch E"})
    lr: List[float] = II("optimization.lr")


@register_lr_scheduler("epoch_rsqrt", dataclass=EpochRsqrtConfig)
class EpochRsqrtSchedule(FairseqLRScheduler):
    def __init__(self, cfg: EpochRsqrtConfig, optimizer):
        super().__init__(cfg, optimizer)
        self.lr_max = _single_lr(cfg, "epoch_rsqrt")
        if cfg.lr_decay_epoch < 1:
            raise ValueError(f"epoch_rsqrt: --lr-decay-epoch must be >= 1, got {cfg.lr_decay_epoch}")
        if cfg.lr_decay_factor <= 0:
            raise ValueError(f"epoch_rsqrt: --lr-decay-factor must be > 0, got {cfg.lr_decay_factor}")
        self.decay_start = None  # t_E, once epoch E has begun; kept in checkpoints (state_dict)
        self.num_updates = 0
        self.optimizer.set_lr(self.lr_of(1))

    def lr_of(self, t):
        """The lr of the t-th update (t >= 1)."""
        if self.decay_start is None or t < self.decay_start:
            return self.lr_max
        return self.lr_max * self.cfg.lr_decay_factor * math.sqrt(self.decay_start / t)

    def step_begin_epoch(self, epoch):
        if epoch >= self.cfg.lr_decay_epoch and self.decay_start is None:
            if epoch > self.cfg.lr_decay_epoch:
                # Only a checkpoint from before this scheduler kept t_E could get here.
                logger.warning(f"epoch_rsqrt: epoch {epoch} begins with no record of where epoch "
                               f"{self.cfg.lr_decay_epoch} began; decaying from update {self.num_updates + 1}")
            self.decay_start = self.num_updates + 1
        self.optimizer.set_lr(self.lr_of(self.num_updates + 1))
        return self.optimizer.get_lr()

    def step_update(self, num_updates):
        self.num_updates = num_updates
        self.optimizer.set_lr(self.lr_of(num_updates + 1))
        return self.optimizer.get_lr()

    def state_dict(self):
        return {"best": self.best, "decay_start": self.decay_start}

    def load_state_dict(self, state_dict):
        self.best = state_dict["best"]
        self.decay_start = state_dict.get("decay_start")
