"""Expected sizes (and their README table), the final checks and prep.json."""
import argparse
import re
import struct

import pytest

from conftest_dataprep import DATA_PREP
from pn_dataprep import checks
from pn_dataprep.cli import _parse_expect
from pn_dataprep.textio import DataPrepError


def readme_table():
    text = (DATA_PREP / "README.md").read_text(encoding="utf-8")
    section = text.split("## Expected sizes", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| (\w+) \| (train|valid|test) \| ([\d,]+) \| (\d+)% \|$", section, flags=re.M)
    table = {}
    for dataset, split, count, tol in rows:
        table.setdefault(dataset, {})[split] = checks.Expected(int(count.replace(",", "")), int(tol) / 100)
    return table


def test_readme_table_matches_the_checked_sizes():
    assert readme_table() == checks.EXPECTED_SIZES


def test_issue_sizes():
    sizes = checks.EXPECTED_SIZES
    assert sizes["multi30k"] == {"train": checks.Expected(29000), "valid": checks.Expected(1014),
                                 "test": checks.Expected(1000)}
    assert sizes["iwslt14"]["test"].count == 6750 and sizes["iwslt14"]["train"].accepts(160_000)
    assert sizes["wmt14"]["valid"].count == 3000 and sizes["wmt14"]["test"].count == 3003
    assert sizes["wmt14"]["train"].accepts(4_500_966) and not sizes["wmt14"]["train"].accepts(4_000_000)


def test_size_mismatch_message_names_splits_and_the_override():
    with pytest.raises(DataPrepError) as err:
        checks.check_sizes({"train": 29000, "valid": 1000, "test": 999}, checks.EXPECTED_SIZES["multi30k"], "multi30k")
    message = str(err.value)
    assert "valid: 1,000 pairs, expected exactly 1,014" in message
    assert "test: 999 pairs, expected exactly 1,000" in message
    assert "train" not in message.split("(")[1].split(")")[0]
    assert "CHECK_SIZES=0" in message


def test_expect_argument():
    assert _parse_expect("iwslt14") is checks.EXPECTED_SIZES["iwslt14"]
    assert _parse_expect("train=5,valid=2,test=1") == {
        "train": checks.Expected(5), "valid": checks.Expected(2), "test": checks.Expected(1)}
    with pytest.raises(argparse.ArgumentTypeError, match=r"^bad --expect item 'dev=3': use a dataset name or "
                                                         r"train=N,valid=N,test=N$"):
        _parse_expect("dev=3")
    with pytest.raises(argparse.ArgumentTypeError, match=r"^bad --expect item 'train=five'"):
        _parse_expect("train=five")


def _stage(directory, counts, idx_counts=None):
    """A staged output directory: BPE text, fairseq .idx headers, dictionaries, codes."""
    (directory / "text").mkdir(parents=True)
    (directory / "text" / "code").write_text("#version: 0.2\na b\nab c\n")
    for lang in ("de", "en"):
        (directory / f"dict.{lang}.txt").write_text("a 3\nb 2\n")
        for split, n in counts.items():
            (directory / "text" / f"{split}.bpe.{lang}").write_text("a b\n" * n)
            n_idx = (idx_counts or counts)[split]
            header = b"MMIDIDX\x00\x00" + struct.pack("<Q", 1) + struct.pack("<B", 4) + struct.pack("<Q", n_idx)
            (directory / f"{split}.de-en.{lang}.idx").write_bytes(header)


def test_finalize_writes_prep_json(tmp_path):
    _stage(tmp_path, {"train": 5, "valid": 2, "test": 1})
    info = checks.finalize(tmp_path, "toy", "de", "en", expected=_parse_expect("train=5,valid=2,test=1"),
                           params={"bpe_merges": "3"})
    assert info["counts"] == {"train": 5, "valid": 2, "test": 1}
    assert info["bpe"] == {"merges_requested": 3, "merges_learned": 2, "codes": "text/code"}
    assert info["dictionary"] == {"joined": True, "types": 2}
    assert (tmp_path / "prep.json").exists()


@pytest.mark.parametrize("case", ["sizes", "idx", "dict"])
def test_failed_final_check_writes_no_prep_json(tmp_path, case):
    counts = {"train": 5, "valid": 2, "test": 1}
    _stage(tmp_path, counts, idx_counts=dict(counts, valid=3) if case == "idx" else None)
    if case == "dict":
        (tmp_path / "dict.en.txt").write_text("other 1\n")
    expected = _parse_expect("train=6,valid=2,test=1" if case == "sizes" else "train=5,valid=2,test=1")
    with pytest.raises(DataPrepError, match={"sizes": "unexpected split sizes", "idx": "valid: the outputs disagree",
                                            "dict": "joined dictionary"}[case]):
        checks.finalize(tmp_path, "toy", "de", "en", expected=expected)
    assert not (tmp_path / "prep.json").exists()


def test_size_check_can_be_skipped(tmp_path):
    _stage(tmp_path, {"train": 5, "valid": 2, "test": 1})
    info = checks.finalize(tmp_path, "toy", "de", "en", expected=checks.EXPECTED_SIZES["iwslt14"], check=False)
    assert info["expected_sizes"] == "skipped (CHECK_SIZES=0)"
