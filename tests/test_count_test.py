"""row_results count-test: the test split's sentence count read from the index header, equal to
fairseq's own loader for both binary formats, without importing fairseq; other layouts are
left to fairseq, and a missing split is one line."""
import subprocess
import sys

import pytest
import torch
from fairseq.data import data_utils, indexed_dataset

from conftest import REPO
from pn_fairseq.evaluation import scoring


def build(prefix, impl, lengths):
    builder = indexed_dataset.make_builder(str(prefix) + ".bin", impl=impl, vocab_size=1000)
    for n in lengths:
        builder.add_item(torch.arange(4, 4 + n, dtype=torch.int32))
    builder.finalize(str(prefix) + ".idx")


@pytest.mark.parametrize("impl", ["mmap", "lazy"])  # lazy writes the format 'cached' reads too
@pytest.mark.parametrize("lengths", [[3, 1, 7], [5] * 1000, []])
def test_header_count_equals_fairseqs_loader(tmp_path, impl, lengths):
    prefix = tmp_path / "test.de-en.de"
    build(prefix, impl, lengths)
    expected = len(lengths)
    if lengths or impl != "mmap":  # fairseq cannot mmap an empty .bin file; the header still says 0
        assert len(data_utils.load_indexed_dataset(str(prefix), None)) == expected
    assert scoring.indexed_dataset_length(str(prefix)) == expected
    assert scoring.count_split_sentences(str(tmp_path), "de", "en") == expected


def test_other_layouts_go_to_fairseq(tmp_path):
    prefix = tmp_path / "test.de-en.de"
    build(prefix, "mmap", [2, 2])
    (tmp_path / "test.de-en.de").write_text("a raw text file beside it\n")  # fairseq would read it as 'raw'
    assert scoring.indexed_dataset_length(str(prefix)) is None
    other = tmp_path / "other"
    other.mkdir()
    (other / "x.idx").write_bytes(b"HUFFIDX\x00\x00" + bytes(40))
    (other / "x.bin").write_bytes(b"")
    assert scoring.indexed_dataset_length(str(other / "x")) is None
    (other / "y.idx").write_bytes(b"MMIDIDX\x00\x00")  # truncated header
    (other / "y.bin").write_bytes(b"")
    assert scoring.indexed_dataset_length(str(other / "y")) is None


def test_count_test_command_on_real_binarized_data_without_fairseq(data_bin):
    code = ("import sys; from pn_fairseq.cli import row_results; row_results.main(['count-test', sys.argv[1], 'de', 'en']); "
            "print('fairseq' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code, str(data_bin)], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    count, imported = proc.stdout.split()
    assert int(count) == len(data_utils.load_indexed_dataset(str(data_bin / "test.de-en.de"), None))
    assert imported == "False"


def test_missing_split_is_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pn_fairseq.cli.row_results", "count-test", str(tmp_path), "de", "en"],
                          cwd=REPO, capture_output=True, text=True)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines()[-1].endswith(f"no binarized test split at {tmp_path}/test.de-en.de.{{bin,idx}}: "
                                                          "prepare the data first")
