"""pn-results: the averaged checkpoint against the last one, where runs scored both (SCORE_LAST=1)."""
import json

import pytest

from pn_fairseq.cli import results as results_cli
from test_results import write_result

# (averaged BLEU, last-checkpoint BLEU or None: not scored) per seed
RUNS = {"preln": {1: (33.0, 32.0), 2: (34.0, 34.5), 3: (35.5, 34.0)},
        "pn": {1: (30.0, 29.0), 2: (31.0, 31.5), 3: (32.0, None)},
        "bn": {1: (29.0, None), 2: (28.0, None)}}


def tree(root, runs=RUNS):
    for row, seeds in runs.items():
        for seed, (averaged, last) in seeds.items():
            extra = {"averaged_checkpoints": 5, "seed": seed}
            if last is not None:
                extra["last_checkpoint"] = {"bleu": {"fairseq": last, "sacrebleu_tok_none": last, "compound_split": None,
                                                     "sacrebleu_detok": None}, "bleu_main": last}
            write_result(root / row / f"seed{seed}", row, "multi30k", averaged, **extra)


def test_averaged_against_last_mean_and_std_over_seeds(tmp_path, capsys):
    tree(tmp_path)
    out = tmp_path / "s.json"
    assert results_cli.main([str(tmp_path), "--no-significance", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "### Multi30k: averaged checkpoint against the last one" in text
    # By hand. preln: averaged 33, 34, 35.5 (mean 34.17, squared deviations 1.3611 + 0.0278 + 1.7778 over 2:
    # std 1.26); last 32, 34.5, 34 (33.50, (2.25 + 1 + 0.25) / 2: 1.32); differences 1, -0.5, 1.5 (0.67,
    # (0.1111 + 1.3611 + 0.6944) / 2: 1.04).
    assert ("| preln | 3 | 5 | 34.17 ± 1.26 | 33.50 ± 1.32 | +0.67 ± 1.04 | "
            "1: 33.00 / 32.00, +1.00; 2: 34.00 / 34.50, -0.50; 3: 35.50 / 34.00, +1.50 |") in text
    # pn: seed 3 scored no last checkpoint: the two seeds that did (30, 31 / 29, 31.5; differences 1, -0.5)
    assert ("| pn | 2 | 5 | 30.50 ± 0.71 | 30.25 ± 1.77 | +0.25 ± 1.06 | "
            "1: 30.00 / 29.00, +1.00; 2: 31.00 / 31.50, -0.50; 3: last not scored |") in text
    table = text.split("averaged checkpoint against the last one\n\n")[1].split("\n\n")[0].splitlines()
    assert [line.split(" | ")[0] for line in table] == ["| row", "|---|---|---|---|---|---|---|", "| preln", "| pn"]
    assert "- no scored last checkpoint: bn (averaged fewer than 2 checkpoints, or ran without SCORE_LAST=1)" in text
    rows = json.loads(out.read_text())["averaging"]["multi30k"]
    assert [r["row"] for r in rows] == ["preln", "pn"]
    assert rows[0]["delta"]["mean"] == pytest.approx(2 / 3) and rows[0]["delta"]["std"] == pytest.approx(1.0408, abs=1e-4)
    assert rows[1]["not_scored"] == [3] and [s["delta"] for s in rows[1]["seeds"]] == [1.0, -0.5]


def test_no_table_without_a_scored_last_checkpoint(tmp_path, capsys):
    tree(tmp_path, {"bn": RUNS["bn"], "preln": {1: (33.0, None), 2: (34.0, None)}})
    out = tmp_path / "s.json"
    assert results_cli.main([str(tmp_path), "--no-significance", "--json", str(out)]) == 0
    assert "against the last one" not in capsys.readouterr().out
    assert json.loads(out.read_text())["averaging"] == {}


def test_one_seed_gives_the_difference_without_a_std(tmp_path, capsys):
    tree(tmp_path, {"pn": {1: (30.0, 31.25)}})
    assert results_cli.main([str(tmp_path), "--no-significance"]) == 0
    assert "| pn | 1 | 5 | 30.00 | 31.25 | -1.25 | 1: 30.00 / 31.25, -1.25 |" in capsys.readouterr().out
