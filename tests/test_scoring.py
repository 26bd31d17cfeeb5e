"""BLEU scoring: known values, fairseq's own scorer, compound splitting, generate files."""
import json
import math
import random
import shutil
import subprocess

import pytest

from pn_fairseq.evaluation import scoring
from pn_fairseq.cli import score as score_cli


def test_identical_is_100():
    lines = ["the cat sat on the mat .", "a b c d e f"]
    assert scoring.fairseq_bleu(lines, lines).score == pytest.approx(100.0, abs=1e-9)
    assert scoring.sacrebleu_tokenized(lines, lines)[0].score == pytest.approx(100.0, abs=1e-9)


def test_hand_computed_bleu():
    hyps = ["a b c d e", "x y z w"]
    refs = ["a b c d f g", "x y z w"]
    # n-gram matches / hypothesis n-grams, summed over both sentences:
    # 1-grams: a b c d (4/5) + x y z w (4/4)      = 8/9
    # 2-grams: ab bc cd (3/4) + xy yz zw (3/3)     = 6/7
    # 3-grams: abc bcd (2/3) + xyz yzw (2/2)       = 4/5
    # 4-grams: abcd (1/2) + xyzw (1/1)             = 2/3
    # lengths: hypothesis 9 < reference 10, so brevity penalty exp(1 - 10/9).
    expected = 100 * math.exp(1 - 10 / 9) * (8 / 9 * 6 / 7 * 4 / 5 * 2 / 3) ** 0.25
    assert expected == pytest.approx(71.44, abs=0.01)  # 0.8948 * (384/945) ** 0.25
    ours = scoring.fairseq_bleu(hyps, refs)
    assert ours.score == pytest.approx(expected, abs=1e-9)
    assert ours.syslen == 9 and ours.reflen == 10
    assert scoring.sacrebleu_tokenized(hyps, refs)[0].score == pytest.approx(expected, abs=1e-9)


def test_clipping_and_zero_order():
    # "the" appears twice in the reference, so only 2 of 4 hypothesis unigrams count.
    result = scoring.fairseq_bleu(["the the the the"], ["the cat the dog"])
    assert result.precisions[0] == pytest.approx(50.0)
    assert result.precisions[1] == 0.0 and result.score == 0.0  # no smoothing, as fairseq


def _fairseq_scorer_score(hyps, refs):
    """What fairseq-generate --remove-bpe computes: encode_line both strings, libbleu."""
    bleu = pytest.importorskip("fairseq.scoring.bleu")
    from fairseq.data import Dictionary

    dictionary = Dictionary()
    scorer = bleu.Scorer(bleu.BleuConfig(pad=dictionary.pad(), eos=dictionary.eos(), unk=dictionary.unk()))
    for hyp, ref in zip(hyps, refs):
        scorer.add(dictionary.encode_line(ref, add_if_not_exist=True),
                   dictionary.encode_line(hyp, add_if_not_exist=True))
    return scorer


def _random_corpus(seed, n=60):
    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(12)] + [",", ".", "&apos;s"]
    refs, hyps = [], []
    for _ in range(n):
        ref = [rng.choice(vocab) for _ in range(rng.randint(3, 15))]
        hyp = [tok if rng.random() < 0.7 else rng.choice(vocab) for tok in ref]
        hyp = hyp[: rng.randint(max(1, len(hyp) - 3), len(hyp))]
        refs.append(" ".join(ref))
        hyps.append(" ".join(hyp))
    return hyps, refs


def test_matches_fairseq_libbleu_and_sacrebleu():
    hyps, refs = _random_corpus(0)
    fairseq_score = _fairseq_scorer_score(hyps, refs).score()
    assert 10 < fairseq_score < 90  # a non-degenerate corpus
    assert scoring.fairseq_bleu(hyps, refs).score == pytest.approx(fairseq_score, abs=1e-9)
    assert abs(scoring.sacrebleu_tokenized(hyps, refs)[0].score - fairseq_score) < 0.01


def test_matches_fairseq_libbleu_on_odd_lines():
    # Empty lines count as one symbol in libbleu; a reference <unk> never matches.
    hyps, refs = _random_corpus(1, n=20)
    hyps += ["", "w1 <unk> w2 w3", "w4  w5\tw6 w7"]
    refs += ["", "w1 <unk> w2 w3", "w4 w5 w6 w7"]
    expected = _fairseq_scorer_score(hyps, refs)
    ours = scoring.fairseq_bleu(hyps, refs)
    assert ours.score == pytest.approx(expected.score(), abs=1e-9)
    assert (ours.syslen, ours.reflen) == (expected.stat.predlen, expected.stat.reflen)


COMPOUND_CASES = [
    ("well-known", "well ##AT##-##AT## known"),
    ("a-b-c", "a ##AT##-##AT## b-c"),  # the "b" is consumed by the first match
    ("a-b-c-d", "a ##AT##-##AT## b-c ##AT##-##AT## d"),
    ("a--b", "a ##AT##-##AT## -b"),
    ("a - b", "a - b"),
    ("-a-", "-a-"),
    ("Bundes @-@ regierung", "Bundes @ ##AT##-##AT## @ regierung"),
    ("ab-cd ef-gh", "ab ##AT##-##AT## cd ef ##AT##-##AT## gh"),
]


@pytest.mark.parametrize("text,expected", COMPOUND_CASES)
def test_compound_split(text, expected):
    assert scoring.compound_split(text) == expected


@pytest.mark.skipif(shutil.which("perl") is None, reason="perl not installed")
def test_compound_split_matches_perl():
    texts = [text for text, _ in COMPOUND_CASES] + ["3-4-5-6-7 x--y-z", "é-ü ß-- --q", "a\u00a0-b", "tab\t-x y-\tz"]
    perl = subprocess.run(["perl", "-ple", "s{(\\S)-(\\S)}{$1 ##AT##-##AT## $2}g"],
                          input="\n".join(texts) + "\n", capture_output=True, text=True, check=True,
                          env={"LC_ALL": "C.UTF-8", "PATH": "/usr/bin:/bin"})
    # perl without -CS works on bytes, where \S is anything but ASCII whitespace: a
    # multibyte character (even a no-break space) is non-space there.
    assert perl.stdout.splitlines() == [scoring.compound_split(t) for t in texts]


def write_generate_output(path, hyps, refs, bleu_line, shuffle_seed=3, detok=None, ids=None):
    """A fairseq-generate stdout: batches out of id order, log lines, H/D/P lines, summary."""
    ids = list(range(len(hyps))) if ids is None else ids
    order = list(range(len(hyps)))
    random.Random(shuffle_seed).shuffle(order)
    lines = ["2024-01-01 00:00:00 | INFO | fairseq_cli.generate | loading model(s) from x.pt"]
    for i in order:
        d = hyps[i] if detok is None else detok[i]
        sid = ids[i]
        lines += [f"S-{sid}\tsource {sid}", f"T-{sid}\t{refs[i]}", f"H-{sid}\t-0.{i}5\t{hyps[i]}",
                  f"D-{sid}\t-0.{i}5\t{d}", f"P-{sid}\t-0.1 -0.2"]
    lines.append("2024-01-01 00:00:01 | INFO | fairseq_cli.generate | NOTE: hypothesis and token scores are output in base 2")
    if bleu_line is not None:
        lines.append(f"Generate test with beam=5: {bleu_line}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def test_parse_generate_output(tmp_path):
    hyps, refs = ["h zero", "", "h two"], ["r zero", "r one", "r two"]
    detok = ["d zero", "", "d two"]
    path = write_generate_output(tmp_path / "gen.out", hyps, refs, "BLEU4 = 12.34, 1/2/3/4 (BP=1.000)", detok=detok)
    gen = scoring.parse_generate_output(path)
    assert gen.ids == [0, 1, 2]
    assert gen.hypotheses == detok  # D- lines, sorted by id, empty one kept
    assert gen.references == refs
    assert gen.bleu == 12.34 and gen.bleu_line.startswith("BLEU4 = 12.34")


def test_tokenized_scheme_agrees_with_fairseq_line(tmp_path):
    hyps, refs = _random_corpus(4)
    bleu_line = _fairseq_scorer_score(hyps, refs).result_string()  # fairseq's own summary format
    path = write_generate_output(tmp_path / "gen.out", hyps, refs, bleu_line)
    result = scoring.score_generate_output(path, "tokenized")
    printed = float(bleu_line.split()[2].rstrip(","))
    assert result["bleu"]["fairseq"] == printed
    assert result["bleu_main"] == printed
    assert abs(result["bleu"]["sacrebleu_tok_none"] - printed) <= 0.01
    assert result["agree"] is True and result["sentences"] == len(hyps)
    assert "tok:none" in result["sacrebleu_signature"]


def test_cli_flags_mismatch_and_writes_json(tmp_path, capsys):
    hyps, refs = _random_corpus(5)
    path = write_generate_output(tmp_path / "gen.out", hyps, refs, "BLEU4 = 99.99, 1/2/3/4 (BP=1.000)")
    out = tmp_path / "score.json"
    assert score_cli.main(["--gen-output", path, "--json", str(out)]) == 1
    assert "MISMATCH" in capsys.readouterr().out
    data = json.loads(out.read_text())
    assert data["agree"] is False and data["bleu"]["fairseq"] == 99.99
    assert set(data["bleu"]) == {"fairseq", "sacrebleu_tok_none", "compound_split", "sacrebleu_detok"}
    assert score_cli.main(["--gen-output", path, "--allow-mismatch"]) == 0


def test_wmt_scheme(tmp_path, capsys):
    hyps = ["Die Bundes @-@ regierung hat 3 Mio. Euro gezahlt , sagte er .",
            "Das ist ein gut-gemeinter Vorschlag für die Verkehrs @-@ politik ."]
    refs = ["Die Landes @-@ regierung hat 3 Mio. Euro gezahlt , sagte er .",
            "Das ist ein gut-gemeinter Vorschlag für die Verkehrs @-@ politik ."]
    raw = ["Die Bundes-regierung hat 3 Mio. Euro gezahlt, sagte er.",
           "Das ist ein gut-gemeinter Vorschlag für die Verkehrs-politik."]
    path = write_generate_output(tmp_path / "gen.out", hyps, refs, None)
    raw_path = tmp_path / "ref.raw.de"
    raw_path.write_text("\n".join(raw) + "\n", encoding="utf-8")
    out = tmp_path / "score.json"
    assert score_cli.main(["--gen-output", path, "--scheme", "wmt", "--raw-ref", str(raw_path),
                           "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    # Split by hand, independently of the regex.
    split_hyps = ["Die Bundes @ ##AT##-##AT## @ regierung hat 3 Mio. Euro gezahlt , sagte er .",
                  "Das ist ein gut ##AT##-##AT## gemeinter Vorschlag für die Verkehrs @ ##AT##-##AT## @ politik ."]
    split_refs = ["Die Landes @ ##AT##-##AT## @ regierung hat 3 Mio. Euro gezahlt , sagte er .", split_hyps[1]]
    expected = scoring.sacrebleu_tokenized(split_hyps, split_refs)[0].score
    assert data["bleu"]["compound_split"] == pytest.approx(expected, abs=1e-4)
    assert data["bleu_main"] == pytest.approx(expected, abs=0.005)
    assert data["compound_split_fairseq"] == pytest.approx(expected, abs=1e-4)
    assert data["bleu"]["fairseq"] is None  # no BLEU line in this file
    # The detokenized hypotheses equal the raw references exactly.
    assert data["bleu"]["sacrebleu_detok"] == pytest.approx(100.0)
    assert "tok:13a" in data["sacrebleu_signature"] and data["signatures"]["sacrebleu_detok"] == data["sacrebleu_signature"]
    assert "sacrebleu detokenized" in capsys.readouterr().out


def test_errors_name_the_file(tmp_path):
    not_gen = tmp_path / "train.log"
    not_gen.write_text("2024 | INFO | valid | {}\n")
    with pytest.raises(SystemExit) as info:
        score_cli.main(["--gen-output", str(not_gen)])
    assert str(not_gen) in str(info.value.code)

    path = write_generate_output(tmp_path / "gen.out", ["a b c d"] * 3, ["a b c d"] * 3, None)
    raw = tmp_path / "raw"
    raw.write_text("one\ntwo\n")
    with pytest.raises(SystemExit) as info:
        score_cli.main(["--gen-output", path, "--scheme", "wmt", "--raw-ref", str(raw)])
    assert str(path) in str(info.value.code) and f"beyond the 2 sentences expected (lines of {raw})" in str(info.value.code)


def test_missing_sentences(tmp_path, capsys):
    # fairseq-generate drops a short last batch unless --required-batch-size-multiple 1.
    lines = ["a b c d e", "f g h i j", "k l m n o"]
    path = write_generate_output(tmp_path / "gen.out", lines, lines, None, ids=[0, 1, 3])
    result = scoring.score_generate_output(path)
    assert result["complete"] is False and result["missing_ids"] == [2] and result["agree"] is True
    assert scoring.score_generate_output(path, expected_sentences=5)["missing_ids"] == [2, 4]
    assert score_cli.main(["--gen-output", path]) == 1
    assert "--required-batch-size-multiple 1" in capsys.readouterr().out
    assert score_cli.main(["--gen-output", path, "--allow-missing"]) == 0
    complete = write_generate_output(tmp_path / "all.out", lines, lines, None)
    assert scoring.score_generate_output(complete, expected_sentences=3)["complete"] is True
