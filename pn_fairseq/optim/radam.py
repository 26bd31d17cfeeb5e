"""``--optimizer radam``: torch's RAdam (Liu et al. 2019, "On the Variance of the Adaptive
Learning Rate and Beyond") as a fairseq optimizer; fairseq 0.12 has none.

The Pre-LN paper (Sec. 4.1) trains Post-LN and Pre-LN with RAdam, no warm-up and linear lr
decay. The flags are fairseq Adam's (``--adam-betas``, ``--adam-eps``, ``--weight-decay``);
weight decay is decoupled (``decoupled_weight_decay=True``), as fairseq's Adam applies it.
"""
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any, List

import torch
from omegaconf import II, OmegaConf

from fairseq.dataclass import FairseqDataclass
from fairseq.optim import FairseqOptimizer, register_optimizer


@dataclass
class FairseqRAdamConfig(FairseqDataclass):
    adam_betas: Any = field(default=(0.9, 0.999), metadata={"help": "betas for RAdam"})
    adam_eps: float = field(default=1e-8, metadata={"help": "epsilon for RAdam"})
    weight_decay: float = field(default=0.0, metadata={"help": "decoupled weight decay"})
    lr: List[float] = II("optimization.lr")


def _betas(value):
    if isinstance(value, str):
        try:
            betas = tuple(float(b) for b in value.strip("()[] ").split(","))
        except ValueError:
            betas = ()
    else:
        betas = tuple(OmegaConf.to_container(value) if OmegaConf.is_config(value) else value)
    if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
        raise ValueError(f"--adam-betas must be two numbers in [0, 1), e.g. '(0.9, 0.98)'; got {value!r}")
    return betas


@register_optimizer("radam", dataclass=FairseqRAdamConfig)
class FairseqRAdam(FairseqOptimizer):
    def __init__(self, cfg: FairseqRAdamConfig, params):
        super().__init__(cfg)
        self._optimizer = torch.optim.RAdam(params, decoupled_weight_decay=True, **self.optimizer_config)

    @property
    def optimizer_config(self):
        """The kwargs that override those stored in a checkpoint when training resumes."""
        lr = self.cfg.lr[0] if isinstance(self.cfg.lr, Collection) else self.cfg.lr
        return {"lr": lr, "betas": _betas(self.cfg.adam_betas), "eps": self.cfg.adam_eps,
                "weight_decay": self.cfg.weight_decay}

    @property
    def supports_flat_params(self):
        return True
