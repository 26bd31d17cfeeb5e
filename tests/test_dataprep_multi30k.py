"""Multi30k end to end from the real raw files (RAW_DIR=../shared/data/multi30k)."""
import gzip
import shutil

import pytest

from conftest_dataprep import MULTI30K_RAW as RAW
from conftest_dataprep import MULTI30K_RAW_FILES as RAW_FILES
from conftest_dataprep import describe, load_fairseq_split, prep_json, read, run_script

pytestmark = pytest.mark.skipif(not all((RAW / f).exists() for f in RAW_FILES),
                                reason=f"Multi30k raw files not found in {RAW}")


@pytest.fixture(scope="module")
def prepared(multi30k_prepared):
    """conftest.py's session build, shared with tests/test_preln_rows.py's epoch size:
    (data-bin directory, work dir, the building run)."""
    return multi30k_prepared


def test_split_sizes_are_exact(prepared):
    dest, _, _ = prepared
    info = prep_json(dest)
    assert info["counts"] == {"train": 29000, "valid": 1014, "test": 1000}
    assert info["expected_sizes"]["train"] == "exactly 29,000"
    for split, n in info["counts"].items():
        for lang in ("de", "en"):
            assert len(read(dest / "text" / f"{split}.tok.{lang}")) == n
            assert len(read(dest / "text" / f"{split}.bpe.{lang}")) == n


def test_prep_json_records_bpe_and_tools(prepared):
    dest, _, _ = prepared
    info = prep_json(dest)
    assert info["bpe"]["merges_requested"] == 10000
    assert info["bpe"]["merges_learned"] == 10000
    assert {"python", "sacremoses", "subword-nmt", "torch"} <= set(info["tools"])
    assert "fairseq-fixed" in info["tools"] or "fairseq" in info["tools"]
    sums = dict(line.split()[::-1] for line in (RAW / "SHA256SUMS").read_text().splitlines())
    assert info["raw_files"] == {name: sums[name] for name in RAW_FILES}


def test_known_tokenized_lines(prepared):
    dest, _, _ = prepared
    text = dest / "text"
    assert read(text / "train.tok.de")[0] == "zwei junge weiße männer sind im freien in der nähe vieler büsche ."
    assert read(text / "train.tok.en")[0] == "two young , white males are outside near many bushes ."
    test_en = read(text / "test.tok.en")
    assert test_en[29] == "one man holds another man &apos;s head down and prepares to punch him in the face ."
    assert test_en[225] == "a woman on a boat named &quot; el corazon &quot; drops black weights into the water ."
    # No aggressive hyphen splitting outside WMT.
    assert read(text / "valid.tok.de")[7] == ("ein kleiner junge mit einem giants-trikot schwingt einen "
                                                "baseballschläger in richtung eines ankommenden balls .")
    # The raw file already holds "&amp;"; tokenizer.perl escapes its "&" again and splits "amp ;".
    assert read(text / "train.tok.en")[560] == "eight gentlemen are working with stone &amp; amp ; tile ."


def test_bpe_text_undoes_to_tokenized_text(prepared):
    dest, _, _ = prepared
    for split in ("valid", "test"):
        for lang in ("de", "en"):
            bpe = read(dest / "text" / f"{split}.bpe.{lang}")
            tok = read(dest / "text" / f"{split}.tok.{lang}")
            assert [line.replace("@@ ", "") for line in bpe] == tok
    assert read(dest / "text" / "code")[0].startswith("#version")


def test_raw_test_references_are_the_original_text(prepared):
    dest, _, _ = prepared
    for lang in ("de", "en"):
        with gzip.open(RAW / f"test_2016_flickr.{lang}.gz", "rt", encoding="utf-8") as f:
            assert read(dest / "text" / f"test.raw.{lang}") == f.read().split("\n")[:-1]


def test_joined_dictionary(prepared):
    dest, _, _ = prepared
    de, en = (dest / "dict.de.txt").read_bytes(), (dest / "dict.en.txt").read_bytes()
    assert de == en
    entries = de.decode("utf-8").splitlines()
    assert 8000 < len(entries) < 12000
    assert prep_json(dest)["dictionary"] == {"joined": True, "types": len(entries)}
    words = {line.split()[0] for line in entries}
    assert {"ein", "a", ".", "&apos;s"} <= words  # both languages in one vocabulary


def test_binarized_files_load_in_fairseq(prepared):
    dest, _, _ = prepared
    for split, n in (("train", 29000), ("valid", 1014), ("test", 1000)):
        dataset, src_dict, tgt_dict = load_fairseq_split(dest, split, "de", "en")
        assert len(dataset) == n
    sample = dataset[0]
    assert src_dict.string(sample["source"]) == read(dest / "text" / "test.bpe.de")[0]
    assert tgt_dict.string(sample["target"]) == read(dest / "text" / "test.bpe.en")[0]
    assert src_dict.unk() not in sample["source"].tolist()


def test_work_directory_cleaned_and_no_partial_left(prepared):
    dest, work, _ = prepared
    assert not work.exists()  # RAW_DIR run: nothing downloaded, intermediates removed
    assert not dest.with_name(dest.name + ".partial").exists()


def test_progress_messages_on_stderr(prepared):
    _, _, proc = prepared
    ours = [line for line in proc.stderr.splitlines() if line.startswith("[prepare-multi30k]")]
    assert any("step tokenize done" in line for line in ours)
    assert any("train.tok.de: 29,000 lines" in line for line in ours)
    assert proc.stdout.strip() == "" or "[prepare-multi30k]" not in proc.stdout


def test_rerun_does_nothing_when_finished(prepared, tmp_path):
    # Its one line says so, no step ran (no step's progress line, no work dir), prep.json as it was.
    dest, work, _ = prepared
    before = (dest / "prep.json").read_bytes()
    proc = run_script("prepare-multi30k.sh", cwd=tmp_path, RAW_DIR=RAW, DEST=dest, WORK_DIR=work)
    assert proc.returncode == 0, describe(proc)
    ours = [line for line in proc.stderr.splitlines() if line.startswith("[prepare-multi30k]")]
    assert ours == [f"[prepare-multi30k] already prepared: {dest}/prep.json exists (delete {dest} to prepare it again)"]
    assert not work.exists()
    assert (dest / "prep.json").read_bytes() == before


def _raw_copy(tmp_path, skip=()):
    raw = tmp_path / "raw"
    raw.mkdir()
    for name in RAW_FILES:
        if name not in skip:
            shutil.copy(RAW / name, raw / name)
    return raw


def test_corrupted_raw_file_is_rejected(tmp_path):
    raw = _raw_copy(tmp_path)
    data = bytearray((raw / "val.de.gz").read_bytes())
    data[-20] ^= 0xFF
    (raw / "val.de.gz").write_bytes(bytes(data))
    dest = tmp_path / "out"
    proc = run_script("prepare-multi30k.sh", cwd=tmp_path, RAW_DIR=raw, DEST=dest, WORK_DIR=tmp_path / "work")
    assert proc.returncode != 0
    assert "checksum mismatch" in proc.stderr and "val.de.gz" in proc.stderr
    assert not dest.exists() and not (tmp_path / "out.partial").exists()


def test_missing_raw_file_is_named(tmp_path):
    raw = _raw_copy(tmp_path, skip={"test_2016_flickr.en.gz"})
    dest = tmp_path / "out"
    proc = run_script("prepare-multi30k.sh", cwd=tmp_path, RAW_DIR=raw, DEST=dest, WORK_DIR=tmp_path / "work")
    assert proc.returncode != 0
    assert f"RAW_DIR={raw} has no test_2016_flickr.en.gz" in proc.stderr
    assert "multi30k/dataset/raw/master/data/task1/raw/test_2016_flickr.en.gz" in proc.stderr
    assert not dest.exists()


def test_foreign_destination_is_not_overwritten(tmp_path):
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "something.txt").write_text("user data")
    proc = run_script("prepare-multi30k.sh", cwd=tmp_path, RAW_DIR=RAW, DEST=dest, WORK_DIR=tmp_path / "work")
    assert proc.returncode != 0
    assert "has no prep.json" in proc.stderr
    assert (dest / "something.txt").read_text() == "user data"
