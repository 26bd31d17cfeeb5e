"""Build-time option checks: a bad option must fail when the model is built, with a
message naming the option and what it accepts, not hours into training."""


def check_choice(name, value, choices):
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")


def check_unit_interval(name, value, closed_right=False):
    ok = 0.0 < value <= 1.0 if closed_right else 0.0 < value < 1.0
    if not ok:
        interval = "(0, 1]" if closed_right else "(0, 1)"
        raise ValueError(f"{name} must lie in {interval}; got {value!r}")


def check_eps(eps):
    if not eps > 0:
        raise ValueError(f"eps must be > 0; got {eps!r}")


def check_groups(embed_dim, groups):
    if not isinstance(groups, int) or groups < 1:
        raise ValueError(f"groups must be a positive integer; got {groups!r}")
    if embed_dim % groups:
        raise ValueError(
            f"embed_dim {embed_dim} is not divisible by groups={groups} (group scaling splits "
            f"the channels into equal groups; use a divisor of {embed_dim}, e.g. the number of attention heads)"
        )


def check_warmup(warmup_updates):
    if not isinstance(warmup_updates, int) or isinstance(warmup_updates, bool) or warmup_updates < 0:
        raise ValueError(f"warmup_updates must be an integer >= 0; got {warmup_updates!r}")
