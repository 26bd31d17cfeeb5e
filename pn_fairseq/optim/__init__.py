from . import epoch_step  # noqa: F401  (registers the "epoch_step" LR scheduler)
