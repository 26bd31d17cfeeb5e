"""BLEU exactly as the papers report it, from a ``fairseq-generate`` output file.

Two schemes (see ``/work/shared/docs/recipes.md``):

``tokenized`` (IWSLT14, Multi30k)
    BLEU on the tokenized, lowercased, BPE-removed text, i.e. the ``BLEU4 = `` number
    ``fairseq-generate --remove-bpe`` prints. fairseq's default scorer splits the D-
    (hypothesis) and T- (reference) strings on whitespace and counts n-grams over the
    resulting symbols (``fairseq/clib/libbleu``); :func:`fairseq_bleu` recomputes that in
    Python, and sacrebleu with ``tokenize='none'`` computes the same thing independently.
    The printed number, the recomputation and sacrebleu must agree to
    :data:`AGREEMENT_TOLERANCE`.

``wmt`` (WMT14 En-De)
    The ``tokenized`` numbers, plus tokenized case-sensitive BLEU after compound
    splitting (fairseq's ``scripts/compound_split_bleu.sh``), plus, given the raw
    references, detokenized sacrebleu with its signature.

Which generate line carries which text: with ``--remove-bpe`` both H- and D- lines are
BPE-removed; D- additionally undoes ``--tokenizer`` / ``--bpe`` if those were given to
fairseq-generate. fairseq scores D- against T- (T- has gone through the same decoding), so
this module uses D- lines, and H- lines only where a file has no D- lines.
"""
import collections
import dataclasses
import math
import os
import re
import struct
from typing import List, Optional

import sacrebleu

AGREEMENT_TOLERANCE = 0.01

# Published BLEU per (row, dataset); `approx` marks numbers the paper only states roughly.
PaperBleu = collections.namedtuple("PaperBleu", "value approx source")
PAPER_BLEU = {
    # PowerNorm (Shen et al. 2020), Table 1. Transformer-LN is the pre-norm LN baseline.
    ("preln", "iwslt14"): PaperBleu(35.5, False, "PowerNorm Table 1 (Transformer-LN)"),
    ("preln", "wmt14"): PaperBleu(29.5, False, "PowerNorm Table 1 (Transformer-LN)"),
    ("bn", "iwslt14"): PaperBleu(34.4, False, "PowerNorm Table 1 (Transformer-BN)"),
    ("bn", "wmt14"): PaperBleu(28.1, False, "PowerNorm Table 1 (Transformer-BN)"),
    ("pnv", "iwslt14"): PaperBleu(35.4, False, "PowerNorm Table 1 (Transformer-PN-V)"),
    ("pnv", "wmt14"): PaperBleu(28.5, False, "PowerNorm Table 1 (Transformer-PN-V)"),
    ("pn", "iwslt14"): PaperBleu(35.9, False, "PowerNorm Table 1 (Transformer-PN)"),
    ("pn", "wmt14"): PaperBleu(30.1, False, "PowerNorm Table 1 (Transformer-PN)"),
    # Pre-LN paper (Xiong et al. 2020), IWSLT14 De-En.
    ("postln-warmup4k", "iwslt14"): PaperBleu(34.0, True, "Pre-LN paper: Post-LN, 4k warm-up, about 34"),
    ("postln-warmup500", "iwslt14"): PaperBleu(31.16, False, "Pre-LN paper: Post-LN, 500 warm-up, lr 5e-4"),
    ("postln-lr1e-3-warmup4k", "iwslt14"): PaperBleu(34.0, True, "Pre-LN paper: Post-LN, 4k warm-up, about 34"),
    ("postln-lr1e-3-warmup500", "iwslt14"): PaperBleu(2.77, False, "Pre-LN paper: Post-LN, 500 warm-up, lr 1e-3"),
    # Sec. 3.2 does not name its lr_max; App. H calls 1e-3 "the lr_max in the paper" for the
    # no-warm-up Post-LN it compares with (docs/preln.md).
    ("postln-lr1e-3-nowarmup", "iwslt14"): PaperBleu(8.45, False, "Pre-LN paper: Post-LN, no warm-up (lr_max 1e-3, attributed)"),
    ("preln-nowarmup", "iwslt14"): PaperBleu(34.0, True, "Pre-LN paper: Pre-LN, no warm-up, about 34"),
}

_ENTRY_RE = re.compile(r"([STHD])-(\d+)\t(.*)")
_GENERATE_SUMMARY_RE = re.compile(r"Generate (\S+) with beam=(\d+): (.*)")
# fairseq's default scorer prints "BLEU4 = 35.87, ..."; with --scoring sacrebleu the line is
# "BLEU = ..." computed with sacrebleu's 13a tokenizer, which is not the tokenized-BLEU
# protocol, so only BLEU4 lines count as fairseq's number.
_FAIRSEQ_BLEU4_RE = re.compile(r"BLEU4 = (\d+(?:\.\d+)?)")

# What fairseq's Dictionary / libbleu do with these symbols (see fairseq_bleu).
_EOS, _PAD, _UNK = "</s>", "<pad>", "<unk>"


class ScoringError(ValueError):
    """The generate output cannot be scored; the message names the file."""


@dataclasses.dataclass
class GenerateOutput:
    """The parts of a fairseq-generate output file that scoring needs, sorted by id."""

    path: str
    ids: List[int]
    hypotheses: List[str]  # D- lines (H- where the file has none)
    references: List[str]  # T- lines
    bleu_line: Optional[str]  # e.g. "BLEU4 = 35.87, 69.2/43.9/... (BP=..., ...)"
    bleu: Optional[float]  # the number in bleu_line; None unless fairseq's default scorer made it


def parse_generate_output(path):
    """Read a fairseq-generate output file (stdout; log lines mixed in are ignored).

    Only the first (best) hypothesis of each sentence is kept, as fairseq scores it.
    """
    refs, hyps_h, hyps_d = {}, {}, {}
    bleu_line = None
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\n")
            match = _ENTRY_RE.fullmatch(line)
            if match:
                kind, sid, rest = match.group(1), int(match.group(2)), match.group(3)
                if kind == "S":
                    continue
                if kind == "T":
                    if sid in refs:
                        raise ScoringError(f"{path}:{lineno}: second T- line for sentence {sid} "
                                           "(two generate runs in one file?)")
                    refs[sid] = rest
                    continue
                # H-/D- lines: "<score>\t<text>"; the text may be empty.
                _score, _, text = rest.partition("\t")
                (hyps_h if kind == "H" else hyps_d).setdefault(sid, text)
                continue
            summary = _GENERATE_SUMMARY_RE.search(line)
            if summary:
                bleu_line = summary.group(3).strip()
    hyps = hyps_d or hyps_h
    if not hyps:
        raise ScoringError(f"{path}: no H-/D- hypothesis lines (not a fairseq-generate output, or --quiet?)")
    if not refs:
        raise ScoringError(f"{path}: no T- reference lines (generated without targets?)")
    if set(hyps) != set(refs):
        only_h = sorted(set(hyps) - set(refs))[:5]
        only_t = sorted(set(refs) - set(hyps))[:5]
        raise ScoringError(f"{path}: hypotheses and references cover different sentence ids "
                           f"(hypothesis only: {only_h}, reference only: {only_t})")
    bleu = None
    if bleu_line is not None:
        value = _FAIRSEQ_BLEU4_RE.match(bleu_line)
        bleu = float(value.group(1)) if value else None
    ids = sorted(hyps)
    return GenerateOutput(path, ids, [hyps[i] for i in ids], [refs[i] for i in ids], bleu_line, bleu)


# perl's \S on the byte strings `perl -ple` reads: anything but ASCII whitespace. Python's
# \S on str would also treat e.g. U+00A0 (no-break space) as a space and split less.
_PERL_NONSPACE = r"[^ \t\n\r\f\v]"
_COMPOUND_RE = re.compile(f"({_PERL_NONSPACE})-({_PERL_NONSPACE})")


def compound_split(line):
    """fairseq's compound splitting for WMT14 En-De tokenized BLEU.

    The same substitution as ``perl -ple 's{(\\S)-(\\S)}{$1 ##AT##-##AT## $2}g'`` in
    ``scripts/compound_split_bleu.sh``: both perl's ``s///g`` and ``re.sub`` scan left to
    right and resume *after* each match, so a character consumed as ``$2`` cannot start the
    next match: ``a-b-c`` becomes ``a ##AT##-##AT## b-c`` in both.
    """
    return _COMPOUND_RE.sub(r"\1 ##AT##-##AT## \2", line)


def _fairseq_symbols(text):
    """The symbols libbleu compares for one line, as fairseq-generate/fairseq-score feed it.

    ``Dictionary.encode_line`` splits on whitespace and appends ``</s>``; libbleu then trims
    leading pads and trailing ``</s>``/pads but never the first symbol, so an empty line
    still counts as one symbol (the end-of-sentence marker).
    """
    symbols = text.split() + [_EOS]
    start = 0
    while start < len(symbols) and symbols[start] == _PAD:
        start += 1
    symbols = symbols[start:]
    end = len(symbols) - 1
    while end > 0 and symbols[end] in (_EOS, _PAD):
        end -= 1
    return symbols[: end + 1]


def _ngram_counts(symbols, n):
    return collections.Counter(tuple(symbols[i: i + n]) for i in range(len(symbols) - n + 1))


@dataclasses.dataclass
class FairseqBleu:
    """fairseq's BleuStat and the score its ``Scorer.score()`` derives from it."""

    score: float
    precisions: List[float]  # percent, orders 1..4
    brevity: float
    syslen: int
    reflen: int


def fairseq_bleu(hypotheses, references):
    """The number fairseq-generate's default scorer (and fairseq-score) prints.

    Clipped n-gram matches over whitespace-separated symbols, n = 1..4; precision of an
    order with no n-grams is 0; any zero precision gives BLEU 0 (no smoothing); brevity
    penalty min(1, exp(1 - reflen / syslen)). A reference ``<unk>`` never matches.
    """
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    match = [0] * 4
    count = [0] * 4
    syslen = reflen = 0
    for hyp, ref in zip(hypotheses, references):
        hyp_symbols = _fairseq_symbols(hyp)
        # fairseq replaces the reference's unk id by -999 so that unknown words never match.
        ref_symbols = [None if s == _UNK else s for s in _fairseq_symbols(ref)]
        syslen += len(hyp_symbols)
        reflen += len(ref_symbols)
        for n in range(1, 5):
            if len(hyp_symbols) < n:
                continue
            count[n - 1] += len(hyp_symbols) - n + 1
            hyp_ngrams = _ngram_counts(hyp_symbols, n)
            ref_ngrams = _ngram_counts(ref_symbols, n)
            match[n - 1] += sum(min(c, hyp_ngrams[g]) for g, c in ref_ngrams.items() if None not in g)
    precisions = [m / c if c > 0 else 0.0 for m, c in zip(match, count)]
    brevity = min(1.0, math.exp(1 - reflen / syslen)) if syslen else 0.0
    if all(p > 0 for p in precisions):
        score = brevity * math.exp(sum(math.log(p) for p in precisions) / 4) * 100
    else:
        score = 0.0
    return FairseqBleu(score, [100 * p for p in precisions], brevity, syslen, reflen)


def sacrebleu_tokenized(hypotheses, references):
    """sacrebleu on already tokenized text (``tokenize='none'``); returns (BLEUScore, signature).

    This is also multi-bleu.perl's number: with no tokenizer sacrebleu splits each line on
    whitespace, clips n-gram counts (n = 1..4) by the single reference, and uses the same
    brevity penalty exp(1 - r/c) for c < r and geometric mean of the four precisions.
    The only differences are in degenerate corpora: sacrebleu's default 'exp' smoothing
    when some order has no match at all (multi-bleu and fairseq print 0 there) and
    multi-bleu's rounding to two decimals. ``force=True`` only silences sacrebleu's warning
    that the input looks tokenized, which here is intended.
    """
    metric = tokenized_metric()
    result = metric.corpus_score(list(hypotheses), [list(references)])
    return result, str(metric.get_signature())


def tokenized_metric():
    """The sacrebleu metric of tokenized BLEU (the ``tokenized`` scheme and WMT14's compound split).

    One definition for the row's score and for the paired bootstrap of
    :mod:`pn_fairseq.evaluation.significance`, so that the two can never disagree.
    """
    return sacrebleu.BLEU(tokenize="none", force=True)


def detokenized_metric():
    """The sacrebleu metric of WMT14's detokenized BLEU (sacrebleu's defaults: 13a, mixed case)."""
    return sacrebleu.BLEU()


def detokenize(lines, lang):
    """Moses-detokenize tokenized lines (undoes ``-a`` hyphen splitting and escapes too)."""
    from sacremoses import MosesDetokenizer

    detok = MosesDetokenizer(lang=lang)
    return [detok.detokenize(line.split()) for line in lines]


def sacrebleu_detokenized(hypotheses, raw_references, lang="de"):
    """Detokenized BLEU: Moses-detokenized hypotheses vs raw references, sacrebleu's defaults."""
    if len(hypotheses) != len(raw_references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(raw_references)} raw references")
    metric = detokenized_metric()
    result = metric.corpus_score(detokenize(hypotheses, lang), [list(raw_references)])
    return result, str(metric.get_signature())


def read_lines(path):
    """Lines of a text file without their line ends (a final empty line is not a line)."""
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f]


def missing_sentence_ids(ids, expected_sentences=None):
    """Test-set ids absent from a generate output.

    fairseq-fixed 0.12.3.1's fairseq-generate silently drops the sentences of a final
    batch smaller than ``--required-batch-size-multiple`` (default 8; seen here: 16 of 20
    sentences printed, all 20 with ``--required-batch-size-multiple 1``). Without the test
    set size only gaps below the largest id printed can be seen.
    """
    total = expected_sentences if expected_sentences is not None else (max(ids) + 1 if ids else 0)
    return sorted(set(range(total)) - set(ids))


def count_split_sentences(data, src, tgt, split="test"):
    """Sentences in the binarized ``split`` of a fairseq data-bin directory (the expected count).

    Read from the index file's header where it is one of fairseq's two binary formats (the
    row driver calls this once a run, and importing fairseq to read two integers cost 5-7 s a
    call); any other layout goes through fairseq's own loader, which tells them apart."""
    prefix = os.path.join(data, f"{split}.{src}-{tgt}.{src}")
    length = indexed_dataset_length(prefix)
    if length is not None:
        return length
    from fairseq.data import data_utils

    dataset = data_utils.load_indexed_dataset(prefix, None)
    if dataset is None:
        raise ScoringError(f"no binarized {split} split at {prefix}.{{bin,idx}}: prepare the data first")
    return len(dataset)


# fairseq.data.indexed_dataset's index headers: magic, then little-endian fields.
_MMAP_MAGIC = b"MMIDIDX\x00\x00"  # mmap (fairseq-preprocess's default): <Q version 1, <B dtype, <Q length
_CACHED_MAGIC = b"TNTIDX\x00\x00"  # lazy / cached: <Q version 1, <QQ dtype and element size, <QQ length and s


def indexed_dataset_length(prefix):
    """Number of items in the fairseq indexed dataset ``prefix.{idx,bin}``, from the header of
    ``prefix.idx``; None where fairseq would not read it as mmap or lazy/cached (a raw text file
    at ``prefix``, another format, a missing ``.bin``), so the caller can ask fairseq."""
    idx = prefix + ".idx"
    if os.path.exists(prefix) or not (os.path.isfile(idx) and os.path.isfile(prefix + ".bin")):
        return None
    with open(idx, "rb") as f:
        head = f.read(48)
    if head.startswith(_MMAP_MAGIC) and len(head) >= 26 and struct.unpack_from("<Q", head, 9) == (1,):
        return struct.unpack_from("<Q", head, 18)[0]
    if head.startswith(_CACHED_MAGIC) and len(head) >= 48 and struct.unpack_from("<Q", head, 8) == (1,):
        return struct.unpack_from("<Q", head, 32)[0]
    return None


def score_generate_output(path, scheme="tokenized", raw_ref=None, lang="de", expected_sentences=None):
    """Score a fairseq-generate output file; return a JSON-ready dict.

    ``bleu`` has the keys of results.json's ``bleu`` entry; ``bleu_main`` is the number
    compared with the paper (fairseq's BLEU4 for ``tokenized``, compound-split BLEU for
    ``wmt``); ``agree`` says whether fairseq's printed number (None if the file has none),
    its recomputation and sacrebleu ``tokenize='none'`` agree to AGREEMENT_TOLERANCE;
    ``complete`` whether every test sentence (0 .. ``expected_sentences`` - 1, or up to the
    largest id printed) was translated, ``missing_ids`` lists the first absent ones.
    """
    if scheme not in ("tokenized", "wmt"):
        raise ValueError(f"unknown scheme {scheme!r}")
    gen = parse_generate_output(path)
    raw = None
    if raw_ref is not None and scheme == "wmt":
        # The raw references are the whole test set, one line per sentence id.
        raw = read_lines(raw_ref)
        if expected_sentences is not None and expected_sentences != len(raw):
            raise ScoringError(f"{raw_ref}: {len(raw)} lines, but {expected_sentences} sentences expected")
        expected_sentences = len(raw)
    if expected_sentences is not None and gen.ids[-1] >= expected_sentences:
        raise ScoringError(f"{path}: sentence id {gen.ids[-1]} is beyond the {expected_sentences} "
                           f"sentences expected{f' (lines of {raw_ref})' if raw is not None else ''}")
    missing = missing_sentence_ids(gen.ids, expected_sentences)
    recomputed = fairseq_bleu(gen.hypotheses, gen.references)
    sb_tok, sb_tok_signature = sacrebleu_tokenized(gen.hypotheses, gen.references)
    # Compared as printed (two decimals), the form in which the numbers get reported.
    printed = [round(recomputed.score, 2), round(sb_tok.score, 2)]
    if gen.bleu is not None:
        printed.append(gen.bleu)
    agree = max(printed) - min(printed) <= AGREEMENT_TOLERANCE + 1e-9
    disagreement = None
    if not agree:
        disagreement = "fairseq {}, recomputed {:.2f}, sacrebleu tok:none {:.2f}".format(
            "n/a" if gen.bleu is None else f"{gen.bleu:.2f}", recomputed.score, sb_tok.score)
        if 0 in sb_tok.counts:
            disagreement += (" -- some n-gram order has no match at all: sacrebleu smooths "
                             "it ('exp'), fairseq prints 0; the model is barely trained")
    result = {
        "scheme": scheme,
        "gen_output": path,
        "sentences": len(gen.ids),
        "bleu": {
            "fairseq": gen.bleu,
            "sacrebleu_tok_none": round(sb_tok.score, 4),
            "compound_split": None,
            "sacrebleu_detok": None,
        },
        "bleu_main": None,
        "sacrebleu_signature": sb_tok_signature,
        "signatures": {"sacrebleu_tok_none": sb_tok_signature, "sacrebleu_detok": None},
        "fairseq_bleu_line": gen.bleu_line,
        "fairseq_recomputed": round(recomputed.score, 4),
        "agree": agree,
        "disagreement": disagreement,
        "complete": not missing,
        "missing_sentences": len(missing),
        "missing_ids": missing[:20],
    }
    if scheme == "tokenized":
        result["bleu_main"] = gen.bleu if gen.bleu is not None else round(recomputed.score, 2)
        return result
    split_hyps = [compound_split(h) for h in gen.hypotheses]
    split_refs = [compound_split(r) for r in gen.references]
    sb_split, _ = sacrebleu_tokenized(split_hyps, split_refs)
    result["bleu"]["compound_split"] = round(sb_split.score, 4)
    result["compound_split_fairseq"] = round(fairseq_bleu(split_hyps, split_refs).score, 4)
    result["bleu_main"] = round(sb_split.score, 2)
    if raw is not None:
        detok, signature = sacrebleu_detokenized(gen.hypotheses, [raw[i] for i in gen.ids], lang)
        result["bleu"]["sacrebleu_detok"] = round(detok.score, 4)
        result["signatures"]["sacrebleu_detok"] = signature
        result["sacrebleu_signature"] = signature
    return result


def format_report(result):
    """Human-readable lines for a :func:`score_generate_output` result."""
    bleu = result["bleu"]
    if bleu["fairseq"] is not None:
        fairseq_text = f"{bleu['fairseq']:.2f}"
    elif result["fairseq_bleu_line"]:
        fairseq_text = f"n/a (not fairseq's default scorer: {result['fairseq_bleu_line']})"
    else:
        fairseq_text = "n/a (no BLEU line in the file)"
    lines = [
        f"{result['gen_output']}: {result['sentences']} sentences, scheme {result['scheme']}",
        f"  fairseq-generate BLEU4     {fairseq_text}",
        f"  fairseq BLEU recomputed    {result['fairseq_recomputed']:.2f}",
        f"  sacrebleu tokenize=none    {bleu['sacrebleu_tok_none']:.2f}  ({result['signatures']['sacrebleu_tok_none']})",
    ]
    if bleu["compound_split"] is not None:
        lines.append(f"  compound-split tokenized   {bleu['compound_split']:.2f}"
                     f"  (fairseq-score style: {result['compound_split_fairseq']:.2f})")
    if bleu["sacrebleu_detok"] is not None:
        lines.append(f"  sacrebleu detokenized      {bleu['sacrebleu_detok']:.2f}  ({result['signatures']['sacrebleu_detok']})")
    lines.append(f"  BLEU (compared to paper)   {result['bleu_main']:.2f}")
    lines.append("  agreement: ok" if result["agree"] else f"  agreement: MISMATCH: {result['disagreement']}")
    if not result["complete"]:
        lines.append(f"  MISSING {result['missing_sentences']} test sentence(s), ids {result['missing_ids']}"
                     f"{' ...' if result['missing_sentences'] > len(result['missing_ids']) else ''}: "
                     "run fairseq-generate with --required-batch-size-multiple 1")
    return "\n".join(lines)
