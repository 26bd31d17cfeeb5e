"""Final checks of a prepared dataset and its ``prep.json``.

The expected sizes below are the table of ``data-prep/README.md`` (a test keeps the two in
sync). ``tolerance`` is relative: IWSLT14 and WMT14 training/valid sizes depend on the
tokenizer through the length filter, so sacremoses may keep a few pairs more or less than the
perl tokenizer did; test sets are never filtered and must match exactly.
"""
import dataclasses
import datetime
import importlib.metadata
import json
import os
import platform
import struct

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
