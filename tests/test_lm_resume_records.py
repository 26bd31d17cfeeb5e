"""What a resumed or re-snapshotted language-model run records: its training seconds over all
resumes, and its finished training recognised by settings, not by where the code lives."""
import json
import os
import shlex
import subprocess
import sys

from pn_fairseq.evaluation.lm_results import training_wall
from pn_fairseq.evaluation.mlm_results import read_progress


def _log(path, walls_by_segment):
    lines = []
    for walls in walls_by_segment:
        lines.append("2026 | INFO | fairseq_cli.train | loaded checkpoint (resuming)")
        for k, wall in enumerate(walls, start=1):
            lines.append("2026 | INFO | train_inner | " + json.dumps({"num_updates": str(100 * k), "wall": str(wall)}))
        lines.append("2026 | INFO | train | " + json.dumps({"train_wall": "999999", "train_num_updates": "7"}))
    path.write_text("\n".join(lines) + "\n")


def test_training_seconds_add_up_over_resumes(tmp_path):
    # fairseq's clock restarts in every resumed process: 300 + 250 + 40 seconds
    _log(tmp_path / "train.log", [[100, 200, 300], [50, 250], [40]])
    assert training_wall(str(tmp_path / "train.log")) == 590.0
    assert read_progress(str(tmp_path / "train.log")) == (300, 590.0)
    _log(tmp_path / "one.log", [[100, 200, 300]])
    assert training_wall(str(tmp_path / "one.log")) == 300.0
    (tmp_path / "none.log").write_text("no records\n")
    assert training_wall(str(tmp_path / "none.log")) == 0.0


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
