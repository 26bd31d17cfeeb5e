"""prepare-iwslt14.sh on a small de-en.tgz with the real archive's layout, served by a local mirror."""
import os
import pathlib
import socket

import pytest

from conftest_dataprep import (VENV_BIN, describe, failing_preprocess_dir, http_server, load_fairseq_split,
                               make_tgz, prep_json, read, run_script)

# (file stem, tag used in the fake sentences), in the order fairseq's recipe concatenates the test set.
DEVTEST = [("IWSLT14.TED.dev2010", "dev2010"), ("IWSLT14.TEDX.dev2012", "tedx2012"),
           ("IWSLT14.TED.tst2010", "tst2010"), ("IWSLT14.TED.tst2011", "tst2011"),
           ("IWSLT14.TED.tst2012", "tst2012")]


def sentence(i):
    return {"de": f"Satz {i}: Das Haus ist groß, und das ist's wert.",
            "en": f"Sentence {i}: The house is big, and it's worth it."}


def tokenized(i):
    # tokenizer.perl -l de splits every apostrophe; -l en keeps "'s" on the right word.
    return {"de": f"satz {i} : das haus ist groß , und das ist &apos; s wert .",
            "en": f"sentence {i} : the house is big , and it &apos;s worth it ."}


TITLES = [{"de": ("Anna Beispiel: Wie man testet", "TED Talk: Anna erklärt Tests."),
           "en": ("Anna Example: How to test", "TED Talk: Anna explains tests.")},
          {"de": ("Bert: Mehr", "Bert zeigt mehr."), "en": ("Bert: More", "Bert shows more.")}]
TITLES_TOK = [{"de": ["anna beispiel : wie man testet", "ted talk : anna erklärt tests ."],
               "en": ["anna example : how to test", "ted talk : anna explains tests ."]},
              {"de": ["bert : mehr", "bert zeigt mehr ."], "en": ["bert : more", "bert shows more ."]}]
# Pairs clean-corpus-n -ratio 1.5 1 175 must drop: ratio 5, 180 tokens, an empty side.
BAD_PAIRS = [{"de": "Ja.", "en": "Yes, I think that this is quite right."},
             {"de": " ".join(["Wort"] * 180), "en": " ".join(["word"] * 180)},
             {"de": "", "en": "Nothing."}]


def train_tags(lang):
    lines = []
    for doc, (first, last) in enumerate([(1, 30), (31, 55)]):
        title, description = TITLES[doc][lang]
        lines += [f"<url>http://www.ted.com/talks/talk{doc}.html</url>",
                  f"<keywords>talks, testing, doc{doc}</keywords>",
                  f"<talkid>{doc + 1}</talkid>",
                  f"<title>{title}</title>",
                  f"<description>{description}</description>"]
        for i in range(first, last + 1):
            lines.append(sentence(i)[lang])
            if i == 40:
                lines += [pair[lang] for pair in BAD_PAIRS]
    return "\n".join(lines) + "\n"


def seg_text(tag, k, lang):
    return f"Set {tag} line {k}, it’s here." if lang == "en" else f"Satz {tag} Zeile {k}, es geht’s gut."


def devtest_xml(stem, tag, lang):
    kind = 'srcset setid="{}" srclang="german"' if lang == "de" else 'refset setid="{}" trglang="english"'
    lines = ['<?xml version="1.0" encoding="UTF-8"?>', "<mteval>", f"<{kind.format(stem)}>",
             '<doc docid="1" genre="lectures">', "<url>http://www.ted.com/talks/x.html</url>",
             "<description>TED Talk Subtitles and Transcript: not a segment</description>",
             "<keywords>talks, x</keywords>", "<talkid>1</talkid>", "<title>Not a segment</title>"]
    lines += [f'<seg id="{k}"> {seg_text(tag, k, lang)} </seg>' for k in (1, 2, 3)]
    lines += ["</doc>", f"</{kind.split()[0]}>", "</mteval>"]
    return "\n".join(lines) + "\n"


def build_archive(path, skip=()):
    members = {"de-en/README": "not used\n"}
    for lang in ("de", "en"):
        members[f"de-en/train.tags.de-en.{lang}"] = train_tags(lang)
        for stem, tag in DEVTEST:
            members[f"de-en/{stem}.de-en.{lang}.xml"] = devtest_xml(stem, tag, lang)
    for name in skip:
        del members[name]
    return make_tgz(path, members)


def expected_cleaned(lang):
    """The training pairs kept, in order, tokenized and lowercased."""
    out = TITLES_TOK[0][lang] + [tokenized(i)[lang] for i in range(1, 31)]
    out += TITLES_TOK[1][lang] + [tokenized(i)[lang] for i in range(31, 56)]
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """First run: download via MIRROR, binarization crashes. Second run: resumes and finishes."""
    root = tmp_path_factory.mktemp("iwslt14")
    served = root / "mirror"
    build_archive(served / "de-en.tgz")
    dest, work = root / "data-bin" / "iwslt14.tokenized.de-en", root / "work"
    env = dict(DEST=dest, WORK_DIR=work, CHECK_SIZES=0)
    failing_path = f"{failing_preprocess_dir(root)}{os.pathsep}{VENV_BIN}{os.pathsep}{os.environ['PATH']}"
    with http_server(served) as url:
        failed = run_script("prepare-iwslt14.sh", cwd=root, MIRROR=url, PATH=failing_path, **env)
        state = {"dest_exists": dest.exists(), "partial_exists": dest.with_name(dest.name + ".partial").exists(),
                 "done": sorted(p.name for p in (work / ".done").iterdir()),
                 "downloaded": (work / "orig" / "de-en.tgz").exists()}
        resumed = run_script("prepare-iwslt14.sh", cwd=root, MIRROR=url, **env)
    return dest, work, failed, state, resumed


def test_failed_step_leaves_nothing_that_looks_finished(runs):
    _, _, failed, state, _ = runs
    assert failed.returncode != 0
    assert "simulated fairseq-preprocess crash" in failed.stderr
    assert "fairseq-preprocess failed" in failed.stderr
    assert not state["dest_exists"] and not state["partial_exists"]
    assert state["downloaded"]
    assert state["done"] == ["apply-bpe", "learn-bpe", "test", "train", "unpack"]


def test_rerun_skips_finished_steps(runs):
    _, _, _, _, resumed = runs
    assert resumed.returncode == 0, describe(resumed)
    for name in ("unpack", "train", "test", "learn-bpe", "apply-bpe"):
        assert f"skip {name}: already done" in resumed.stderr
    assert "have de-en.tgz" in resumed.stderr
    assert "step binarize done" in resumed.stderr
    assert "downloading" not in resumed.stderr


def test_train_valid_split_every_23rd_cleaned_pair(runs):
    dest, _, _, _, _ = runs
    for lang in ("de", "en"):
        kept = expected_cleaned(lang)
        assert len(kept) == 59
        assert read(dest / "text" / f"valid.tok.{lang}") == [kept[22], kept[45]]
        assert read(dest / "text" / f"train.tok.{lang}") == [x for n, x in enumerate(kept, 1) if n % 23]
    assert prep_json(dest)["counts"] == {"train": 57, "valid": 2, "test": 15}
    assert prep_json(dest)["expected_sizes"] == "skipped (CHECK_SIZES=0)"


def test_tags_dropped_titles_and_descriptions_kept(runs):
    dest, _, _, _, _ = runs
    text = "\n".join(read(dest / "text" / "train.tok.en") + read(dest / "text" / "valid.tok.en"))
    for dropped in ("url", "keywords", "talkid", "title", "description", "http", "doc1"):
        assert dropped not in text
    assert "anna example : how to test" in text and "bert shows more ." in text


def test_test_set_concatenated_in_recipe_order(runs):
    dest, _, _, _, _ = runs
    tags = [tag for _, tag in DEVTEST]
    assert read(dest / "text" / "test.tok.en") == [
        f"set {tag} line {k} , it &apos;s here ." for tag in tags for k in (1, 2, 3)]
    assert read(dest / "text" / "test.tok.de") == [
        f"satz {tag} zeile {k} , es geht &apos; s gut ." for tag in tags for k in (1, 2, 3)]
    # Untokenized references keep the original characters.
    assert read(dest / "text" / "test.raw.en")[0] == "Set dev2010 line 1, it’s here."


def test_bpe_and_binarized_data(runs):
    dest, _, _, _, _ = runs
    info = prep_json(dest)
    assert info["bpe"]["merges_requested"] == 10000
    assert 0 < info["bpe"]["merges_learned"] < 10000  # learn_bpe stops when no pair occurs twice
    for split in ("train", "valid", "test"):
        for lang in ("de", "en"):
            bpe = read(dest / "text" / f"{split}.bpe.{lang}")
            assert [line.replace("@@ ", "") for line in bpe] == read(dest / "text" / f"{split}.tok.{lang}")
    assert (dest / "dict.de.txt").read_bytes() == (dest / "dict.en.txt").read_bytes()
    assert len(load_fairseq_split(dest, "valid", "de", "en")[0]) == 2
    dataset, src_dict, tgt_dict = load_fairseq_split(dest, "train", "de", "en")
    assert len(dataset) == 57
    # The dictionary comes from the training text, so training sentences have no <unk>.
    assert src_dict.string(dataset[5]["source"]) == read(dest / "text" / "train.bpe.de")[5]
    assert tgt_dict.string(dataset[5]["target"]) == read(dest / "text" / "train.bpe.en")[5]


def _closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_failed_download_says_what_to_do(tmp_path):
    mirror = f"http://127.0.0.1:{_closed_port()}"
    proc = run_script("prepare-iwslt14.sh", cwd=tmp_path, MIRROR=mirror, DEST=tmp_path / "out",
                      WORK_DIR=tmp_path / "work")
    assert proc.returncode != 0
    assert f"could not download {mirror}/de-en.tgz" in proc.stderr
    assert "RAW_DIR=" in proc.stderr
    assert not (tmp_path / "work" / "orig" / "de-en.tgz").exists()
    assert not [p for p in (tmp_path / "work" / "orig").glob("*")]  # no partial download left
    assert not (tmp_path / "out").exists()


def test_archive_without_a_test_file_is_an_error(tmp_path):
    missing = "de-en/IWSLT14.TED.tst2012.de-en.en.xml"
    build_archive(tmp_path / "raw" / "de-en.tgz", skip=[missing])
    proc = run_script("prepare-iwslt14.sh", cwd=tmp_path, RAW_DIR=tmp_path / "raw", DEST=tmp_path / "out",
                      WORK_DIR=tmp_path / "work")
    assert proc.returncode != 0
    assert missing in proc.stderr
    assert not (tmp_path / "out").exists()


def test_missing_archive_in_raw_dir(tmp_path):
    (tmp_path / "raw").mkdir()
    proc = run_script("prepare-iwslt14.sh", cwd=tmp_path, RAW_DIR=tmp_path / "raw", DEST=tmp_path / "out",
                      WORK_DIR=tmp_path / "work")
    assert proc.returncode != 0
    assert "has no de-en.tgz" in proc.stderr
    assert "dl.fbaipublicfiles.com/fairseq/data/iwslt14/de-en.tgz" in proc.stderr


@pytest.mark.parametrize("env, message", [
    ({"WORKERS": "0"}, "WORKERS=0 is not a positive integer"),
    ({"BPE_MERGES": "many"}, "BPE_MERGES=many is not a positive integer"),
    ({"RAW_DIR": "/nonexistent/raw"}, "RAW_DIR=/nonexistent/raw is not a directory"),
])
def test_bad_settings_are_reported(tmp_path, env, message):
    proc = run_script("prepare-iwslt14.sh", cwd=tmp_path, DEST=tmp_path / "out", WORK_DIR=tmp_path / "work", **env)
    assert proc.returncode != 0
    assert message in proc.stderr


def test_script_runs_from_any_directory_with_relative_paths(tmp_path):
    # Relative DEST/WORK_DIR/RAW_DIR are taken relative to the caller's directory.
    build_archive(tmp_path / "raw" / "de-en.tgz", skip=["de-en/train.tags.de-en.de"])
    proc = run_script("prepare-iwslt14.sh", cwd=tmp_path, RAW_DIR="raw", DEST="out", WORK_DIR="work")
    assert proc.returncode != 0  # stops at the missing member, after resolving the paths
    assert "de-en/train.tags.de-en.de" in proc.stderr
    assert f"output {tmp_path}/out, work directory {tmp_path}/work" in proc.stderr
    assert pathlib.Path(tmp_path / "work").is_dir()
