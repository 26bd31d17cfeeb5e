"""pn-plot: parsing fairseq-train validation lines and writing the PNG."""
import pytest

from pn_fairseq.evaluation import curves
from pn_fairseq.cli import plot

JSON_LOG = """\
2024-01-01 10:00:00 | INFO | fairseq_cli.train | task: TranslationTask
2024-01-01 10:00:05 | INFO | train_inner | {"epoch": 1, "update": 0.5, "loss": "9.1", "num_updates": "50"}
2024-01-01 10:00:09 | INFO | valid | {"epoch": 1, "valid_loss": "7.25", "valid_nll_loss": "6.5", "valid_ppl": "90.51", "valid_num_updates": "100"}
2024-01-01 10:00:09 | INFO | train | {"epoch": 1, "train_loss": "8.0", "train_num_updates": "100"}
2024-01-01 10:00:20 | INFO | valid | {"epoch": 2, "valid_loss": "6.125", "valid_nll_loss": "5.5", "valid_num_updates": "200", "valid_best_loss": "6.125"}
2024-01-01 10:00:21 | INFO | valid1 | {"epoch": 2, "valid1_loss": "1.0", "valid1_num_updates": "200"}
2024-01-01 11:00:00 | INFO | fairseq_cli.train | resuming: the same update logged again
2024-01-01 11:00:20 | INFO | valid | {"epoch": 2, "valid_loss": "6.0", "valid_nll_loss": "5.25", "valid_num_updates": "200"}
2024-01-01 11:00:30 | INFO | valid | {"epoch": 3, "valid_loss": 5.5, "valid_nll_loss": 4.75, "valid_num_updates": 300}
"""

SIMPLE_LOG = """\
2024-01-01 10:00:05 | INFO | train_inner | epoch 001:     50 / 100 loss=9.1, nll_loss=8.8, num_updates=50
2024-01-01 10:00:09 | INFO | valid | epoch 001 | valid on 'valid' subset | loss 7.5 | nll_loss 6.75 | ppl 107.63 | wps 0 | wpb 86 | bsz 16 | num_updates 100
2024-01-01 10:00:09 | INFO | train | epoch 001 | loss 8.0 | nll_loss 7.9 | num_updates 100 | lr 0.0001
2024-01-01 10:00:20 | INFO | valid | epoch 002 | valid on 'valid' subset | loss 6.5 | nll_loss 5.75 | ppl 53.82 | num_updates 200 | best_loss 6.5
"""


def test_parse_json_log(tmp_path):
    log = tmp_path / "train.log"
    log.write_text(JSON_LOG)
    # The resumed run's second line for update 200 wins; train and valid1 lines are ignored.
    assert curves.parse_validation_log(str(log)) == [(100, 7.25), (200, 6.0), (300, 5.5)]
    assert curves.parse_validation_log(str(log), metric="nll_loss") == [(100, 6.5), (200, 5.25), (300, 4.75)]
    assert curves.parse_validation_log(str(log), metric="loss", subset="valid1") == [(200, 1.0)]


def test_parse_simple_log(tmp_path):
    log = tmp_path / "train.log"
    log.write_text(SIMPLE_LOG)
    assert curves.parse_validation_log(str(log)) == [(100, 7.5), (200, 6.5)]
    assert curves.parse_validation_log(str(log), metric="valid_ppl") == [(100, 107.63), (200, 53.82)]


def test_plot_writes_png(tmp_path, capsys):
    (tmp_path / "run_a").mkdir()
    (tmp_path / "run_a" / "train.log").write_text(JSON_LOG)
    simple = tmp_path / "simple.log"
    simple.write_text(SIMPLE_LOG)
    out = tmp_path / "plots" / "valid_loss.png"
    assert plot.main(["--runs", f"pn={tmp_path / 'run_a'}", f"ln={simple}", "--output", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in out.parent.iterdir() if p.name != "valid_loss.png"]  # no temp file left
    assert "pn: 3 validations" in capsys.readouterr().out


def test_no_validation_lines(tmp_path):
    log = tmp_path / "train.log"
    log.write_text(JSON_LOG.splitlines()[0] + "\n")
    with pytest.raises(SystemExit) as info:
        plot.main(["--runs", f"x={tmp_path}", "--output", str(tmp_path / "p.png")])
    assert str(log) in str(info.value.code) and "no validation lines" in str(info.value.code)
    assert not (tmp_path / "p.png").exists()


def test_missing_metric_and_bad_run_spec(tmp_path):
    log = tmp_path / "train.log"
    log.write_text(JSON_LOG)
    with pytest.raises(curves.LogError, match="none has 'valid_bleu'"):
        curves.parse_validation_log(str(log), metric="bleu")
    with pytest.raises(SystemExit) as info:
        plot.main(["--runs", "no-equals-sign", "--output", str(tmp_path / "p.png")])
    assert info.value.code == 2
