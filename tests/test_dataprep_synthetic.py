"""The seeded synthetic demo corpus: determinism, vocabulary, structure, and the pipeline."""
import collections
import filecmp

import pytest

from conftest_dataprep import describe, load_fairseq_split, prep_json, read, run_script
from pn_dataprep import synthetic


@pytest.fixture(scope="module")
def default_corpus():
    return synthetic.generate(seed=1)


def test_same_seed_gives_identical_files(tmp_path):
    sizes = {"train": 300, "valid": 20, "test": 20}
    synthetic.write_corpus(tmp_path / "a", seed=7, sizes=sizes)
    synthetic.write_corpus(tmp_path / "b", seed=7, sizes=sizes)
    synthetic.write_corpus(tmp_path / "c", seed=8, sizes=sizes)
    names = [f"{split}.{lang}" for split in sizes for lang in ("de", "en")]
    match, mismatch, errors = filecmp.cmpfiles(tmp_path / "a", tmp_path / "b", names, shallow=False)
    assert match == names and not mismatch and not errors
    assert (tmp_path / "a" / "train.de").read_bytes() != (tmp_path / "c" / "train.de").read_bytes()


def test_default_sizes_and_no_duplicates(default_corpus):
    assert {k: len(v) for k, v in default_corpus.items()} == synthetic.DEFAULT_SIZES == {
        "train": 20000, "valid": 500, "test": 500}
    sources = [src for pairs in default_corpus.values() for src, _ in pairs]
    assert len(set(sources)) == len(sources)  # no test sentence is also a training sentence


def test_vocabulary_size_in_stated_range(default_corpus):
    train = default_corpus["train"]
    src_types = len(synthetic.vocabulary(src for src, _ in train))
    tgt_types = len(synthetic.vocabulary(tgt for _, tgt in train))
    lo, hi = synthetic.VOCAB_RANGE["src"]
    assert lo <= src_types <= hi
    lo, hi = synthetic.VOCAB_RANGE["tgt"]
    assert lo <= tgt_types <= hi


def test_word_frequencies_are_skewed(default_corpus):
    counts = collections.Counter(w for src, _ in default_corpus["train"] for w in src.lower().split())
    ranked = [n for _, n in counts.most_common()]
    assert ranked[0] > 50 * ranked[len(ranked) // 2]  # Zipfian: a few frequent, many rare words


def test_reordering_and_agreement_markers(default_corpus):
    pairs = default_corpus["train"]
    for src, tgt in pairs[:2000]:
        s, t = src.lower().rstrip(".").replace(",", "").split(), tgt.lower().rstrip(".").split()
        assert ("nicht" in s) == ("not" in t)
        assert ("dass" in s) == ("that" in t)
        assert s.count("und") == t.count("and")
        if "hat" in s or "haben" in s:  # perfect: participle last in the source, after the auxiliary in English
            assert s[-1].startswith("ge") and ("has" in t or "have" in t)
        if "dass" in s:  # subordinate clause: verb-final in the source only
            assert s[-1].endswith(("t", "en"))
        assert src[0].isupper() and tgt[0].isupper() and src.endswith(".") and tgt.endswith(".")
    # Source determiners vary with gender, number and case; the target has one definite article.
    src_words = collections.Counter(w for src, _ in pairs for w in src.lower().split())
    assert all(src_words[w] > 100 for w in ("der", "die", "das", "den", "dem", "einen", "einem", "einer"))
    tgt_words = collections.Counter(w for _, tgt in pairs for w in tgt.lower().split())
    assert tgt_words["the"] > 10000 and tgt_words["an"] > 0 and tgt_words["does"] > 0 and tgt_words["do"] > 0


def test_pipeline_produces_loadable_binarized_data(tmp_path):
    dest = tmp_path / "data-bin" / "synthetic.de-en"
    proc = run_script("prepare-synthetic.sh", cwd=tmp_path, DEST=dest, WORK_DIR=tmp_path / "work",
                      SYNTH_TRAIN=1500, SYNTH_VALID=60, SYNTH_TEST=40, SYNTH_SEED=3, BPE_MERGES=400)
    assert proc.returncode == 0, describe(proc)
    info = prep_json(dest)
    assert info["counts"] == {"train": 1500, "valid": 60, "test": 40}
    assert info["params"]["seed"] == "3" and info["bpe"]["merges_requested"] == 400
    assert info["expected_sizes"] == {"train": "exactly 1,500", "valid": "exactly 60", "test": "exactly 40"}
    corpus = synthetic.generate(seed=3, sizes={"train": 1500, "valid": 60, "test": 40})
    assert read(dest / "text" / "test.raw.en") == [tgt for _, tgt in corpus["test"]]
    # Tokenized and lowercased like Multi30k: "Ich glaube, dass ..." -> "ich glaube , dass ..."
    tok = read(dest / "text" / "train.tok.de")
    assert all(line == line.lower() and line.endswith(" .") for line in tok)
    assert any(line.startswith(("ich glaube , dass", "er sagt , dass", "sie sagt , dass")) for line in tok)
    dataset, src_dict, tgt_dict = load_fairseq_split(dest, "train", "de", "en")
    assert len(dataset) == 1500
    assert tgt_dict.string(dataset[0]["target"]) == read(dest / "text" / "train.bpe.en")[0]
    assert len(load_fairseq_split(dest, "test", "de", "en")[0]) == 40
    assert not (tmp_path / "work").exists()


def test_bad_size_setting_is_reported(tmp_path):
    proc = run_script("prepare-synthetic.sh", cwd=tmp_path, DEST=tmp_path / "out", WORK_DIR=tmp_path / "w",
                      SYNTH_TRAIN="lots")
    assert proc.returncode != 0 and "SYNTH_TRAIN=lots" in proc.stderr
