"""One registry that builds a norm by name (cf. timm's ``create_norm_layer``)."""
import inspect
from typing import Callable, Dict

import torch.nn as nn

_NORMS: Dict[str, Callable[..., nn.Module]] = {}


def register_norm(name: str):
    """Class decorator: make ``build_norm(name, ...)`` construct this class."""

    def wrap(cls):
        if name in _NORMS:
            raise ValueError(f"norm {name!r} is already registered ({_NORMS[name].__name__})")
        _NORMS[name] = cls
        return cls

    return wrap


def norm_choices():
    return tuple(_NORMS)


def build_norm(name: str, embed_dim: int, **options) -> nn.Module:
    """Build the norm called ``name`` over ``embed_dim`` channels.

    The module's ``forward(x, pad_mask=None)`` takes ``x: T x B x C`` with
    ``pad_mask: B x T`` (True = padding), or ``x: N x C``; ``batch_first=True`` (every norm
    takes the option): ``x: B x T x C`` with the same ``B x T`` mask. Unknown names and options, and
    invalid option values, raise ValueError here, at build time.
    """
    if name not in _NORMS:
        raise ValueError(f"unknown norm {name!r}; valid choices: {', '.join(_NORMS)}")
    cls = _NORMS[name]
    if not isinstance(embed_dim, int) or embed_dim < 1:
        raise ValueError(f"embed_dim must be a positive integer; got {embed_dim!r}")
    params = inspect.signature(cls.__init__).parameters
    valid = [p for p in params if p not in ("self", "embed_dim")]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(f"norm {name!r} does not take option(s) {', '.join(unknown)}; valid options: {', '.join(valid)}")
    return cls(embed_dim, **options)


def norm_name_of(module: nn.Module):
    """The registry name of ``module``'s class, or None for a module that is no norm of ours."""
    for name, cls in _NORMS.items():
        if type(module) is cls:
            return name
    return None
