"""The plugin's optimizer and learning-rate schedulers, registered with fairseq on import.

- :mod:`.epoch_step`: constant, then x0.1 at chosen epochs (the Pre-LN paper's Pre-LN schedule);
- :mod:`.preln_schedules`: ``warmup_rsqrt`` (linear warm-up from update 1, then inverse square
  root) and ``epoch_rsqrt`` (an epoch-step decay, then inverse square root);
- :mod:`.radam`: ``--optimizer radam`` around ``torch.optim.RAdam``.

May import fairseq, torch and :mod:`pn_fairseq.hooks`; knows nothing of norms, models or tools.
"""
# fairseq before this package's modules: the plugin registers with fairseq the moment fairseq's
# import finishes (pn_fairseq/__init__.py), and that imports them, whole, before this goes on.
import fairseq  # noqa: F401,E402
from . import epoch_step  # noqa: F401  (registers the "epoch_step" LR scheduler)
from . import preln_schedules  # noqa: F401  (registers "warmup_rsqrt" and "epoch_rsqrt": Pre-LN paper)
from . import radam  # noqa: F401  (registers the "radam" optimizer)
