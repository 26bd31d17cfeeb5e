"""What a resumed or re-snapshotted language-model run records: its training seconds over all
resumes, and its finished training recognised by settings, not by where the code lives."""
import json
import os
import shlex
import subprocess
import sys

from pn_fairseq.evaluation.lm_results import training_wall
from pn_fairseq.evaluation.mlm_results import read_progress


def _log(path, walls_by_segment, first_updates=None):
    """A process per segment, logging every 100 updates; ``first_updates``: each process's first
    logged update (default: a resumed process goes on from the one before)."""
    lines, updates = [], 0
    for i, walls in enumerate(walls_by_segment):
        if first_updates is not None:
            updates = first_updates[i] - 100
        lines.append("2026 | INFO | fairseq_cli.train | loaded checkpoint (resuming)")
        for wall in walls:
            updates += 100
            lines.append("2026 | INFO | train_inner | " + json.dumps({"num_updates": str(updates), "wall": str(wall)}))
        lines.append("2026 | INFO | train | " + json.dumps({"train_wall": "999999", "train_num_updates": "7"}))
    path.write_text("\n".join(lines) + "\n")


def test_training_seconds_add_up_over_resumes(tmp_path):
    # fairseq's clock restarts in every resumed process: 300 + 250 + 40 seconds
    _log(tmp_path / "train.log", [[100, 200, 300], [50, 250], [40]])
    assert training_wall(str(tmp_path / "train.log")) == 590.0
    assert read_progress(str(tmp_path / "train.log")) == (600, 590.0)  # the last update logged
    _log(tmp_path / "one.log", [[100, 200, 300]])
    assert training_wall(str(tmp_path / "one.log")) == 300.0
    (tmp_path / "none.log").write_text("no records\n")
    assert training_wall(str(tmp_path / "none.log")) == 0.0


def test_an_attempt_that_started_over_does_not_count(tmp_path):
    # The Multi30k LM preln seed 1 log: a first process stopped after update 50 (223 s, no
    # checkpoint), the queue started the run over into the same train.log: 4,898 s, not 5,121.
    _log(tmp_path / "over.log", [[223], [100, 4898]], first_updates=[100, 100])
    assert training_wall(str(tmp_path / "over.log")) == 4898.0
    # started over after a resumed pair: both earlier processes are abandoned
    _log(tmp_path / "twice.log", [[100, 200], [300], [50, 60]], first_updates=[100, 300, 100])
    assert training_wall(str(tmp_path / "twice.log")) == 60.0
    # resumed from a checkpoint before the first process's last log: both count
    _log(tmp_path / "resumed.log", [[100, 200, 300], [120]], first_updates=[100, 200])
    assert training_wall(str(tmp_path / "resumed.log")) == 420.0


def _same(done, *command):
    return subprocess.run([sys.executable, "-m", "pn_fairseq.cli.row_results", "same-training", str(done), "--",
                           *command], capture_output=True, text=True)


def test_a_new_code_snapshot_is_the_same_training(tmp_path):
    """The queue's snapshot directory appears in --user-dir and in the data path (a link to the
    checkout's data-bin/): neither is a setting. Any real setting is named."""
    data = tmp_path / "data-bin" / "lm"
    data.mkdir(parents=True)
    snap = tmp_path / "runs" / "snapshots" / "0123456789ab"
    snap.mkdir(parents=True)
    os.symlink(tmp_path / "data-bin", snap / "data-bin")
    old = ["fairseq-train", str(snap / "data-bin" / "lm"), "--user-dir", str(snap / "pn_fairseq"), "--arch",
           "transformer_lm_pn_postln", "--adam-betas", "(0.9, 0.999)", "--dropout", "0.3", "--save-dir", "a"]
    done = tmp_path / "train.done"
    done.write_text(shlex.join(old) + "\n4729\n")  # as the driver's `show` quotes it
    new = ["fairseq-train", str(data), "--user-dir", "/work/main/pn_fairseq", "--arch", "transformer_lm_pn_postln",
           "--adam-betas", "(0.9, 0.999)", "--dropout", "0.3", "--save-dir", "b"]
    proc = _same(done, *new)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = _same(done, *[("0.2" if a == "0.3" else a) for a in new])
    assert proc.returncode == 3
    assert proc.stdout.strip().endswith("(--dropout: 0.3 in the run, 0.2 asked)")
    other = tmp_path / "data-bin" / "other"
    other.mkdir()
    proc = _same(done, *[(str(other) if a == str(data) else a) for a in new])
    assert proc.returncode == 3 and "DATA (the data directory)" in proc.stdout
