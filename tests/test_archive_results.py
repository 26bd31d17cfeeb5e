"""scripts/archive_results.py: the committed copy of finished runs holds what pn-results reads."""
import json
import subprocess
import sys

from conftest import REPO


def test_archive_keeps_results_texts_and_log_records_only(tmp_path):
    run = tmp_path / "src" / "pn" / "seed2"
    run.mkdir(parents=True)
    (run / "results.json").write_text('{"row": "pn"}\n')
    (run / "test.hyp.txt").write_text("a b\n")
    (run / "test.ref.txt").write_text("a c\n")
    (run / "checkpoint_last.pt").write_bytes(b"x" * 100)
    (run / "train.log").write_text("2026 | INFO | fairseq | model dump\n"
                                   '2026 | INFO | train_inner | {"loss": "5"}\n2026 | INFO | valid | {"loss": "4"}\n')
    (tmp_path / "src" / "bn" / "seed1").mkdir(parents=True)  # unfinished: no results.json
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "archive_results.py"), tmp_path / "src", tmp_path / "dst"],
                          capture_output=True, text=True)
    assert proc.returncode == 0 and "1 run(s)" in proc.stdout, proc.stderr
    out = tmp_path / "dst" / "pn" / "seed2"
    assert sorted(p.name for p in out.iterdir()) == ["results.json", "test.hyp.txt", "test.ref.txt", "train.log"]
    assert (out / "train.log").read_text().count("\n") == 2 and "model dump" not in (out / "train.log").read_text()
    assert not (tmp_path / "dst" / "bn").exists()


def test_archive_keeps_language_model_runs(tmp_path):
    """A language-model run (scripts/run_lm_row.sh) has results-lm.json, not results.json: it is
    archived with its fairseq-eval-lm log, and its train.log keeps only the records."""
    run = tmp_path / "src" / "lm-multi30k" / "pn" / "seed1"
    run.mkdir(parents=True)
    (run / "results-lm.json").write_text('{"kind": "lm", "row": "pn"}\n')
    (run / "eval-lm.log").write_text("Loss (base 2): 5.9542, Perplexity: 62.00\n")
    (run / "train.done").write_text("fairseq-train ...\n12.5\n")
    (run / "checkpoint_best.pt").write_bytes(b"x" * 100)
    (run / "train.log").write_text("2026 | INFO | fairseq | model dump\n2026 | INFO | valid | {\"valid_loss\": \"6\"}\n")
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "archive_results.py"), tmp_path / "src", tmp_path / "dst"],
                          capture_output=True, text=True)
    assert proc.returncode == 0 and "1 run(s)" in proc.stdout, proc.stderr
    out = tmp_path / "dst" / "lm-multi30k" / "pn" / "seed1"
    assert sorted(p.name for p in out.iterdir()) == ["eval-lm.log", "results-lm.json", "train.done", "train.log"]
    assert (out / "eval-lm.log").read_text() == "Loss (base 2): 5.9542, Perplexity: 62.00\n"
    assert (out / "train.log").read_text() == '2026 | INFO | valid | {"valid_loss": "6"}\n'


def test_archive_keeps_masked_lm_runs(tmp_path):
    """A BERT run (scripts/run_mlm_row.sh) has results-mlm.json: archived, checkpoints left behind."""
    run = tmp_path / "src" / "bert-multi30k" / "preln-pn" / "seed1"
    run.mkdir(parents=True)
    (run / "results-mlm.json").write_text('{"kind": "mlm", "row": "preln-pn"}\n')
    (run / "checkpoint_last.pt").write_bytes(b"x" * 100)
    (run / "train.log").write_text("2026 | INFO | valid | {\"valid_loss\": \"6\"}\n")
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "archive_results.py"), tmp_path / "src", tmp_path / "dst"],
                          capture_output=True, text=True)
    assert proc.returncode == 0 and "1 run(s)" in proc.stdout, proc.stderr
    out = tmp_path / "dst" / "bert-multi30k" / "preln-pn" / "seed1"
    assert sorted(p.name for p in out.iterdir()) == ["results-mlm.json", "train.log"]


def test_archive_records_unfinished_runs_until_they_finish(tmp_path):
    """A started, unfinished run leaves in-progress.json (how far it got) in the archive, so that a
    new machine can tell it was lost, and train.partial.log (its records so far, which pn-analyze
    epochs reads); archiving it once finished removes both."""
    run = tmp_path / "src" / "multi30k-converged" / "bn" / "seed1"
    run.mkdir(parents=True)
    (run / "checkpoint_last.pt").write_bytes(b"x" * 100)
    (run / "train.cmd").write_text("fairseq-train --warmup-updates 880\n")
    (run / "train.log").write_text(
        "2026 | INFO | fairseq | model dump\n"
        '2026-12-07 10:16:00 | INFO | valid | {"epoch": 16, "valid_loss": "4.1", "valid_num_updates": "1936"}\n'
        '2026-12-07 10:15:00 | INFO | train_inner | {"epoch": 17, "update": 16.5, "num_updates": "1950"}\n')
    early = tmp_path / "src" / "multi30k-converged" / "pn" / "seed2"
    early.mkdir(parents=True)
    (early / "train.log").write_text("2026 | INFO | fairseq | model dump\n")  # stopped before any record

    def archive():
        proc = subprocess.run([sys.executable, str(REPO / "scripts" / "archive_results.py"), tmp_path / "src",
                               tmp_path / "dst"], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    said = archive()
    assert "0 run(s)" in said and "2 unfinished, recorded in in-progress.json" in said
    out = tmp_path / "dst" / "multi30k-converged"
    assert sorted(p.name for p in (out / "bn" / "seed1").iterdir()) == ["in-progress.json", "train.cmd", "train.partial.log"]
    partial = out / "bn" / "seed1" / "train.partial.log"
    assert partial.read_text() == "".join((run / "train.log").read_text().splitlines(keepends=True)[1:])
    from pn_fairseq.analysis.epoch_scores import epoch_scores
    assert [(s["epoch"], s["loss"]) for s in epoch_scores(str(partial))] == [(16, 4.1)]
    assert [p.name for p in (out / "pn" / "seed2").iterdir()] == ["in-progress.json"]  # no record, no log
    rec = json.loads((out / "bn" / "seed1" / "in-progress.json").read_text())
    assert (rec["epoch"], rec["num_updates"], rec["checkpoint_last"]) == (17, 1950, True)
    assert rec["run_dir"] == str(run)
    rec = json.loads((out / "pn" / "seed2" / "in-progress.json").read_text())
    assert (rec["epoch"], rec["num_updates"], rec["checkpoint_last"]) == (None, None, False)
    (run / "results.json").write_text('{"row": "bn"}\n')
    assert "1 run(s)" in archive()
    assert sorted(p.name for p in (out / "bn" / "seed1").iterdir()) == ["results.json", "train.cmd", "train.log"]
    assert (out / "pn" / "seed2" / "in-progress.json").is_file()
