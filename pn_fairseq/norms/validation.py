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


def check_bool(name, value):
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False; got {value!r}")


def check_eps(eps):
    if not eps > 0:
        raise ValueError(f"eps must be > 0; got {eps!r}")


def check_groups(embed_dim, groups, allow_zero=False):
    low = 0 if allow_zero else 1
    if not isinstance(groups, int) or isinstance(groups, bool) or groups < low:
        what = "an integer >= 0 (0 = no group scaling)" if allow_zero else "a positive integer"
        raise ValueError(f"groups must be {what}; got {groups!r}")
    if groups and embed_dim % groups:
        raise ValueError(
            f"embed_dim {embed_dim} is not divisible by groups={groups} (group scaling splits "
            f"the channels into equal groups; use a divisor of {embed_dim}, e.g. the number of attention heads)"
        )


def check_warmup(warmup_updates):
    if not isinstance(warmup_updates, int) or isinstance(warmup_updates, bool) or warmup_updates < 0:
        raise ValueError(f"warmup_updates must be an integer >= 0; got {warmup_updates!r}")


IMPLS = ("fused", "eager")


def check_impl(impl):
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {', '.join(map(repr, IMPLS))} ('eager' is the reference "
                         f"implementation the fused one is tested against); got {impl!r}")
