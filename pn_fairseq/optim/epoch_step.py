"""``--lr-scheduler epoch_step``: constant LR (optional linear warm-up), multiplied by
``--lr-decay-factor`` once at each epoch listed in ``--lr-decay-epochs``.

The Pre-LN paper trains Pre-LN (and Post-LN "without warm-up") at lr 5e-4 from the first
update and multiplies it by 0.1 at epoch 8. fairseq's ``fixed`` scheduler cannot express
that: after ``--force-anneal`` it shrinks again every epoch (0.1, 0.01, ...).
"""
from dataclasses import dataclass, field
from typing import List

from omegaconf import II

from fairseq.dataclass import FairseqDataclass
from fairseq.optim.lr_scheduler import FairseqLRScheduler, register_lr_scheduler


@dataclass
class EpochStepLRConfig(FairseqDataclass):
    warmup_updates: int = field(default=0, metadata={"help": "linear warm-up from --warmup-init-lr over N updates (0 = none)"})
    warmup_init_lr: float = field(default=0.0, metadata={"help": "initial LR of the warm-up"})
    lr_decay_epochs: str = field(default="8", metadata={"help": "comma-separated epochs at whose start the LR is multiplied"})
    lr_decay_factor: float = field(default=0.1, metadata={"help": "factor applied at each of --lr-decay-epochs"})
    lr: List[float] = II("optimization.lr")


def parse_epochs(text: str) -> List[int]:
    try:
        epochs = sorted(int(e) for e in str(text).split(",") if e.strip())
    except ValueError:
        raise ValueError(f"--lr-decay-epochs must be comma-separated integers, got {text!r}") from None
    if any(e < 1 for e in epochs):
        raise ValueError(f"--lr-decay-epochs must be >= 1, got {text!r}")
    return epochs


@register_lr_scheduler("epoch_step", dataclass=EpochStepLRConfig)
class EpochStepLR(FairseqLRScheduler):
    def __init__(self, cfg: EpochStepLRConfig, optimizer):
        super().__init__(cfg, optimizer)
        if len(cfg.lr) > 1:
            raise ValueError("epoch_step takes a single --lr value")
        if not 0 < cfg.lr_decay_factor:
            raise ValueError(f"--lr-decay-factor must be > 0, got {cfg.lr_decay_factor}")
        if cfg.warmup_updates < 0:
            raise ValueError(f"--warmup-updates must be >= 0, got {cfg.warmup_updates}")
        self.base_lr = cfg.lr[0]
        self.decay_epochs = parse_epochs(cfg.lr_decay_epochs)
        self.epoch = 1
        self.optimizer.set_lr(self.lr_at(0, 1))

    def lr_at(self, num_updates: int, epoch: int) -> float:
        lr = self.base_lr * self.cfg.lr_decay_factor ** sum(epoch >= e for e in self.decay_epochs)
        warmup = self.cfg.warmup_updates
        if warmup > 0 and num_updates < warmup:
            return self.cfg.warmup_init_lr + (lr - self.cfg.warmup_init_lr) * num_updates / warmup
        return lr

    def step_begin_epoch(self, epoch):
        self.epoch = epoch
        self.optimizer.set_lr(self.lr_at(self._num_updates, epoch))
        return self.optimizer.get_lr()

    _num_updates = 0

    def step_update(self, num_updates):
        self._num_updates = num_updates
        self.optimizer.set_lr(self.lr_at(num_updates, self.epoch))
        return self.optimizer.get_lr()
