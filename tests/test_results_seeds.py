"""Seeds: the row driver's SEEDS, grouping runs per row in pn-results, missing and partial seeds, pn-plot --bleu."""
import json
import os
import statistics
import subprocess

import pytest

from conftest import BIN, REPO
from pn_fairseq.evaluation import results
from pn_fairseq.cli import plot
from pn_fairseq.cli import results as results_cli
from test_results import write_result


def seed_tree(root, bleus):
    """{row: {seed: bleu}} -> <root>/<row>/seed<k>/results.json (no 'seed' key: from the directory name)."""
    for row, seeds in bleus.items():
        for seed, bleu in seeds.items():
            write_result(root / row / f"seed{seed}", row, "multi30k", bleu)


def test_mean_std_and_each_seed(tmp_path, capsys):
    seed_tree(tmp_path, {"preln": {1: 31.5, 2: 32.0, 3: 31.9}, "pn": {1: 32.2, 2: 31.7, 3: 32.6}})
    groups = results.collect([str(tmp_path)])
    preln = groups[("preln", "multi30k")]
    assert preln.seed_list() == [1, 2, 3] and preln.bleus == [31.5, 32.0, 31.9] and preln.complete
    assert preln.mean == pytest.approx(31.8) and preln.std == pytest.approx(statistics.stdev([31.5, 32.0, 31.9]))
    lo, hi = preln.ci95
    assert hi - preln.mean == pytest.approx(4.302653 * preln.std / 3 ** 0.5, rel=1e-5)  # t(0.975, 2)
    out = tmp_path / "s.json"
    assert results_cli.main([str(tmp_path), "--json", str(out), "--no-significance"]) == 0
    text = capsys.readouterr().out
    assert "| Transformer-LN (Pre-LN) | 31.80 ± 0.26 [3 seeds] |" in text
    assert "| preln | 3 | 31.80 ± 0.26 | [31.14, 32.46] | 1: 31.50, 2: 32.00, 3: 31.90 |" in text
    pn = next(r for r in json.loads(out.read_text())["rows"] if r["row"] == "pn")
    assert [(s["seed"], s["bleu"]) for s in pn["seeds"]] == [(1, 32.2), (2, 31.7), (3, 32.6)]
    assert pn["n_seeds"] == 3 and pn["std"] == pytest.approx(statistics.stdev([32.2, 31.7, 32.6]))


def test_missing_and_unfinished_seeds_are_reported_not_averaged(tmp_path, capsys):
    seed_tree(tmp_path, {"preln": {1: 31.0, 2: 32.0, 3: 33.0}, "pn": {1: 30.0, 2: 34.0}, "bn": {1: 29.0}})
    # pn seed 3 is still training; bn seed 2 trained but was never scored; bn seed 3 never started
    (tmp_path / "pn" / "seed3").mkdir()
    (tmp_path / "pn" / "seed3" / "train.log").write_text(
        '2026 | INFO | train_inner | {"epoch": 2, "loss": "5.1", "num_updates": "350"}\n')
    (tmp_path / "bn" / "seed2").mkdir()
    (tmp_path / "bn" / "seed2" / "train.done").write_text("fairseq-train x --seed 2\n900\n")
    groups = results.collect([str(tmp_path)])
    pn, bn = groups[("pn", "multi30k")], groups[("bn", "multi30k")]
    assert pn.bleus == [30.0, 34.0] and pn.mean == 32.0 and not pn.complete
    assert [(u.seed, u.state) for u in pn.unfinished] == [(3, "training or stopped (no train.done, last logged update 350)")]
    assert pn.missing_seeds == [] and pn.expected == 3
    assert [(u.seed, u.state) for u in bn.unfinished] == [(2, "trained, not scored (no results.json)")]
    assert bn.missing_seeds == [3] and bn.n == 1 and bn.std is None and bn.ci95 is None
    assert groups[("preln", "multi30k")].complete

    assert results_cli.main([str(tmp_path), "--no-significance"]) == 0
    text = capsys.readouterr().out
    assert "| Transformer-PN | 32.00 ± 2.83 [2 of 3 seeds] |" in text
    assert "| Transformer-BN | 29.00 [1 of 3 seeds] |" in text
    assert "| pn | 2 of 3 | 32.00 ± 2.83 |" in text and "1: 30.00, 2: 34.00, 3: unfinished |" in text
    assert "| bn | 1 of 3 | 29.00 | — | 1: 29.00, 2: unfinished, 3: missing |" in text
    assert f"- pn seed 3: training or stopped (no train.done, last logged update 350): {tmp_path / 'pn' / 'seed3'}" in text
    assert "- bn: no run for seed(s) 3" in text


def test_seeds_flag_marks_the_seeds_no_row_has_run_yet(tmp_path, capsys):
    seed_tree(tmp_path, {"preln": {1: 31.0, 2: 32.0}, "bn": {1: 29.0}})
    groups = results.collect_runs([str(tmp_path)], seeds=(1, 2, 3))[0]
    assert groups[("preln", "multi30k")].missing_seeds == [3] and groups[("bn", "multi30k")].missing_seeds == [2, 3]
    assert results_cli.main([str(tmp_path), "--no-significance", "--seeds", "1,2,3"]) == 0
    text = capsys.readouterr().out
    assert "| Transformer-LN (Pre-LN) | 31.50 ± 0.71 [2 of 3 seeds] |" in text
    assert "| Transformer-BN | 29.00 [1 of 3 seeds] |" in text and "- bn: no run for seed(s) 2, 3" in text
    # without it, only the seeds some row has are expected
    assert results_cli.main([str(tmp_path), "--no-significance"]) == 0
    assert "| Transformer-BN | 29.00 [1 of 2 seeds] |" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        results_cli.main([str(tmp_path), "--seeds", "1,two"])
    assert "--seeds: '1,two' is not a comma-separated list of seeds, e.g. 1,2,3" in capsys.readouterr().err


def test_seed_sources_and_duplicates(tmp_path):
    # results.json's seed, then train.done's --seed, then the directory name
    write_result(tmp_path / "a", "pn", "iwslt14", 35.0, seed=7)
    write_result(tmp_path / "b", "pn", "iwslt14", 35.5)
    (tmp_path / "b" / "train.done").write_text("fairseq-train data --arch x --seed 8 --max-update 5\n120\n")
    write_result(tmp_path / "seed9", "pn", "iwslt14", 36.0)
    group = results.collect([str(tmp_path)])[("pn", "iwslt14")]
    assert group.seed_list() == [7, 8, 9]
    # the same seed twice is an error naming both files
    write_result(tmp_path / "c", "pn", "iwslt14", 34.0, seed=8)
    with pytest.raises(results.ResultsError, match="seed 8") as info:
        results.collect([str(tmp_path)])
    assert str(tmp_path / "b" / "results.json") in str(info.value) and str(tmp_path / "c" / "results.json") in str(info.value)


def test_archived_in_progress_record_is_an_unfinished_seed_not_a_missing_one(tmp_path, capsys):
    # results/ holds no train.log of a run under way, only scripts/archive_results.py's record
    seed_tree(tmp_path, {"preln": {1: 40.6, 2: 41.4}, "pn": {1: 41.3}, "bn": {1: 40.7}})
    (tmp_path / "pn" / "seed2").mkdir()
    (tmp_path / "pn" / "seed2" / "in-progress.json").write_text(json.dumps(
        {"run_dir": "checkpoints/x/pn/seed2", "epoch": 17, "num_updates": 2057, "checkpoint_last": True,
         "recorded": "2026-12-07 15:14"}))
    (tmp_path / "bn" / "seed2").mkdir()
    (tmp_path / "bn" / "seed2" / "in-progress.json").write_text("{not json")
    groups = results.collect_runs([str(tmp_path)])[0]
    pn, bn = groups[("pn", "multi30k")], groups[("bn", "multi30k")]
    assert [(u.seed, u.state) for u in pn.unfinished] == [
        (2, "not finished when archived 2026-12-07 15:14 (at epoch 17, update 2057) (in-progress.json)")]
    assert pn.missing_seeds == [] and pn.bleus == [41.3]
    assert [(u.seed, u.state) for u in bn.unfinished] == [
        (2, "started, not finished when archived (in-progress.json unreadable)")]
    assert results_cli.main([str(tmp_path), "--no-significance"]) == 0
    text = capsys.readouterr().out
    assert "| pn | 1 of 2 | 41.30 | — | 1: 41.30, 2: unfinished |" in text and "- pn: no run for seed(s) 2" not in text


def test_unclaimed_unfinished_run_is_listed(tmp_path, capsys):
    write_result(tmp_path / "preln", "preln", "multi30k", 31.0)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "train.log").write_text("nothing yet\n")
    assert results_cli.main([str(tmp_path), "--no-significance"]) == 0
    assert f"- {tmp_path / 'other'}: training or stopped (no train.done)" in capsys.readouterr().out


def test_plot_bleu_per_row(tmp_path, capsys):
    seed_tree(tmp_path / "runs", {"preln": {1: 31.5, 2: 32.0, 3: 31.9}, "pn": {1: 32.2}})
    (tmp_path / "runs" / "pn" / "seed2").mkdir()
    (tmp_path / "runs" / "pn" / "seed2" / "train.log").write_text("")
    per = results.bleu_per_row(results.collect([str(tmp_path / "runs")]))
    assert [(e["row"], e["seeds"], e["complete"]) for e in per["multi30k"]] == [("preln", [1, 2, 3], True), ("pn", [1], False)]
    assert per["multi30k"][1]["ci95"] is None
    out = tmp_path / "bleu.png"
    assert plot.main(["--bleu", str(tmp_path / "runs"), "--output", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = capsys.readouterr().out
    assert "multi30k preln: 3 seed(s), mean 31.80, 95% CI [31.14, 32.46]" in printed
    assert "multi30k pn: 1 seed(s), mean 32.20 (partial)" in printed
    # --seeds: preln's three seeds are not all that is expected when four are asked for
    assert plot.main(["--bleu", str(tmp_path / "runs"), "--seeds", "1,2,3,4", "--output", str(out)]) == 0
    assert "multi30k preln: 3 seed(s), mean 31.80, 95% CI [31.14, 32.46] (partial)" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------
# The row driver


def dry(env):
    e = dict(os.environ, DRY_RUN="1", CPU="1", PATH=f"{BIN}:{os.environ['PATH']}", **env)
    e.pop("SEED", None) if "SEED" not in env else None
    return subprocess.run(["bash", str(REPO / "scripts" / "multi30k" / "pn.sh")], capture_output=True, text=True,
                          env=e, cwd=REPO)


def test_seeds_run_one_plain_run_per_seed(tmp_path):
    base = tmp_path / "pn"
    proc = dry({"SEEDS": "3,1", "SAVE_DIR": str(base)})
    assert proc.returncode == 0, proc.stderr
    expected = ""
    for k in (3, 1):
        plain = dry({"SEED": str(k), "SAVE_DIR": str(base / f"seed{k}")})
        assert plain.returncode == 0, plain.stderr
        assert f"--seed {k} " in plain.stdout and f"{base}/seed{k}/results.json" in plain.stdout
        expected += plain.stdout
    assert proc.stdout == expected  # the same commands, train.done signatures included
    assert f"seed 3 of 3,1 -> {base}/seed3" in proc.stderr
    assert not base.exists()  # a dry run writes nothing
    # default run directory: checkpoints/<dataset>/<row>/seed<k>
    default = dry({"SEEDS": "2"})
    assert f"--save-dir {REPO}/checkpoints/multi30k/pn/seed2 " in default.stdout


@pytest.mark.parametrize("env, message", [
    ({"SEEDS": "1,1"}, "seed 1 is given twice"),
    ({"SEEDS": "1,x"}, "expected positive integers"),
    ({"SEEDS": "0"}, "expected positive integers"),
    ({"SEEDS": "1,,2"}, "expected positive integers"),
    ({"SEEDS": "1,2", "SEED": "3"}, "use SEEDS alone"),
])
def test_seeds_validation(env, message):
    proc = dry(env)
    assert proc.returncode != 0 and message in proc.stderr and proc.stdout == ""


def test_seeds_table_has_each_runs_validation_loss_at_its_last_update(tmp_path, capsys):
    """The length-independent number beside BLEU: each run's train.log validation at the update its
    checkpoint holds (1000 here), not an earlier one; a run without a log shows a dash."""
    seed_tree(tmp_path, {"preln": {1: 31.0, 2: 32.0}, "pn": {1: 30.0, 2: 34.0}})
    losses = {("preln", 1): 4.687, ("preln", 2): 4.713, ("pn", 1): 4.75}
    for (row, seed), loss in losses.items():
        (tmp_path / row / f"seed{seed}" / "train.log").write_text(
            '2026 | INFO | valid | {"epoch": 1, "valid_loss": "6.5", "valid_num_updates": "500"}\n'
            f'2026 | INFO | valid | {{"epoch": 2, "valid_loss": "{loss}", "valid_num_updates": "1000"}}\n')
    assert results_cli.main([str(tmp_path), "--no-significance"]) == 0
    rows = {line.split("|")[1].strip(): line.split("|")[6].strip() for line in capsys.readouterr().out.splitlines()
            if line.startswith("| preln | 2 |") or line.startswith("| pn | 2 |")}
    both = [4.687, 4.713]
    assert rows["preln"] == f"{statistics.fmean(both):.3f} ± {statistics.stdev(both):.3f} (1: 4.687, 2: 4.713)"
    assert rows["pn"] == "4.750 (1: 4.750, 2: —)"
