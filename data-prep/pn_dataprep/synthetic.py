"""A seeded German-like -> English-like parallel corpus for CPU demos and tests.

The task is learnable but not a word-for-word substitution:

- vocabulary: a few thousand generated pseudo-word lemmas (nouns, adjectives, verbs,
  adverbs) with Zipfian frequencies, plus a fixed set of function words;
- agreement in the source: determiners and adjective endings follow the noun's gender
  (m/f/n), number and case (nominative subject, accusative object, dative after a
  preposition); plural nouns take a gender-dependent suffix (and ``-n`` in the dative);
  the verb agrees with the subject (``-t`` / ``-en``). In the target: plural ``-s``/``-es``,
  third-person ``-s`` on the verb, ``does``/``do``, ``has``/``have``, ``a``/``an``;
- word order: the source puts participles, infinitives and subordinate-clause verbs last
  and inverts subject and verb after a fronted adverb (verb second); the target is SVO;
- source nouns are capitalized as in German (the pipeline lowercases them again).

At the default size (20,000 training pairs) the source side has about 6,700 word types and the
target side about 5,300 (:data:`VOCAB_RANGE` holds the bounds the tests check).
Same seed and sizes give byte-identical files.
"""
import bisect
import itertools
import os
import random

from pn_common.atomic import atomic_text_file
from .textio import log

DEFAULT_SIZES = {"train": 20_000, "valid": 500, "test": 500}
# Word types per side at DEFAULT_SIZES, checked by the tests.
VOCAB_RANGE = {"src": (4_000, 10_000), "tgt": (3_000, 8_000)}

LEXICON_SIZES = {"noun": 1600, "adj": 450, "verb_t": 500, "verb_i": 200, "adv": 150}

_SRC_SYLLABLES = (
    ("", "b", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "w", "z", "sch", "st", "sp",
     "br", "gr", "kl", "fr", "pf", "tr", "dr", "kr", "bl", "gl"),
    ("a", "e", "i", "o", "u", "ei", "au", "ie", "ä", "ö", "ü", "eu"),
    ("", "", "n", "r", "l", "m", "s", "ch", "ck", "ng", "nd", "rt", "lt", "tz", "ß"),
)
_TGT_SYLLABLES = (
    ("", "b", "c", "d", "f", "g", "h", "j", "l", "m", "n", "p", "r", "s", "t", "v", "w", "th", "sh",
     "bl", "cr", "fl", "gr", "pl", "sl", "tr", "st"),
    ("a", "e", "i", "o", "u", "ee", "oo", "ea", "ai", "ou"),
    ("", "", "n", "r", "l", "m", "t", "ck", "ng", "nd", "ll", "sh", "ch", "p", "g"),
)

# Function words: (source, target). Subjects of the embedding clause in "X, dass ...".
_EMBEDDERS = [("ich glaube", "i think"), ("er sagt", "he says"), ("sie sagt", "she says"),
              ("wir wissen", "we know"), ("man hört", "one hears"), ("ich hoffe", "i hope")]
_PREPOSITIONS = [("mit", "with"), ("bei", "near"), ("von", "from"), ("zu", "to"),
                 ("nach", "after"), ("aus", "out of"), ("gegenüber", "opposite")]
_REAL_ADVERBS = [("heute", "today"), ("oft", "often"), ("manchmal", "sometimes"),
                 ("hier", "here"), ("morgen", "tomorrow"), ("selten", "rarely")]

_DEF = {"nom": {"m": "der", "f": "die", "n": "das", "pl": "die"},
        "acc": {"m": "den", "f": "die", "n": "das", "pl": "die"},
        "dat": {"m": "dem", "f": "der", "n": "dem", "pl": "den"}}
_INDEF = {"nom": {"m": "ein", "f": "eine", "n": "ein"},
          "acc": {"m": "einen", "f": "eine", "n": "ein"},
          "dat": {"m": "einem", "f": "einer", "n": "einem"}}
# Adjective endings: weak after der/die/das, mixed after ein/eine, strong without article.
_WEAK = {"nom": {"m": "e", "f": "e", "n": "e", "pl": "en"},
         "acc": {"m": "en", "f": "e", "n": "e", "pl": "en"},
         "dat": {"m": "en", "f": "en", "n": "en", "pl": "en"}}
_MIXED = {"nom": {"m": "er", "f": "e", "n": "es"},
          "acc": {"m": "en", "f": "e", "n": "es"},
          "dat": {"m": "en", "f": "en", "n": "en"}}
_STRONG_PL = {"nom": "e", "acc": "e", "dat": "en"}

_FUNCTION_WORDS = {w for pairs in (_EMBEDDERS, _PREPOSITIONS, _REAL_ADVERBS) for p in pairs
                   for w in " ".join(p).split()}
_FUNCTION_WORDS |= {"der", "die", "das", "den", "dem", "ein", "eine", "einen", "einem", "einer",
                    "und", "nicht", "hat", "haben", "kann", "können", "dass", "the", "a", "an", "and",
                    "not", "does", "do", "has", "have", "can", "that"}


class _Zipf:
    """Draw lexicon entries with probability proportional to 1 / rank."""

    def __init__(self, items):
        self.items = items
        self.cum = list(itertools.accumulate(1.0 / (r + 1) for r in range(len(items))))

    def draw(self, rng):
        return self.items[bisect.bisect_left(self.cum, rng.random() * self.cum[-1])]


def _words(rng, syllables, count, min_syl, max_syl, taken, ok=lambda w: True):
    onsets, nuclei, codas = syllables
    out = []
    while len(out) < count:
        n = rng.randint(min_syl, max_syl)
        word = "".join(rng.choice(onsets) + rng.choice(nuclei) + rng.choice(codas) for _ in range(n))
        if word not in taken and ok(word):
            taken.add(word)
            out.append(word)
    return out


def _tgt_plural(noun):
    return noun + ("es" if noun.endswith(("sh", "ch")) else "s")


def _tgt_3sg(verb):
    return verb + ("es" if verb.endswith(("sh", "ch")) else "s")


def _tgt_participle(verb):
    return verb + ("d" if verb.endswith("e") else "ed")


def _src_plural(noun, gender, case):
    plural = {"m": noun + "e", "f": noun + ("n" if noun.endswith("e") else "en"), "n": noun + "er"}[gender]
    if case == "dat" and not plural.endswith(("n", "s")):
        plural += "n"
    return plural


def _src_3sg(verb):
    return verb + ("et" if verb.endswith(("t", "d")) else "t")


class Lexicon:
    def __init__(self, rng):
        taken_src, taken_tgt = set(_FUNCTION_WORDS), set(_FUNCTION_WORDS)
        n = LEXICON_SIZES
        # Target stems never end in "s" so that plural and 3rd-person -s stay unambiguous.
        no_s = lambda w: not w.endswith("s")  # noqa: E731
        consonant_end = lambda w: w[-1] not in "aeiouäöü"  # noqa: E731
        nouns = list(zip(_words(rng, _SRC_SYLLABLES, n["noun"], 1, 3, taken_src),
                         _words(rng, _TGT_SYLLABLES, n["noun"], 1, 3, taken_tgt, no_s)))
        self.nouns = _Zipf([(s, t, "f" if s.endswith("e") else rng.choice("mmmffn"))
                            for s, t in nouns])
        self.adjs = _Zipf(list(zip(_words(rng, _SRC_SYLLABLES, n["adj"], 1, 2, taken_src, consonant_end),
                                   _words(rng, _TGT_SYLLABLES, n["adj"], 1, 2, taken_tgt))))
        self.verbs_t = _Zipf(list(zip(_words(rng, _SRC_SYLLABLES, n["verb_t"], 1, 2, taken_src, consonant_end),
                                      _words(rng, _TGT_SYLLABLES, n["verb_t"], 1, 2, taken_tgt, no_s))))
        self.verbs_i = _Zipf(list(zip(_words(rng, _SRC_SYLLABLES, n["verb_i"], 1, 2, taken_src, consonant_end),
                                      _words(rng, _TGT_SYLLABLES, n["verb_i"], 1, 2, taken_tgt, no_s))))
        adverbs = list(zip(_words(rng, _SRC_SYLLABLES, n["adv"], 2, 3, taken_src),
                           _words(rng, _TGT_SYLLABLES, n["adv"], 2, 3, taken_tgt)))
        self.adverbs = _Zipf(_REAL_ADVERBS + adverbs)


def _a_or_an(word):
    return "an" if word[0] in "aeiou" else "a"


def _noun_phrase(rng, lex, case, number=None):
    """(source tokens, target tokens, number) of one noun phrase."""
    src_noun, tgt_noun, gender = lex.nouns.draw(rng)
    number = number or ("pl" if rng.random() < 0.3 else "sg")
    n_adj = rng.choices((0, 1, 2), (0.55, 0.35, 0.10))[0]
    adjs = []
    while len(adjs) < n_adj:  # "the old old dog" would make the agreement easier to cheat on
        adj = lex.adjs.draw(rng)
        if adj not in adjs:
            adjs.append(adj)
    definite = rng.random() < 0.6
    key = "pl" if number == "pl" else gender
    if definite:
        src = [_DEF[case][key]] + [a + _WEAK[case][key] for a, _ in adjs]
        tgt = ["the"]
    elif number == "sg":
        src = [_INDEF[case][key]] + [a + _MIXED[case][key] for a, _ in adjs]
        tgt = [None]  # a/an, decided by the next word
    else:
        src = [a + _STRONG_PL[case] for a, _ in adjs]
        tgt = []
    noun_form = _src_plural(src_noun, gender, case) if number == "pl" else src_noun
    src.append(noun_form.capitalize())
    tgt += [t for _, t in adjs] + [_tgt_plural(tgt_noun) if number == "pl" else tgt_noun]
    if tgt and tgt[0] is None:
        tgt[0] = _a_or_an(tgt[1])
    return src, tgt, number


def _subject(rng, lex):
    if rng.random() < 0.1:  # coordinated subject: plural agreement in both languages
        s1, t1, _ = _noun_phrase(rng, lex, "nom")
        s2, t2, _ = _noun_phrase(rng, lex, "nom")
        return s1 + ["und"] + s2, t1 + ["and"] + t2, "pl"
    return _noun_phrase(rng, lex, "nom")


def _prep_phrase(rng, lex):
    src_p, tgt_p = rng.choice(_PREPOSITIONS)
    s, t, _ = _noun_phrase(rng, lex, "dat")
    return [src_p] + s, tgt_p.split() + t


def _maybe_pp(rng, lex, p=0.3):
    return _prep_phrase(rng, lex) if rng.random() < p else ([], [])


def _present(verb, number):
    (src, tgt) = verb
    return (_src_3sg(src), _tgt_3sg(tgt)) if number == "sg" else (src + "en", tgt)


def _sentence(rng, lex):
    """One (source, target) pair of token lists, without final punctuation."""
    kind = rng.choices(("svo", "intrans", "perfect", "modal", "negation", "fronted", "subordinate"),
                       (0.22, 0.10, 0.20, 0.10, 0.10, 0.10, 0.18))[0]
    subj_s, subj_t, number = _subject(rng, lex)
    if kind == "intrans":
        verb_s, verb_t = _present(lex.verbs_i.draw(rng), number)
        adv_s, adv_t = lex.adverbs.draw(rng)
        return subj_s + [verb_s, adv_s], subj_t + [verb_t, adv_t]
    verb = lex.verbs_t.draw(rng)
    obj_s, obj_t, _ = _noun_phrase(rng, lex, "acc")
    pp_s, pp_t = _maybe_pp(rng, lex)
    if kind == "svo":
        verb_s, verb_t = _present(verb, number)
        return subj_s + [verb_s] + obj_s + pp_s, subj_t + [verb_t] + obj_t + pp_t
    if kind == "perfect":
        aux_s, aux_t = ("hat", "has") if number == "sg" else ("haben", "have")
        return (subj_s + [aux_s] + obj_s + pp_s + ["ge" + _src_3sg(verb[0])],
                subj_t + [aux_t, _tgt_participle(verb[1])] + obj_t + pp_t)
    if kind == "modal":
        aux_s = "kann" if number == "sg" else "können"
        return subj_s + [aux_s] + obj_s + pp_s + [verb[0] + "en"], subj_t + ["can", verb[1]] + obj_t + pp_t
    if kind == "negation":
        verb_s, _ = _present(verb, number)
        aux_t = "does" if number == "sg" else "do"
        return subj_s + [verb_s] + obj_s + ["nicht"], subj_t + [aux_t, "not", verb[1]] + obj_t
    verb_s, verb_t = _present(verb, number)
    if kind == "fronted":
        adv_s, adv_t = lex.adverbs.draw(rng)
        return [adv_s, verb_s] + subj_s + obj_s + pp_s, [adv_t] + subj_t + [verb_t] + obj_t + pp_t
    emb_s, emb_t = rng.choice(_EMBEDDERS)
    return (emb_s.split() + [",", "dass"] + subj_s + obj_s + pp_s + [verb_s],
            emb_t.split() + ["that"] + subj_t + [verb_t] + obj_t + pp_t)


def _detokenize(tokens):
    text = " ".join(tokens).replace(" ,", ",") + "."
    return text[0].upper() + text[1:]


def generate(seed=1, sizes=None):
    """{split: [(source line, target line), ...]} with no source sentence in two places."""
    sizes = dict(DEFAULT_SIZES if sizes is None else sizes)
    rng = random.Random(seed)
    lex = Lexicon(rng)
    seen, pairs = set(), []
    total = sum(sizes.values())
    while len(pairs) < total:
        src, tgt = _sentence(rng, lex)
        src_line = _detokenize(src)
        if src_line not in seen:
            seen.add(src_line)
            pairs.append((src_line, _detokenize(tgt)))
    out, start = {}, 0
    for split, n in sizes.items():
        out[split] = pairs[start:start + n]
        start += n
    return out


def write_corpus(outdir, seed=1, sizes=None, src="de", tgt="en"):
    """Write ``<split>.<src>`` / ``<split>.<tgt>`` raw text files; return {split: pairs}."""
    corpus = generate(seed, sizes)
    for split, pairs in corpus.items():
        for lang, side in ((src, 0), (tgt, 1)):
            with atomic_text_file(os.path.join(outdir, f"{split}.{lang}")) as f:
                for pair in pairs:
                    f.write(pair[side] + "\n")
    for side, lang in ((0, src), (1, tgt)):
        types = {w for pair in corpus.get("train", []) for w in pair[side].lower().split()}
        log(f"synthetic {lang}: {len(types):,} word types in train (before tokenization)")
    return corpus


def vocabulary(lines):
    return {w for line in lines for w in line.lower().replace(",", " ").replace(".", " ").split()}
