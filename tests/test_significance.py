"""Paired bootstrap against a baseline row: hand-made systems, sacrebleu's command line, seeds, pn-results."""
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from pn_fairseq.evaluation import results, scoring, significance
from pn_fairseq.cli import results as results_cli
from pn_fairseq.cli import row_results

SACREBLEU = Path(sys.executable).parent / "sacrebleu"
VOCAB = [f"w{i}" for i in range(25)] + [",", "."]


def corpus(seed=0, n=150):
    rng = random.Random(seed)
    return [" ".join(rng.choice(VOCAB) for _ in range(rng.randint(4, 16))) for _ in range(n)]


def perturb(lines, p, seed):
    rng = random.Random(seed)
    out = []
    for line in lines:
        words = [w if rng.random() > p else rng.choice(VOCAB) for w in line.split()]
        out.append(" ".join(words[: max(1, len(words) - (rng.random() < p))]))
    return out


def test_identical_systems():
    refs = corpus()
    hyps = perturb(refs, 0.3, 1)
    r = significance.paired_bootstrap(hyps, list(hyps), refs)
    assert r.delta == 0 and (r.ci_low, r.ci_high) == (0.0, 0.0)
    assert r.p_value == 1.0 and not r.significant
    # sacrebleu's own number for this degenerate case (no resampled difference exceeds 0).
    assert r.p_value_sacrebleu == pytest.approx(1 / 1001)
    assert r.baseline_bleu == r.system_bleu == pytest.approx(scoring.sacrebleu_tokenized(hyps, refs)[0].score)


def test_exact_match_against_imperfect_system():
    refs = corpus()
    r = significance.paired_bootstrap(perturb(refs, 0.3, 1), refs, refs)
    assert r.system_bleu == pytest.approx(100.0)
    assert r.delta > 20 and r.p_value < 0.01 and r.significant
    assert 0 < r.ci_low <= r.delta <= r.ci_high
    # and the other way round: the same p, the opposite sign
    back = significance.paired_bootstrap(refs, perturb(refs, 0.3, 1), refs)
    assert back.delta == pytest.approx(-r.delta) and back.p_value < 0.01 and back.ci_high < 0


def test_close_systems_are_not_significant():
    refs = corpus()
    r = significance.paired_bootstrap(perturb(refs, 0.3, 1), perturb(refs, 0.3, 2), refs)
    assert r.p_value > 0.05 and not r.significant
    assert r.ci_low < 0 < r.ci_high


def test_equals_sacrebleu_command_line(tmp_path):
    refs = corpus()
    base, system = perturb(refs, 0.3, 1), perturb(refs, 0.25, 2)
    for name, lines in (("ref", refs), ("base", base), ("sys", system)):
        (tmp_path / f"{name}.txt").write_text("".join(line + "\n" for line in lines))
    env = {k: v for k, v in os.environ.items() if k != "SACREBLEU_SEED"}
    proc = subprocess.run([str(SACREBLEU), "ref.txt", "-i", "base.txt", "sys.txt", "-m", "bleu", "--paired-bs",
                           "--paired-bs-n", "1000", "-tok", "none", "--format", "json"],
                          cwd=tmp_path, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    cli_base, cli_sys = (entry["BLEU"] for entry in json.loads(proc.stdout))
    ours = significance.paired_bootstrap(base, system, refs)
    assert 0.001 < cli_sys["p_value"] < 0.5  # a case where the test has something to say
    assert ours.baseline_bleu == pytest.approx(cli_base["score"], abs=1e-9)
    assert ours.system_bleu == pytest.approx(cli_sys["score"], abs=1e-9)
    assert ours.p_value_sacrebleu == pytest.approx(cli_sys["p_value"], abs=1e-12)
    assert (ours.system_mean, ours.system_ci) == pytest.approx((cli_sys["mean"], cli_sys["ci"]), abs=1e-9)
    assert (ours.baseline_mean, ours.baseline_ci) == pytest.approx((cli_base["mean"], cli_base["ci"]), abs=1e-9)
    # SACREBLEU_SEED in the environment does not move the fixed seed.
    os.environ["SACREBLEU_SEED"] = "7"
    try:
        assert significance.paired_bootstrap(base, system, refs).p_value == ours.p_value
    finally:
        del os.environ["SACREBLEU_SEED"]


@pytest.mark.parametrize("p, seed", [(0.22, 5)])
def test_p_value_is_twice_the_share_of_resamples_across_zero(p, seed):
    """Recomputed here from sacrebleu's draw (numpy default_rng(seed).choice(n, (N, n))) and
    sacrebleu.corpus_bleu on every resample (300 resamples, for time)."""
    import numpy as np
    import sacrebleu

    refs = corpus()
    base, system = perturb(refs, 0.3, 1), perturb(refs, p, seed)
    ours = significance.paired_bootstrap(base, system, refs, n_samples=300)
    idxs = np.random.default_rng(significance.SEED).choice(len(refs), size=(300, len(refs)), replace=True)
    bleu = lambda lines, i: sacrebleu.corpus_bleu([lines[k] for k in i], [[refs[k] for k in i]], tokenize="none").score
    diffs = np.sort([bleu(system, i) - bleu(base, i) for i in idxs])
    against = int(np.sum(np.sign(ours.delta) * diffs <= 0))
    assert ours.p_value == pytest.approx(min(1.0, 2 * (against + 1) / 301))
    assert (ours.ci_low, ours.ci_high) == pytest.approx((diffs[300 // 40], diffs[300 - 300 // 40 - 1]), abs=1e-3)


def test_significant_only_where_the_interval_leaves_out_zero():
    refs = corpus()
    base = perturb(refs, 0.3, 1)
    runs = {(p, seed): significance.paired_bootstrap(base, perturb(refs, p, seed), refs)
            for p, seed in [(0.22, 2), (0.23, 3), (0.24, 3), (0.25, 3), (0.29, 2)]}
    for r in runs.values():
        assert (r.p_value < 0.05) <= (r.ci_low > 0 or r.ci_high < 0)
    # sacrebleu's p counts one tail in effect: it calls this difference significant, whose
    # 95% interval holds zero; the two-sided p does not
    r = runs[(0.24, 3)]
    assert r.p_value_sacrebleu < 0.05 <= r.p_value and r.ci_low < 0 < r.ci_high
    assert [r.significant for r in runs.values()] == [True, True, False, False, False]


# ------------------------------------------------------------------------------------------
# Runs on disk: generate-test.txt -> texts -> results.json -> pn-results


def write_generate(path, hyps, refs):
    """A fairseq-generate output, sentences out of order, with fairseq's BLEU4 line."""
    order = list(range(len(refs)))
    random.Random(3).shuffle(order)
    lines = []
    for i in order:
        lines += [f"S-{i}\tsource {i}", f"T-{i}\t{refs[i]}", f"H-{i}\t-0.5\t{hyps[i]}", f"D-{i}\t-0.5\t{hyps[i]}",
                  f"P-{i}\t-0.1 -0.2"]
    bleu = scoring.fairseq_bleu(hyps, refs).score
    lines.append(f"2026-01-01 | INFO | fairseq_cli.generate | Generate test with beam=5: BLEU4 = {bleu:.2f}, "
                 "1/2/3/4 (BP=1.000, ratio=1.000, syslen=1, reflen=1)")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def make_run(run_dir, row, hyps, refs, seed=None, dataset="multi30k", texts=True):
    """A finished run as the row scripts leave it (texts written by row_results write)."""
    gen = run_dir / "generate-test.txt"
    write_generate(gen, hyps, refs)
    scores = scoring.score_generate_output(str(gen), expected_sentences=len(refs))
    (run_dir / "scores.json").write_text(json.dumps(scores))
    (run_dir / "checkpoint_last.pt").write_bytes(b"")
    argv = ["write", "--scores", str(run_dir / "scores.json"), "--row", row, "--dataset", dataset,
            "--last-checkpoint", str(run_dir / "checkpoint_last.pt"), "--wall-time", "600",
            "--checkpoint", "ckpt.pt", "--run-dir", str(run_dir), "--beam", "5", "--lenpen", "1.0",
            "--output", str(run_dir / "results.json")]
    if seed is not None:
        argv += ["--seed", str(seed)]
    if texts:
        argv += ["--gen-output", str(gen)]
    return argv


@pytest.fixture
def write_run(monkeypatch, capsys):
    # checkpoint_progress would torch.load the (empty) checkpoint: 600 updates for every run.
    monkeypatch.setattr(row_results, "checkpoint_progress", lambda path: (600, None))

    def write(run_dir, row, hyps, refs, **kw):
        row_results.main(make_run(run_dir, row, hyps, refs, **kw))
        capsys.readouterr()
        return json.loads((run_dir / "results.json").read_text())
    return write


def test_row_results_writes_sorted_texts(tmp_path, write_run):
    refs = corpus(n=40)
    hyps = perturb(refs, 0.3, 1)
    result = write_run(tmp_path / "run", "pn", hyps, refs, seed=4)
    assert result["seed"] == 4 and result["texts"] == {"hypotheses": "test.hyp.txt", "references": "test.ref.txt"}
    assert (tmp_path / "run" / "test.hyp.txt").read_text().splitlines() == hyps
    assert (tmp_path / "run" / "test.ref.txt").read_text().splitlines() == refs
    assert not [p for p in (tmp_path / "run").iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("clock, expected", [(2264.71, 2264.7), (None, 600.0)])
def test_wall_time_counts_every_resumed_part(tmp_path, capsys, clock, expected):
    """A run interrupted at update 369 and resumed: the driver's stopwatch (--wall-time 600)
    saw only the last part; fairseq's clock in the checkpoint saw all of it."""
    import torch

    refs = corpus(n=20)
    argv = make_run(tmp_path / "run", "pn", refs, refs)
    extra = {} if clock is None else {"previous_training_time": clock}
    torch.save({"model": {}, "optimizer_history": [{"num_updates": 369}, {"num_updates": 600}], "extra_state": extra},
               tmp_path / "run" / "checkpoint_last.pt")
    assert row_results.main(argv) in (0, None)
    capsys.readouterr()
    result = json.loads((tmp_path / "run" / "results.json").read_text())
    assert (result["updates"], result["wall_time_s"]) == (600, expected)


def test_bootstrap_bleu_is_the_rows_bleu(tmp_path, write_run):
    refs = corpus()
    base = write_run(tmp_path / "preln", "preln", perturb(refs, 0.3, 1), refs)
    system = write_run(tmp_path / "pn", "pn", perturb(refs, 0.28, 2), refs)
    definition = significance.DEFINITIONS["tokenized"]
    b_hyps, b_refs = significance.load_test_texts(str(tmp_path / "preln"), definition)
    s_hyps, _ = significance.load_test_texts(str(tmp_path / "pn"), definition)
    r = significance.paired_bootstrap(b_hyps, s_hyps, b_refs)
    # the number in the table (fairseq's BLEU4, two decimals) is the bootstrap's BLEU
    assert round(r.baseline_bleu, 2) == base["bleu_main"] and round(r.system_bleu, 2) == system["bleu_main"]
    assert r.baseline_bleu == pytest.approx(base["bleu"]["sacrebleu_tok_none"], abs=1e-4)


def test_wmt_definitions(tmp_path):
    refs = ["die Stadt-Mauer ist alt .", "ein Haus-Boot"] * 30
    hyps = perturb(refs, 0.2, 1)
    gen = tmp_path / "generate-test.txt"
    write_generate(gen, hyps, refs)
    raw = tmp_path / "raw.de"
    raw.write_text("".join(scoring.detokenize([r], "de")[0] + "\n" for r in refs))
    names = significance.write_test_texts(str(tmp_path), str(gen), str(raw), "de")
    assert names[2:] == ["test.hyp.detok.txt", "test.ref.raw.txt"]
    scores = scoring.score_generate_output(str(gen), "wmt", str(raw), "de")
    result = {"bleu": scores["bleu"]}
    defs = significance.definitions_for(result)
    assert [d.name for d in defs] == ["compound_split", "detok"]
    for d in defs:
        h, r = significance.load_test_texts(str(tmp_path), d)
        assert d.metric().corpus_score(h, [r]).score == pytest.approx(d.reported(result), abs=1e-4)


def three_seed_tree(root, write_run, system_p=(0.27, 0.29, 0.26)):
    refs = corpus()
    for k in (1, 2, 3):
        write_run(root / "preln" / f"seed{k}", "preln", perturb(refs, 0.3, 10 + k), refs, seed=k)
        write_run(root / "pn" / f"seed{k}", "pn", perturb(refs, system_p[k - 1], 20 + k), refs, seed=k)
        write_run(root / "bn" / f"seed{k}", "bn", perturb(refs, 0.6, 30 + k), refs, seed=k)
    return refs


def test_compare_dataset_per_seed_and_pooled(tmp_path, write_run):
    refs = three_seed_tree(tmp_path, write_run)
    groups = results.collect([str(tmp_path)])
    report = significance.compare_dataset(groups, "multi30k", "preln")
    rows = report["definitions"]["tokenized"]["rows"]
    assert set(rows) == {"pn", "bn"} and report["notes"] == []
    bn = rows["bn"]
    assert [p["seed"] for p in bn["pairs"]] == [1, 2, 3] and bn["pooled"]["seeds"] == [1, 2, 3]
    assert all(p["significant"] and p["delta"] < 0 for p in bn["pairs"]) and bn["pooled"]["p_value"] < 0.01
    # each pair is the bootstrap of that seed pair; pooled is the mean of the pairs' differences
    read = lambda d: (d / "test.hyp.txt").read_text().splitlines()
    pair2 = significance.paired_bootstrap(read(tmp_path / "preln/seed2"), read(tmp_path / "pn/seed2"), refs)
    assert rows["pn"]["pairs"][1]["delta"] == pytest.approx(pair2.delta) and rows["pn"]["pairs"][1]["p_value"] == pytest.approx(pair2.p_value)
    bleu = lambda d: scoring.sacrebleu_tokenized(read(d), refs)[0].score
    deltas = [bleu(tmp_path / f"pn/seed{k}") - bleu(tmp_path / f"preln/seed{k}") for k in (1, 2, 3)]
    assert rows["pn"]["pooled"]["delta"] == pytest.approx(sum(deltas) / 3, abs=1e-9)
    assert rows["pn"]["pooled"]["sentences"] == 3 * len(refs)


def test_pooled_delta_is_the_mean_of_the_seed_pairs_where_lengths_differ():
    """Seed 1 writes short outputs, seed 2 long ones (as on Multi30k): the pooled Δ is the mean
    of the two pairs' Δ, the difference of the rows' mean BLEU, not the Δ of the concatenation,
    whose one brevity penalty for both seeds puts it elsewhere."""
    refs = corpus(n=200)
    rng = random.Random(3)
    short = lambda lines, k: [" ".join(line.split()[: max(1, len(line.split()) - k)]) for line in lines]
    long = lambda lines: [line + " " + " ".join(rng.choice(VOCAB) for _ in range(4)) for line in lines]
    pairs = [(short(perturb(refs, 0.30, 1), 3), short(perturb(refs, 0.25, 2), 2), refs),
             (long(perturb(refs, 0.30, 3)), long(perturb(refs, 0.25, 4)), refs)]
    bleu = lambda hyps: scoring.sacrebleu_tokenized(hyps, refs * (len(hyps) // len(refs)))[0].score
    per_pair = [bleu(s) - bleu(b) for b, s, _ in pairs]
    pooled = significance.pooled_bootstrap(pairs)
    assert pooled.delta == pytest.approx(sum(per_pair) / 2, abs=1e-9)
    assert pooled.baseline_bleu == pytest.approx((bleu(pairs[0][0]) + bleu(pairs[1][0])) / 2, abs=1e-9)
    concatenated = bleu(pairs[0][1] + pairs[1][1]) - bleu(pairs[0][0] + pairs[1][0])
    assert abs(concatenated - pooled.delta) > 0.5  # the old test's number: not what the table's means differ by
    assert pooled.ci_low <= pooled.delta <= pooled.ci_high and pooled.sentences == 2 * len(refs)


def test_pooled_with_one_pair_or_copies_of_it_is_sacrebleus_paired_test():
    refs = corpus()
    base, system = perturb(refs, 0.3, 1), perturb(refs, 0.22, 2)
    single = significance.paired_bootstrap(base, system, refs)  # p checked against sacrebleu's own there
    for k in (1, 3):
        pooled = significance.pooled_bootstrap([(base, system, refs)] * k)
        assert pooled.delta == pytest.approx(single.delta, abs=1e-9)
        assert pooled.p_value == pytest.approx(single.p_value)
        assert (pooled.ci_low, pooled.ci_high) == pytest.approx((single.ci_low, single.ci_high))
        assert (pooled.system_mean, pooled.system_ci) == pytest.approx((single.system_mean, single.system_ci))
    same = significance.pooled_bootstrap([(base, list(base), refs)] * 2)
    assert same.delta == 0 and same.p_value == 1.0 and (same.ci_low, same.ci_high) == (0.0, 0.0)


def test_pooling_refuses_seed_pairs_of_different_test_sets():
    refs, other = corpus(), corpus(seed=5)
    with pytest.raises(significance.SignificanceError, match="different references: not one test set"):
        significance.pooled_bootstrap([(refs, refs, refs), (other, other, other)])
    with pytest.raises(significance.SignificanceError, match="no seed pairs"):
        significance.pooled_bootstrap([])


def test_runs_without_texts_get_them_from_generate_output(tmp_path, write_run):
    refs = corpus(n=60)
    write_run(tmp_path / "preln", "preln", perturb(refs, 0.3, 1), refs, texts=False)
    write_run(tmp_path / "pn", "pn", refs, refs, texts=False)
    assert not (tmp_path / "pn" / "test.hyp.txt").exists()
    report = significance.compare_dataset(results.collect([str(tmp_path)]), "multi30k", "preln")
    assert report["definitions"]["tokenized"]["rows"]["pn"]["pooled"]["significant"]
    assert (tmp_path / "pn" / "test.hyp.txt").read_text().splitlines() == refs
    assert (tmp_path / "preln" / "test.ref.txt").read_text().splitlines() == refs


def test_stale_texts_and_other_test_sets_are_not_compared(tmp_path, write_run):
    refs = corpus(n=60)
    write_run(tmp_path / "preln", "preln", perturb(refs, 0.3, 1), refs)
    write_run(tmp_path / "pn", "pn", perturb(refs, 0.3, 2), refs)
    (tmp_path / "pn" / "test.hyp.txt").write_text("".join(r + "\n" for r in refs))  # not what was scored
    other = corpus(seed=5, n=60)
    write_run(tmp_path / "bn", "bn", perturb(other, 0.3, 3), other)
    report = significance.compare_dataset(results.collect([str(tmp_path)]), "multi30k", "preln")
    assert report["definitions"]["tokenized"]["rows"] == {}
    notes = "\n".join(report["notes"])
    assert "stale texts" in notes and str(tmp_path / "pn") in notes
    assert "bn seed" in notes and "references differ" in notes


def test_pn_results_table_and_json(tmp_path, write_run, capsys):
    three_seed_tree(tmp_path / "runs", write_run)
    out_json = tmp_path / "summary.json"
    assert results_cli.main([str(tmp_path / "runs"), "--json", str(out_json)]) == 0
    text = capsys.readouterr().out
    assert "### Multi30k: seeds" in text
    assert "### Multi30k: paired bootstrap against preln (tokenized BLEU (sacrebleu tokenize=none))" in text
    bn_line = next(line for line in text.splitlines() if line.startswith("| bn | 1, 2, 3 (pooled) |"))
    assert "*" in bn_line.split("|")[3]  # significant, marked
    summary = json.loads(out_json.read_text())
    preln = next(r for r in summary["rows"] if r["row"] == "preln")
    assert [s["seed"] for s in preln["seeds"]] == [1, 2, 3] and preln["n_seeds"] == 3 and preln["complete"]
    assert preln["mean"] == pytest.approx(sum(s["bleu"] for s in preln["seeds"]) / 3)
    assert set(summary["significance"][0]["definitions"]["tokenized"]["rows"]) == {"pn", "bn"}
    # --baseline picks another row; --no-significance leaves the tests out
    assert results_cli.main([str(tmp_path / "runs"), "--baseline", "bn"]) == 0
    assert "paired bootstrap against bn" in capsys.readouterr().out
    assert results_cli.main([str(tmp_path / "runs"), "--no-significance"]) == 0
    assert "paired bootstrap" not in capsys.readouterr().out
    with pytest.raises(SystemExit):
        results_cli.main([str(tmp_path / "runs"), "--baseline", "ln"])
    assert "unknown row 'ln'" in capsys.readouterr().err
