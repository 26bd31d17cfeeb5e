"""Is a BLEU difference a difference? Paired bootstrap resampling of rows against a baseline row.

The library behind ``pn-results --baseline ROW`` (:mod:`pn_fairseq.cli.results`).

The test
--------
sacrebleu's own paired bootstrap (:class:`sacrebleu.significance.PairedTest`, ``test_type='bs'``;
the same code as ``sacrebleu REF -i BASELINE SYSTEM --paired-bs``), :data:`N_SAMPLES` = 1000
resamples of the test sentences with the fixed seed :data:`SEED` (sacrebleu's default, 12345;
``SACREBLEU_SEED`` in the environment is overridden for the call). For each system it gives

* ``delta``: the system's BLEU minus the baseline's on the whole test set;
* ``ci_low``, ``ci_high``: the 95% interval of that difference over the paired resamples (the
  system and the baseline scored on the same resampled sentences; sacrebleu's percentile
  convention: the 25th and 975th of 1000 sorted values). sacrebleu prints an interval for each
  system's own BLEU (``system_ci``, kept here too) but not for the difference; the difference's
  interval is computed from exactly the resamples sacrebleu draws (same seed, same generator),
  and the p-value recomputed from them must equal sacrebleu's, or the comparison fails;
* ``p_value``: two-sided, from the same resamples: twice the share of resampled differences
  on the other side of zero from the observed one (or at zero), each count + 1 over
  resamples + 1, at most 1; 1 for a zero difference. It is what the interval shows: p < 0.05
  exactly where the 95% interval leaves out zero (up to the +1 and ties). The floor is 2/1001.
* ``p_value_sacrebleu``: sacrebleu's own p, which the module reproduces from the resamples as a
  check. sacrebleu (after MultEval) counts the resamples whose *absolute* difference, less the
  mean absolute difference, exceeds the observed absolute difference; for a difference away from
  zero the absolute value changes nothing, and that count is one tail only: sacrebleu's p is
  about half the two-sided one (on Multi30k: pnv - preln = -0.69, sacrebleu 0.038, two-sided
  0.08, 95% interval [-1.46, +0.08]). Reported as p, it marked differences significant whose
  interval holds zero, which is why ``p_value`` is the two-sided one.

``significant`` is ``p_value < ALPHA`` (0.05).

The BLEU definition
-------------------
Each comparison uses the metric that scored the row (:func:`pn_fairseq.evaluation.scoring.tokenized_metric`
/ :func:`~pn_fairseq.evaluation.scoring.detokenized_metric`), on the texts the row was scored on, so the
bootstrap's BLEU of every run is the run's reported BLEU (checked: a run whose texts give a
BLEU more than :data:`BLEU_TOLERANCE` away from its ``results.json`` is not compared):

``tokenized`` (IWSLT14, Multi30k, synthetic)
    sacrebleu ``tokenize='none'`` on the tokenized, BPE-removed text: the row's
    ``bleu.sacrebleu_tok_none``, equal to fairseq's BLEU4 (``bleu_main``) to 0.01.
``compound_split`` (WMT14, the row's main number)
    the same metric after :func:`pn_fairseq.evaluation.scoring.compound_split` of both sides.
``detok`` (WMT14)
    sacrebleu's defaults on the Moses-detokenized hypotheses against the raw references
    (needs ``test.hyp.detok.txt`` and ``test.ref.raw.txt``, which the row scripts write).

Seeds
-----
Seed ``k`` of a row is paired with seed ``k`` of the baseline (seeds both rows have). Each
seed pair gets its own test (``pairs``). The ``pooled`` test (:func:`pooled_bootstrap`) is
about the mean over the pairs of the row's BLEU minus the baseline's (with the same seeds on both
sides, the difference of the two rows' means in the seeds table): every resample draws the test sentences once
(sacrebleu's draw) and scores every pair on them, so each seed is a stratum with its own
brevity penalty.
Concatenating the seeds' outputs into one test set, the pooling sacrebleu's API allows, was
this module's first test and was dropped: its corpus BLEU shares one brevity penalty across
seeds, and on Multi30k, where seed 1's outputs are short (length ratio 0.87) and seed 2's long
(1.14), preln's seeds 31.63 and 29.24 pooled to 32.37, and bn's per-seed Δ +0.51 and +0.69 to
+0.25. With one seed pair the pooled test is that pair's.

The texts
---------
A run keeps the sentences it was scored on beside its ``results.json``, sorted by sentence
id, one per line: ``test.hyp.txt`` (the D- lines of ``generate-test.txt``) and
``test.ref.txt`` (the T- lines), plus for WMT14 ``test.hyp.detok.txt`` and
``test.ref.raw.txt``. :func:`write_test_texts` writes them (the row scripts call it through
``row_results write``); :func:`load_test_texts` derives the first two from
``generate-test.txt`` for a run that predates them and writes them there, atomically.
"""
import contextlib
import dataclasses
import functools
import os
from typing import List, Optional

import numpy as np

from pn_common.atomic import write_text_atomic
from pn_fairseq.evaluation import scoring

N_SAMPLES = 1000
SEED = 12345
ALPHA = 0.05
BLEU_TOLERANCE = scoring.AGREEMENT_TOLERANCE

HYP_FILE = "test.hyp.txt"
REF_FILE = "test.ref.txt"
HYP_DETOK_FILE = "test.hyp.detok.txt"
REF_RAW_FILE = "test.ref.raw.txt"
GENERATE_FILE = "generate-test.txt"


class SignificanceError(ValueError):
    """Texts missing or inconsistent, or sacrebleu's bootstrap not what this module expects."""


@dataclasses.dataclass(frozen=True)
class Definition:
    """One BLEU definition: the metric, the text files it reads, and the results.json number it must reproduce."""

    name: str
    label: str
    files: tuple  # (hypotheses, references) file names
    split: bool  # compound-split both sides first
    detokenized: bool

    def metric(self):
        return scoring.detokenized_metric() if self.detokenized else scoring.tokenized_metric()

    def reported(self, result):
        """The run's reported BLEU under this definition (from its results.json)."""
        bleu = result["bleu"]
        return {"tokenized": bleu["sacrebleu_tok_none"], "compound_split": bleu["compound_split"],
                "detok": bleu["sacrebleu_detok"]}[self.name]

    def prepare(self, lines):
        return [scoring.compound_split(line) for line in lines] if self.split else list(lines)


DEFINITIONS = {
    "tokenized": Definition("tokenized", "tokenized BLEU (sacrebleu tokenize=none)", (HYP_FILE, REF_FILE), False, False),
    "compound_split": Definition("compound_split", "tokenized BLEU after compound splitting",
                                 (HYP_FILE, REF_FILE), True, False),
    "detok": Definition("detok", "detokenized sacrebleu (13a)", (HYP_DETOK_FILE, REF_RAW_FILE), False, True),
}


def definitions_for(result):
    """The definitions a row was scored with: tokenized, or WMT14's compound split (+ detok when scored)."""
    if result["bleu"]["compound_split"] is None:
        return [DEFINITIONS["tokenized"]]
    defs = [DEFINITIONS["compound_split"]]
    if result["bleu"]["sacrebleu_detok"] is not None:
        defs.append(DEFINITIONS["detok"])
    return defs


# ---------------------------------------------------------------------------------------------
# The texts beside results.json


def write_test_texts(run_dir, gen_output, raw_ref=None, lang="de"):
    """Write the sorted hypotheses and references of ``gen_output`` into ``run_dir`` (atomically).

    With ``raw_ref`` (WMT14: the raw reference file, one line per test sentence in the original
    order) also the detokenized hypotheses and the raw references of the same sentences.
    Returns the file names written.
    """
    gen = scoring.parse_generate_output(gen_output)
    texts = {HYP_FILE: gen.hypotheses, REF_FILE: gen.references}
    if raw_ref is not None:
        raw = scoring.read_lines(raw_ref)
        if gen.ids[-1] >= len(raw):
            raise SignificanceError(f"{raw_ref}: {len(raw)} lines, but {gen_output} has sentence id {gen.ids[-1]}")
        texts[HYP_DETOK_FILE] = scoring.detokenize(gen.hypotheses, lang)
        texts[REF_RAW_FILE] = [raw[i] for i in gen.ids]
    for name, lines in texts.items():
        for line in lines:
            if "\n" in line or "\r" in line:
                raise SignificanceError(f"{gen_output}: a sentence contains a line break; cannot write {name}")
        write_text_atomic(os.path.join(run_dir, name), "".join(line + "\n" for line in lines))
    return list(texts)


def _read(path):
    with open(path, encoding="utf-8", newline="\n") as f:
        return [line.rstrip("\n") for line in f]


def load_test_texts(run_dir, definition, derive=True):
    """(hypotheses, references) of a run under ``definition``, compound-split if it says so.

    A run without ``test.hyp.txt``/``test.ref.txt`` but with ``generate-test.txt`` gets them
    derived (and, with ``derive``, written beside its results.json). Raises SignificanceError
    when the texts cannot be had.
    """
    hyp_name, ref_name = definition.files
    hyp_path, ref_path = os.path.join(run_dir, hyp_name), os.path.join(run_dir, ref_name)
    if not (os.path.isfile(hyp_path) and os.path.isfile(ref_path)):
        gen_path = os.path.join(run_dir, GENERATE_FILE)
        if definition.detokenized:
            raise SignificanceError(f"{run_dir}: no {hyp_name}/{ref_name} (the raw references are needed; "
                                    "the row scripts write them for WMT14)")
        if not os.path.isfile(gen_path):
            raise SignificanceError(f"{run_dir}: neither {hyp_name}/{ref_name} nor {GENERATE_FILE}")
        gen = scoring.parse_generate_output(gen_path)
        hyps, refs = gen.hypotheses, gen.references
        if derive:
            with contextlib.suppress(OSError):  # a read-only run directory: use them without keeping them
                write_test_texts(run_dir, gen_path)
    else:
        hyps, refs = _read(hyp_path), _read(ref_path)
        if len(hyps) != len(refs):
            raise SignificanceError(f"{run_dir}: {len(hyps)} lines in {hyp_name} but {len(refs)} in {ref_name}")
    return definition.prepare(hyps), definition.prepare(refs)


# ---------------------------------------------------------------------------------------------
# The paired bootstrap


@dataclasses.dataclass
class PairedResult:
    """One paired bootstrap: a system against the baseline on one test set (see the module docstring)."""

    baseline_bleu: float
    system_bleu: float
    delta: float
    ci_low: float
    ci_high: float
    p_value: float
    p_value_sacrebleu: float
    significant: bool
    baseline_mean: float
    baseline_ci: float
    system_mean: float
    system_ci: float
    sentences: int
    n_samples: int
    bootstrap_seed: int
    signature: str

    def as_dict(self):
        return dataclasses.asdict(self)


@contextlib.contextmanager
def _sacrebleu_seed(seed):
    """sacrebleu reads its resampling seed from ``SACREBLEU_SEED``: pin it for the call."""
    old = os.environ.get("SACREBLEU_SEED")
    os.environ["SACREBLEU_SEED"] = str(seed)
    try:
        yield
    finally:
        if old is None:
            del os.environ["SACREBLEU_SEED"]
        else:
            os.environ["SACREBLEU_SEED"] = old


def _percentile_interval(values):
    """sacrebleu's 95% convention (``estimate_ci``): the (n//40)-th and (n - n//40 - 1)-th sorted values."""
    values = np.sort(values)
    lower = len(values) // 40
    return float(values[lower]), float(values[len(values) - lower - 1])


def _resample_indices(n, n_samples, seed):
    """sacrebleu's resamples of an n-sentence test set: ``default_rng(seed).choice(n, (n_samples, n))``."""
    return np.random.default_rng(seed).choice(n, size=(n_samples, n), replace=True)


def _resampled_scores(metric, lines, references, idxs):
    """(per-sentence statistics, BLEU of every resample) of ``lines`` against ``references``."""
    stats = np.array(metric._extract_corpus_statistics(lines, [references]), dtype="float32")
    return stats, np.array([metric._compute_score_from_stats(stats[i].sum(0)).score for i in idxs])


@functools.lru_cache(maxsize=64)
def _resampled_scores_of(metric_factory, lines, references, n_samples, seed):
    """:func:`_resampled_scores` on sacrebleu's resamples, remembered: ``pn-results --baseline``
    scores the baseline's texts against every row, and each row's texts for its pair and again for
    the pooled test (60 scorings of 18 texts for 5 rows x 3 seeds). ``lines``, ``references``:
    tuples. Returns (statistics, scores, the metric's signature); the arrays are read-only, being
    shared."""
    idxs = _resample_indices(len(references), n_samples, seed)
    metric = metric_factory()
    stats, scores = _resampled_scores(metric, list(lines), list(references), idxs)
    stats.setflags(write=False)
    scores.setflags(write=False)
    return stats, scores, str(metric.get_signature())


def _p_value(diffs, observed):
    """sacrebleu's paired-bootstrap p (``_compute_p_value`` on the centred absolute differences)."""
    abs_diffs = np.abs(diffs)
    return (np.sum(abs_diffs - abs_diffs.mean() > abs(observed)).item() + 1) / (len(diffs) + 1)


def _two_sided_p(diffs, observed):
    """Twice the share of resampled differences at or beyond zero, away from ``observed``."""
    if observed == 0:
        return 1.0
    against = np.sum(np.sign(observed) * diffs <= 0).item()
    return min(1.0, 2 * (against + 1) / (len(diffs) + 1))


def paired_bootstrap(baseline, system, references, metric_factory=scoring.tokenized_metric,
                     n_samples=N_SAMPLES, seed=SEED):
    """sacrebleu's paired bootstrap of ``system`` against ``baseline`` (lists of lines, one reference).

    ``metric_factory`` builds a fresh sacrebleu metric (sacrebleu caches references in it).
    Returns a :class:`PairedResult`.
    """
    from sacrebleu.significance import PairedTest

    if not (len(baseline) == len(system) == len(references)):
        raise SignificanceError(f"{len(baseline)} baseline, {len(system)} system and {len(references)} "
                                "reference lines")
    if not references:
        raise SignificanceError("empty test set")
    baseline, system, references = list(baseline), list(system), list(references)
    with _sacrebleu_seed(seed):
        metric = metric_factory()
        signatures, scores = PairedTest([("baseline", baseline), ("system", system)], {"BLEU": metric},
                                        [references], test_type="bs", n_samples=n_samples)()
    (name,) = [key for key in scores if key != "System"]
    bl, sy = scores[name]

    # The same resamples again, to get the distribution of the difference that sacrebleu does not return.
    refs = tuple(references)
    bl_stats, bl_scores, _ = _resampled_scores_of(metric_factory, tuple(baseline), refs, n_samples, seed)
    sy_stats, sy_scores, _ = _resampled_scores_of(metric_factory, tuple(system), refs, n_samples, seed)
    diffs = sy_scores - bl_scores
    p_check = _p_value(diffs, sy.score - bl.score)
    if abs(p_check - sy.p_value) > 1e-9:
        raise SignificanceError(f"sacrebleu's paired bootstrap drew other resamples than expected "
                                f"(p {sy.p_value} vs {p_check}); sacrebleu version not supported")
    identical = np.array_equal(bl_stats, sy_stats)
    p_value = 1.0 if identical else _two_sided_p(diffs, sy.score - bl.score)
    ci_low, ci_high = (0.0, 0.0) if identical else _percentile_interval(diffs)
    return PairedResult(
        baseline_bleu=float(bl.score), system_bleu=float(sy.score), delta=float(sy.score - bl.score),
        ci_low=ci_low, ci_high=ci_high, p_value=p_value, p_value_sacrebleu=float(sy.p_value),
        significant=p_value < ALPHA, baseline_mean=float(bl.mean), baseline_ci=float(bl.ci),
        system_mean=float(sy.mean), system_ci=float(sy.ci), sentences=len(references),
        n_samples=n_samples, bootstrap_seed=seed, signature=str(signatures[name]),
    )


def pooled_bootstrap(pairs, metric_factory=scoring.tokenized_metric, n_samples=N_SAMPLES, seed=SEED):
    """Several seed pairs of one test set as one test: the mean over the pairs of the system's BLEU
    minus the baseline's, the quantity the seeds table's means differ by.

    ``pairs``: ``[(baseline lines, system lines, reference lines), ...]``, one per seed, with the
    same references in the same order. Every resample draws the test sentences once (sacrebleu's
    draw, as :func:`paired_bootstrap`) and scores every pair on them: the seeds are strata, each
    keeping its own brevity penalty, and each pair stays paired. With one pair this is
    :func:`paired_bootstrap`'s test. Returns a :class:`PairedResult` whose BLEUs are means over
    the pairs and whose ``sentences`` counts every pair's.
    """
    if not pairs:
        raise SignificanceError("no seed pairs to pool")
    references = list(pairs[0][2])
    for baseline, system, refs in pairs:
        if list(refs) != references:
            raise SignificanceError("the seed pairs have different references: not one test set, cannot pool")
        if not (len(baseline) == len(system) == len(references)):
            raise SignificanceError(f"{len(baseline)} baseline, {len(system)} system and {len(references)} "
                                    "reference lines")
    if not references:
        raise SignificanceError("empty test set")
    metric, refs = metric_factory(), tuple(references)
    bl_bleu, sy_bleu, bl_scores, sy_scores, identical = [], [], [], [], True
    for baseline, system, _ in pairs:
        bl_stats, bl, signature = _resampled_scores_of(metric_factory, tuple(baseline), refs, n_samples, seed)
        sy_stats, sy, _ = _resampled_scores_of(metric_factory, tuple(system), refs, n_samples, seed)
        # the whole test set's BLEU from the same sentence statistics, as corpus_score computes it
        # (integer counts, so the float32 sums are exact; python ints keep the score in float64)
        bl_bleu.append(metric._compute_score_from_stats(bl_stats.sum(0).astype(np.int64).tolist()).score)
        sy_bleu.append(metric._compute_score_from_stats(sy_stats.sum(0).astype(np.int64).tolist()).score)
        bl_scores.append(bl)
        sy_scores.append(sy)
        identical = identical and np.array_equal(bl_stats, sy_stats)
    bl_mean, sy_mean = np.mean(bl_scores, axis=0), np.mean(sy_scores, axis=0)
    delta = float(np.mean(sy_bleu) - np.mean(bl_bleu))
    p_sacrebleu = _p_value(sy_mean - bl_mean, delta)
    p_value = 1.0 if identical else _two_sided_p(sy_mean - bl_mean, delta)
    ci_low, ci_high = (0.0, 0.0) if identical else _percentile_interval(sy_mean - bl_mean)
    (baseline_mean, baseline_ci), (system_mean, system_ci) = _mean_and_ci(bl_mean), _mean_and_ci(sy_mean)
    return PairedResult(
        baseline_bleu=float(np.mean(bl_bleu)), system_bleu=float(np.mean(sy_bleu)), delta=delta,
        ci_low=ci_low, ci_high=ci_high, p_value=p_value, p_value_sacrebleu=p_sacrebleu,
        significant=p_value < ALPHA, baseline_mean=baseline_mean, baseline_ci=baseline_ci,
        system_mean=system_mean, system_ci=system_ci, sentences=len(references) * len(pairs),
        n_samples=n_samples, bootstrap_seed=seed, signature=signature,
    )


def _mean_and_ci(scores):
    """sacrebleu's ``estimate_ci``: the resamples' mean and half the width of their 95% interval."""
    low, high = _percentile_interval(scores)
    return float(np.mean(scores)), 0.5 * (high - low)


# ---------------------------------------------------------------------------------------------
# Rows against the baseline row


def _texts(run, definition, cache, notes):
    key = (run.run_dir, definition.name)
    if key not in cache:
        try:
            hyps, refs = load_test_texts(run.run_dir, definition)
            score = definition.metric().corpus_score(hyps, [refs]).score
            reported = definition.reported(run.result)
            if reported is None or abs(score - reported) > BLEU_TOLERANCE:
                raise SignificanceError(
                    f"{run.run_dir}: its texts give {definition.label} {score:.2f}, its results.json "
                    f"{reported}: not compared (stale texts?)")
            cache[key] = (hyps, refs)
        except (OSError, scoring.ScoringError, SignificanceError) as err:
            cache[key] = None
            notes.append(str(err))
    return cache[key]


def compare_dataset(groups, dataset, baseline_row, n_samples=N_SAMPLES, seed=SEED):
    """Every row of ``dataset`` against ``baseline_row``, per seed pair and pooled.

    ``groups`` maps (row, dataset) to :class:`pn_fairseq.evaluation.results.RowGroup`. Returns a JSON-ready
    dict: ``{"dataset", "baseline", "n_samples", "seed", "alpha", "definitions": {name:
    {"label", "rows": {row: {"seeds": [...], "pairs": [...], "pooled": {...} or None}}}},
    "notes": [...]}``. What cannot be compared (no texts, different test sets, no common seed)
    is left out of ``rows`` and explained in ``notes``.
    """
    report = {"dataset": dataset, "baseline": baseline_row, "n_samples": n_samples, "seed": seed,
              "alpha": ALPHA, "definitions": {}, "notes": []}
    notes = report["notes"]
    base = groups.get((baseline_row, dataset))
    if base is None or not base.runs:
        notes.append(f"no finished '{baseline_row}' run on {dataset}: no significance tests")
        return report
    cache = {}
    for definition in definitions_for(base.runs[0].result):
        rows = {}
        for (row, ds), group in groups.items():
            if ds != dataset or row == baseline_row or not group.runs:
                continue
            if definition not in definitions_for(group.runs[0].result):
                notes.append(f"{row}: not scored with {definition.label}")
                continue
            base_by_seed = {run.seed: run for run in base.runs}
            common = [run.seed for run in group.runs if run.seed in base_by_seed]
            if not common:
                notes.append(f"{row}: no seed in common with {baseline_row} "
                             f"({group.seed_list()} vs {base.seed_list()}): not compared")
                continue
            pairs, texts, used = [], [], []
            for run in group.runs:
                if run.seed not in base_by_seed:
                    continue
                b = _texts(base_by_seed[run.seed], definition, cache, notes)
                s = _texts(run, definition, cache, notes)
                if b is None or s is None:
                    continue
                if b[1] != s[1]:
                    notes.append(f"{row} seed {run.seed}: its references differ from {baseline_row}'s "
                                 "(another test set?): not compared")
                    continue
                result = paired_bootstrap(b[0], s[0], b[1], definition.metric, n_samples, seed)
                pairs.append({"seed": run.seed, **result.as_dict()})
                texts.append((b[0], s[0], b[1]))
                used.append(run.seed)
            if not pairs:
                continue
            if len(pairs) == 1:
                pooled = {k: v for k, v in pairs[0].items() if k != "seed"}
            else:
                try:
                    pooled = pooled_bootstrap(texts, definition.metric, n_samples, seed).as_dict()
                except SignificanceError as err:
                    notes.append(f"{row}: seeds {seeds_text(used)} not pooled: {err}")
                    pooled = None
            rows[row] = {"seeds": used, "pairs": pairs, "pooled": pooled and {**pooled, "seeds": used}}
        report["definitions"][definition.name] = {"label": definition.label, "rows": rows}
    # A note per distinct problem, in order.
    report["notes"] = list(dict.fromkeys(notes))
    return report


def default_baseline(groups, dataset, preferred="preln"):
    """``preferred`` when ``dataset`` has it, else None."""
    return preferred if (preferred, dataset) in groups else None


def format_delta(entry):
    """``+0.19`` with ``*`` when significant."""
    return f"{entry['delta']:+.2f}" + ("*" if entry["significant"] else "")


def format_interval(entry):
    return f"[{entry['ci_low']:+.2f}, {entry['ci_high']:+.2f}]"


def format_p(p_value):
    return f"{p_value:.3f}"


def seeds_text(seeds: List[Optional[int]]):
    return ", ".join("?" if s is None else str(s) for s in seeds)
