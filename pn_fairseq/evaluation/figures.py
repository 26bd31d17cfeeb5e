"""Conventions every figure of the project follows: one colour per row, BLEU axes from 0.

Figures used to colour their lines by position (``C0``, ``C1``, ... in the order the runs came),
so the same row changed colour between two figures of one report page. Every plotting function
now asks :func:`row_color` with the run's label, and the label is mapped to a row name first
(:func:`row_of`): ``preln``, ``multi30k/preln/seed2``, ``PN=ckpt.pt``'s ``PN`` and the
architecture ``transformer_preln_iwslt_de_en`` are all ``preln``'s blue.

A label that names no known row gets a colour from :data:`FALLBACK` picked by a hash of the
label (MD5, not Python's ``hash``, which changes between processes), so it too keeps its colour
from one figure and one process to the next.
"""
import hashlib
import re

# Distinct hues for the rows a figure usually compares (PowerNorm's Table 1 rows first, then the
# ablations and the norms beyond the two papers).
ROW_COLORS = {
    "preln": "#1f77b4",            # blue
    "postln": "#ff7f0e",           # orange
    "bn": "#2ca02c",               # green
    "pnv": "#9467bd",              # purple
    "pn": "#d62728",               # red
    "pn-paper": "#8c564b",         # brown
    "pn-nogroup": "#e377c2",       # pink
    "pn-paper-group": "#bcbd22",   # olive
    "rms": "#17becf",              # cyan
    "scale": "#7f7f7f",            # grey
    "dyt": "#393b79",              # indigo
    "deepnorm": "#637939",         # moss
}
# The Pre-LN paper's learning-rate / warm-up / optimizer variants: shades of their base row's hue
# (post-LN oranges and browns, pre-LN blues), so a figure of variants still reads as post vs pre.
# The fixed-lr row is drawn beside the lr 1e-3 browns (docs/figures/preln-multi30k-fixed): near-black
# brown, at least 27 CIE76 units from every other colour here.
ROW_COLORS.update({
    "postln-warmup4k": "#a63603", "postln-warmup500": "#fd8d3c", "postln-nowarmup": "#fdae6b",
    "postln-lr1e-3-warmup4k": "#8c6d31", "postln-lr1e-3-warmup500": "#bd9e39", "postln-lr1e-3-nowarmup": "#e7ba52",
    "postln-sgd-lr5e-3-warmup4k": "#7f2704", "postln-sgd-lr5e-3-nowarmup": "#d94801",
    "postln-sgd-lr1e-3-warmup4k": "#b15928", "postln-sgd-lr1e-3-nowarmup": "#e6ab02",
    "postln-fixed1e-4": "#3f2a14", "postln-radam": "#cc4c02", "postln-lr7e-4-warmup4k": "#fec44f",
    "postln-lr1.5e-3-warmup4k": "#ec7014",
    "preln-nowarmup": "#6baed6", "preln-warmup4k": "#08519c", "preln-radam": "#08306b",
    "preln-lr7e-4-nowarmup": "#9ecae1", "preln-lr1.5e-3-nowarmup": "#4292c6",
})
# The BERT rows (configs/bert-multi30k): post-LN oranges, the pre-norm BN / PN-V / PN darker shades of
# bn's, pnv's and pn's hues (preln-nowarmup is above).
ROW_COLORS.update({
    "postln-warmup": "#e6550d", "postln-lr3e-4": "#7f3b08",
    "preln-bn": "#006d2c", "preln-pnv": "#54278f", "preln-pn": "#a50f15",
})
# For labels that name no row: none of these is in ROW_COLORS.
FALLBACK = ("#31a354", "#756bb1", "#7b4173", "#a55194", "#ce6dbd", "#636363", "#74c476", "#9e9ac8",
            "#843c39", "#ad494a", "#5254a3", "#b5cf6b")

_SEPARATORS = re.compile(r"[\\/=:,;\s]+")


def _row_of_component(part):
    if part in ROW_COLORS:
        return part
    # Architecture names: transformer_{row}{size}, e.g. transformer_pn_iwslt_de_en.
    if part.startswith("transformer_"):
        rest = part[len("transformer_"):]
        matches = [row for row in ROW_COLORS if rest == row or rest.startswith(row + "_")]
        if matches:
            return max(matches, key=len)
    return None


def row_of(label):
    """The row a label names, or None: the last path or ``NAME=PATH`` component (case ignored)
    that is a row or a ``transformer_{row}...`` architecture; ``pn/seed2`` -> ``pn``."""
    for part in reversed([p for p in _SEPARATORS.split(str(label).lower()) if p]):
        row = _row_of_component(part)
        if row is not None:
            return row
    return None


def row_color(*labels):
    """The colour (``#rrggbb``) of the first label that names a row; without one, a colour
    picked from :data:`FALLBACK` by an MD5 of the first label (the same in every process)."""
    if not labels:
        raise ValueError("row_color needs at least one label")
    for label in labels:
        row = row_of(label)
        if row is not None:
            return ROW_COLORS[row]
    digest = hashlib.md5(str(labels[0]).encode("utf-8")).digest()
    return FALLBACK[int.from_bytes(digest[:4], "big") % len(FALLBACK)]


def shade(color, k, n):
    """Member ``k`` of ``n`` shades of ``color``, from darker (k = 0) to lighter (k = n - 1),
    the middle one the colour itself: keeps a row's hue when a figure splits it (e.g. by layer)."""
    if n <= 1:
        return color
    rgb = [int(color[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    t = k / (n - 1) * 2 - 1  # -1 darkest, +1 lightest
    mixed = [c * (1 + 0.45 * t) if t < 0 else c + (1 - c) * 0.55 * t for c in rgb]
    return "#" + "".join(f"{round(min(max(c, 0.0), 1.0) * 255):02x}" for c in mixed)


def markers(n):
    """``n`` distinct markers to tell runs of the same row (seeds) apart within one figure."""
    cycle = ("o", "s", "^", "D", "v", "P", "X", "*")
    return [cycle[i % len(cycle)] for i in range(n)]


def styles(labels, keys=None):
    """``{label: {"color", "marker"}}`` for the lines of one figure: the colour of the label's row
    (``keys[label]``: a name or a list of names tried before the label, e.g. a run's row from its
    results.json), and a marker that tells apart labels sharing a colour (seeds of one row); None
    where the colour is unique."""
    keys = keys or {}

    def candidates(label):
        key = keys.get(label, [])
        return [key] if isinstance(key, str) else list(key)

    colors = {label: row_color(*candidates(label), label) for label in labels}
    out, seen = {}, {}
    for label in labels:
        same = [other for other in labels if colors[other] == colors[label]]
        k = seen[colors[label]] = seen.get(colors[label], -1) + 1
        out[label] = {"color": colors[label], "marker": markers(len(same))[k] if len(same) > 1 else None}
    return out


def bleu_axis(ax, axis="y"):
    """Start a BLEU axis at 0 (BLEU is never negative; an axis cut above 0 inflates small gaps)."""
    low, high = ax.get_ylim() if axis == "y" else ax.get_xlim()
    # matplotlib's margin was 5% of the data's own range; keep the largest value off the frame.
    high = high * 1.06 if high > 0 else 1.0
    (ax.set_ylim if axis == "y" else ax.set_xlim)(0, high)
