"""A tiny masked-LM corpus for the RoBERTa tests: the first 2,000 English captions of Multi30k's
training file, lowercased, binarized by fairseq-preprocess --only-source (1,800 train, 200
valid lines)."""
import gzip

import pytest

from conftest import SHARED, run

RAW = SHARED / "data" / "multi30k" / "train.en.gz"

# 2 layers of d 32 over 32-token samples: a few updates take a fraction of a second.
TINY = ["--encoder-layers", "2", "--encoder-embed-dim", "32", "--encoder-ffn-embed-dim", "64",
        "--encoder-attention-heads", "2", "--tokens-per-sample", "32", "--sample-break-mode", "complete"]


def build_corpus(work):
    """The data-bin directory (``work``/bin)."""
    if not RAW.exists():
        pytest.skip(f"Multi30k raw file not found: {RAW}")
    with gzip.open(RAW, "rt", encoding="utf-8") as f:
        lines = [next(f).lower() for _ in range(2000)]
    (work / "train.txt").write_text("".join(lines[:1800]), encoding="utf-8")
    (work / "valid.txt").write_text("".join(lines[1800:]), encoding="utf-8")
    run("fairseq-preprocess", "--only-source", "--trainpref", work / "train.txt", "--validpref", work / "valid.txt",
        "--destdir", work / "bin", "--workers", "1")
    return work / "bin"
