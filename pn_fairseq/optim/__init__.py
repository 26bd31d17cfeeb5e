from . import epoch_step  # noqa: F401  (registers the "epoch_step" LR scheduler)
from . import preln_schedules  # noqa: F401  (registers "warmup_rsqrt" and "epoch_rsqrt": Pre-LN paper)
from . import radam  # noqa: F401  (registers the "radam" optimizer)
