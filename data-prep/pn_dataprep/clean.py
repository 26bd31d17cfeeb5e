"""clean-corpus-n.perl: drop sentence pairs by length and length ratio.

``clean-corpus-n.perl [-ratio R] corpus l1 l2 out min max``; the defaults (ratio 9, no
lowercasing, max word length 1000) are the perl script's. Like the perl script, the lines
written are whitespace-normalized and pipes are removed unless the first line contains one
("factored" corpora).
"""
import dataclasses
import re

from .moses import PERL_SPACE
from .textio import DataPrepError

_SPACES = re.compile(f"[{PERL_SPACE}]+")
_BLANK_FACTOR = re.compile(r"[ |]\|")


@dataclasses.dataclass
class CleanStats:
    read: int = 0
    written: int = 0


def _normalize(line, factored):
    if not factored:
        line = line.replace("|", "")
    line = _SPACES.sub(" ", line)
    if line.startswith(" "):
        line = line[1:]
    if line.endswith(" "):
        line = line[:-1]
    return line


def clean_pairs(pairs, min_len=1, max_len=80, ratio=9.0, max_word_length=1000, names=("l1", "l2"),
                stats=None):
    """Yield the kept (l1, l2) pairs of an iterable of (l1 line, l2 line), counting into ``stats``.

    Raises DataPrepError where the perl script dies (a blank factor in a factored corpus).
    """
    long_word = re.compile(rf"[^{PERL_SPACE}|]{{{max_word_length + 1}}}")
    factored = None
    stats = stats if stats is not None else CleanStats()
    for f, e in pairs:
        stats.read += 1
        if factored is None:
            factored = "|" in e or "|" in f
        e, f = _normalize(e, factored), _normalize(f, factored)
        if not f or not e:
            continue
        # perl: split(/ /, $line) on a single-space-normalized line.
        ec, fc = e.count(" ") + 1, f.count(" ") + 1
        if ec > max_len or fc > max_len or ec < min_len or fc < min_len:
            continue
        if ec / fc > ratio or fc / ec > ratio:
            continue
        if long_word.search(e) or long_word.search(f):
            continue
        if _BLANK_FACTOR.search(f):
            raise DataPrepError(f"there is a blank factor in {names[0]} on line {stats.read}: {f}")
        if _BLANK_FACTOR.search(e):
            raise DataPrepError(f"there is a blank factor in {names[1]} on line {stats.read}: {e}")
        stats.written += 1
        yield f, e


def zip_strict(a, b, name_a, name_b):
    """Pairs of lines; the perl script's "is too short!/too long!" errors, naming the files."""
    sentinel = object()
    it_a, it_b = iter(a), iter(b)
    n = 0
    while True:
        x, y = next(it_a, sentinel), next(it_b, sentinel)
        if x is sentinel and y is sentinel:
            return
        if x is sentinel or y is sentinel:
            short, other = (name_a, name_b) if x is sentinel else (name_b, name_a)
            raise DataPrepError(f"{short} has fewer lines ({n}) than {other}: the two sides of a "
                                "parallel corpus must have one line per sentence pair")
        n += 1
        yield x, y
