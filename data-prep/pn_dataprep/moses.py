"""The Moses perl preprocessing scripts, one line at a time, on top of sacremoses.

Mirrors (mosesdecoder master, which the fairseq recipes ``git clone``):

- ``normalize-punctuation.perl LANG``  -> ``MosesPunctNormalizer(LANG, perl_parity=True)``
- ``remove-non-printing-char.perl``    -> :func:`remove_non_printing`
- ``tokenizer.perl [-a] -l LANG``      -> :class:`PerlMosesTokenizer` (escaping on, as perl's
  default)
- ``lowercase.perl``                   -> :func:`lowercase`
"""
import re

import regex
from sacremoses import MosesPunctNormalizer, MosesTokenizer

# perl's \s on character strings (what the :utf8 scripts see). Python's \s also matches
# \x1c-\x1f, which perl does not treat as whitespace.
PERL_SPACE = "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
_BLANK_LINE = re.compile(f"[{PERL_SPACE}]*")
_FINAL_DOT_WORD = re.compile(r"(\S+)\.")
_OTHER_CHAR = regex.compile(r"\p{C}")


class PerlMosesTokenizer(MosesTokenizer):
    """sacremoses' MosesTokenizer plus tokenizer.perl's final-dot rule.

    Since mosesdecoder PR #204 (2018) tokenizer.perl splits the period off the last word of
    a line unconditionally ("So am I." -> "So am I ."; "... says vs." -> "... says vs ."),
    before looking at non-breaking prefixes. sacremoses keeps the old behaviour on purpose
    (sacremoses issues #21, #97), which would leave "U.S." or "Nr." glued to a sentence-final
    period in our data but not in the fairseq recipes'.
    """

    def handles_nonbreaking_prefixes(self, text):
        text = super().handles_nonbreaking_prefixes(text)
        head, space, last = text.rpartition(" ")
        match = _FINAL_DOT_WORD.fullmatch(last)
        if match:
            return f"{head}{space}{match.group(1)} ."
        return text


def remove_non_printing(line):
    # remove-non-printing-char.perl replaces every \p{C} (control, format, unassigned, private
    # use) with a space; sacremoses' remove_control_chars deletes them, gluing words together.
    return _OTHER_CHAR.sub(" ", line)


def lowercase(line):
    # lowercase.perl is perl's lc(), which has no final-sigma rule; Python's lower() turns a
    # word-final capital sigma into "ς".
    return line.replace("\u03a3", "\u03c3").lower()


class Preprocessor:
    """One line in, one line out: the perl pipeline ``normalize | remove-non-printing | tokenize | lowercase``.

    Each stage is optional, in that fixed order (the order of fairseq's WMT recipe; IWSLT
    lowercases after cleaning, which only drops lines, so lowercasing in the same pass or a
    later one gives the same text).
    """

    def __init__(self, lang, *, normalize_punct=False, remove_non_printing=False, tokenize=True,
                 aggressive=False, lowercase=False):
        self.normalizer = MosesPunctNormalizer(lang, perl_parity=True) if normalize_punct else None
        self.remove_non_printing = remove_non_printing
        self.tokenizer = PerlMosesTokenizer(lang) if tokenize else None
        self.aggressive = aggressive
        self.lowercase = lowercase

    def __call__(self, line):
        if self.normalizer is not None:
            line = self.normalizer.normalize(line)
        if self.remove_non_printing:
            line = remove_non_printing(line)
        if self.tokenizer is not None and not _BLANK_LINE.fullmatch(line):
            # tokenizer.perl prints blank lines unchanged instead of tokenizing them.
            line = self.tokenizer.tokenize(line, aggressive_dash_splits=self.aggressive,
                                           return_str=True, escape=True)
        if self.lowercase:
            line = lowercase(line)
        return line
