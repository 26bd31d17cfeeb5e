"""prepare-wmt14en2de.sh on five small archives with the real ones' layout (RAW_DIR mode)."""
import pytest

from conftest_dataprep import describe, load_fairseq_split, make_tgz, prep_json, read, run_script

EUROPARL = [
    # (en, de, en tokenized, de tokenized): normalize-punctuation, remove-non-printing-char,
    # tokenizer -a, cased.
    ("The well-known e-mail system works.", "„Das bekannte E-Mail-System funktioniert.“",
     "The well @-@ known e @-@ mail system works .",
     "&quot; Das bekannte E @-@ Mail @-@ System funktioniert . &quot;"),
    ("Zero\u200bwidth space and a\ttab in Berlin.", "Null\u200bbreite Leerzeichen in Berlin.",
     "Zero width space and a tab in Berlin .", "Null breite Leerzeichen in Berlin ."),
    ("He said \"hi\" & left – quickly…", "Er sagte „hallo“ & ging – schnell…",
     "He said &quot; hi &quot; &amp; left - quickly ...", "Er sagte &quot; hallo &quot; &amp; ging - schnell ..."),
    ("Hi.", "Hallo, wie geht es dir heute?",  # ratio 3.5: kept with clean-corpus-n's default ratio 9
     "Hi .", "Hallo , wie geht es dir heute ?"),
]
DROPPED = [  # clean-corpus-n 1 80 (ratio 9)
    ("Yes.", " ".join(["sehr"] * 20) + "."),  # 2 vs 21 tokens: ratio 10.5
    (" ".join(["word"] * 85), " ".join(["Wort"] * 85)),  # 85 tokens
    ("", "Leer."),  # empty side
]


def numbered(corpus, n):
    return [(f"{corpus} sentence {i}.", f"{corpus} Satz {i}.", f"{corpus} sentence {i} .", f"{corpus} Satz {i} .")
            for i in range(1, n + 1)]


COMMONCRAWL = numbered("Crawl", 6)
NEWS = numbered("News", 5)
NEWSTEST2013 = [("Newstest line 1: “quoted” text.", "Zeile 1: „zitiert“ hier.",
                 "Newstest line 1 : &quot; quoted &quot; text .", "Zeile 1 : &quot; zitiert &quot; hier ."),
                ("A state-of-the-art test.", "Ein hochmoderner Test.",
                 "A state @-@ of @-@ the @-@ art test .", "Ein hochmoderner Test .")]
NEWSTEST2014 = [("Gutach: Increased safety for pedestrians", "Gutach: Noch mehr Sicherheit für Fußgänger",
                 "Gutach : Increased safety for pedestrians", "Gutach : Noch mehr Sicherheit für Fußgänger"),
                # The recipe's test processing: ’ -> ', tokenizer -a, but no punctuation normalization.
                ("They’re well-known “e-mail” senders.", "Sie sind „E-Mail“-Versender.",
                 "They &apos;re well @-@ known “ e @-@ mail ” senders .",
                 "Sie sind „ E @-@ Mail “ -Versender ."),
                ("Ends with a prefix Mr.", "Endet mit Nr.", "Ends with a prefix Mr .", "Endet mit Nr .")]


def text(lines):
    return "".join(line + "\n" for line in lines)


def sgm(pairs, side, lang):
    kind = "srcset" if side == "src" else "refset"
    lines = [f'<{kind} setid="newstest2014" srclang="any">',
             '<doc sysid="ref" docid="1012-bbc" genre="news" origlang="en">', "<hl>"]
    for k, pair in enumerate(pairs, 1):
        lines.append(f'<seg id="{k}">{pair[0] if lang == "en" else pair[1]}</seg>')
        if k == 1:
            lines += ["</hl>", "<p>"]
    lines += ["</p>", "</doc>", f"</{kind}>"]
    return text(lines)


def build_archives(raw):
    train = EUROPARL[:2] + DROPPED + EUROPARL[2:]
    make_tgz(raw / "training-parallel-europarl-v7.tgz", {
        "training/europarl-v7.de-en.en": text(p[0] for p in train),
        "training/europarl-v7.de-en.de": text(p[1] for p in train),
        "training/europarl-v7.fr-en.fr": "Pas utilisé.\n",
        "training/europarl-v7.fr-en.en": "Not used.\n"})
    make_tgz(raw / "training-parallel-commoncrawl.tgz", {
        "commoncrawl.de-en.en": text(p[0] for p in COMMONCRAWL),
        "commoncrawl.de-en.de": text(p[1] for p in COMMONCRAWL),
        "commoncrawl.fr-en.fr": "Pas utilisé.\n"})
    make_tgz(raw / "training-parallel-nc-v12.tgz", {
        "training/news-commentary-v12.de-en.en": text(p[0] for p in NEWS),
        "training/news-commentary-v12.de-en.de": text(p[1] for p in NEWS)})
    make_tgz(raw / "dev.tgz", {
        "dev/newstest2013.en": text(p[0] for p in NEWSTEST2013),
        "dev/newstest2013.de": text(p[1] for p in NEWSTEST2013),
        "dev/newstest2012.en": "Not used.\n"})
    make_tgz(raw / "test-full.tgz", {
        "test-full/newstest2014-deen-src.en.sgm": sgm(NEWSTEST2014, "src", "en"),
        "test-full/newstest2014-deen-ref.de.sgm": sgm(NEWSTEST2014, "ref", "de"),
        # The other direction's files exist in the real archive too; the recipe does not use them.
        "test-full/newstest2014-deen-src.de.sgm": sgm([("x", "nicht benutzt")], "src", "de"),
        "test-full/newstest2014-deen-ref.en.sgm": sgm([("not used", "x")], "ref", "en")})


TRAIN = EUROPARL + COMMONCRAWL + NEWS


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """First run: the size check (on by default) rejects the tiny corpus. Second: CHECK_SIZES=0."""
    root = tmp_path_factory.mktemp("wmt14")
    raw = root / "raw"
    build_archives(raw)
    dest, work = root / "data-bin" / "wmt14_en_de", root / "work"
    rejected = run_script("prepare-wmt14en2de.sh", cwd=root, RAW_DIR=raw, DEST=dest, WORK_DIR=work)
    state = {"dest": dest.exists(), "partial": dest.with_name(dest.name + ".partial").exists()}
    accepted = run_script("prepare-wmt14en2de.sh", cwd=root, RAW_DIR=raw, DEST=dest, WORK_DIR=work, CHECK_SIZES=0)
    return dest, raw, rejected, state, accepted


def test_default_size_check_rejects_wrong_sizes(runs):
    _, _, rejected, state, _ = runs
    assert rejected.returncode != 0
    assert "unexpected split sizes" in rejected.stderr
    assert "train: 15 pairs, expected 4,500,000 +/- 3%" in rejected.stderr
    assert "CHECK_SIZES=0" in rejected.stderr
    assert not state["dest"] and not state["partial"]


def test_second_run_only_redoes_the_final_check(runs):
    _, _, _, _, accepted = runs
    assert accepted.returncode == 0, describe(accepted)
    for name in ("unpack", "train", "valid", "test", "learn-bpe", "apply-bpe", "binarize"):
        assert f"skip {name}: already done" in accepted.stderr


def test_training_data_normalized_tokenized_cleaned_cased(runs):
    dest, _, _, _, _ = runs
    assert read(dest / "text" / "train.tok.en") == [p[2] for p in TRAIN]
    assert read(dest / "text" / "train.tok.de") == [p[3] for p in TRAIN]


def test_valid_is_newstest2013_and_test_is_newstest2014(runs):
    dest, _, _, _, _ = runs
    assert read(dest / "text" / "valid.tok.en") == [p[2] for p in NEWSTEST2013]
    assert read(dest / "text" / "valid.tok.de") == [p[3] for p in NEWSTEST2013]
    assert read(dest / "text" / "test.tok.en") == [p[2] for p in NEWSTEST2014]
    assert read(dest / "text" / "test.tok.de") == [p[3] for p in NEWSTEST2014]
    # Raw references for detokenized sacrebleu: the segments as they are in the sgm file.
    assert read(dest / "text" / "test.raw.de") == [p[1] for p in NEWSTEST2014]
    assert read(dest / "text" / "test.raw.en") == [p[0] for p in NEWSTEST2014]


def test_prep_json_and_binarized_files(runs):
    dest, raw, _, _, _ = runs
    info = prep_json(dest)
    assert info["counts"] == {"train": len(TRAIN), "valid": 2, "test": 3}
    assert info["source_lang"] == "en" and info["target_lang"] == "de"
    assert info["bpe"]["merges_requested"] == 32764
    assert set(info["raw_files"]) == {"training-parallel-europarl-v7.tgz", "training-parallel-commoncrawl.tgz",
                                      "training-parallel-nc-v12.tgz", "dev.tgz", "test-full.tgz"}
    for name in ("train.en-de.en.bin", "train.en-de.de.idx", "test.en-de.de.bin", "dict.en.txt", "dict.de.txt"):
        assert (dest / name).exists()
    dataset, src_dict, tgt_dict = load_fairseq_split(dest, "train", "en", "de")
    assert len(dataset) == len(TRAIN)
    assert src_dict.string(dataset[0]["source"]) == read(dest / "text" / "train.bpe.en")[0]
    for split in ("train", "valid", "test"):
        bpe = read(dest / "text" / f"{split}.bpe.de")
        assert [line.replace("@@ ", "") for line in bpe] == read(dest / "text" / f"{split}.tok.de")


def test_misaligned_corpus_is_an_error(tmp_path):
    raw = tmp_path / "raw"
    build_archives(raw)
    make_tgz(raw / "training-parallel-nc-v12.tgz", {
        "training/news-commentary-v12.de-en.en": text(p[0] for p in NEWS),
        "training/news-commentary-v12.de-en.de": text(p[1] for p in NEWS[:-1])})
    proc = run_script("prepare-wmt14en2de.sh", cwd=tmp_path, RAW_DIR=raw, DEST=tmp_path / "out",
                      WORK_DIR=tmp_path / "work")
    assert proc.returncode != 0
    assert "news-commentary-v12.de-en.en has 5 lines but" in proc.stderr
    assert not (tmp_path / "out").exists()
