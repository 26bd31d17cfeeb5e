"""Writing an analysis's results: figure and JSON atomically, progress on stderr.

Atomic writes matter here because the report page and later analyses pick up whatever
``*.png`` / ``*.json`` files exist: a killed run must not leave a truncated one behind.
"""
import json
import math
import sys

from pn_common.atomic import atomic_output, write_text_atomic


def _finite(value):
    # JSON has no NaN/inf; null says "not measured" without breaking strict parsers.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def write_json(path, data):
    """Write ``data`` as indented JSON (NaN/inf become null) to ``path`` atomically."""
    write_text_atomic(path, json.dumps(_finite(data), indent=1) + "\n")


def save_figure(fig, path, dpi=110):
    """Save a matplotlib ``Figure`` as PNG to ``path`` atomically."""
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)


def progress(analysis, message):
    """One progress line on stderr, e.g. ``[grad-norms] transformer_preln seed 2/3 ...``."""
    print(f"[{analysis}] {message}", file=sys.stderr, flush=True)
