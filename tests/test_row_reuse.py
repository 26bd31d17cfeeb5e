"""Reruns of scripts/run_row.sh: what a run directory may be reused for, continuing a smoke run
to the recipe's updates, one-line refusals that change nothing, the environment checks that come
before anything is created, interruptions, and pn-results marking a run that is not its row's
recipe. Rows run on the conftest toy corpus (synthetic configs, a tiny model via EXTRA_ARGS)."""
import json
import os
import shutil
import signal
import subprocess
import time

import pytest

from conftest import BIN, REPO
from pn_fairseq.evaluation import row_state

# The recipe (configs/synthetic) trains 300 updates; checkpoints at every 50 updates and at the end.
TINY = ("--encoder-layers 1 --decoder-layers 1 --encoder-embed-dim 32 --decoder-embed-dim 32 "
        "--encoder-ffn-embed-dim 64 --decoder-ffn-embed-dim 64 --max-tokens 400 --warmup-updates 2 "
        "--save-interval 1000 --validate-interval 1000 --no-epoch-checkpoints")


def row_env(data_bin, save, **env):
    e = dict(os.environ, DATA=str(data_bin), SAVE_DIR=str(save), CPU="1", EXTRA_ARGS=TINY, ALLOW_BLEU_MISMATCH="1",
             LOG_INTERVAL="1")
    for key in ("MAX_UPDATE", "MAX_EPOCH", "SEED", "SEEDS", "NPROC", "UPDATE_FREQ", "DRY_RUN", "CUDA_VISIBLE_DEVICES"):
        e.pop(key, None)
    e.update(env)
    return e


def run_row(env, **kw):
    return subprocess.run(["bash", str(REPO / "scripts/run_row.sh"), "synthetic", "pn"], capture_output=True,
                          text=True, env=env, **kw)


def one_line(proc):
    """The single stderr line of a refused run."""
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr[-3000:]
    return lines[0]


@pytest.fixture(scope="module")
def smoke(data_bin, tmp_path_factory):
    """A finished smoke run, MAX_UPDATE=6; tests work on copies of it."""
    save = tmp_path_factory.mktemp("smoke") / "run"
    proc = run_row(row_env(data_bin, save, MAX_UPDATE="6"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return save


@pytest.fixture
def copy(smoke, tmp_path):
    """A copy of the smoke run in another directory (the same run: --save-dir is not a setting)."""
    dest = tmp_path / "run"
    shutil.copytree(smoke, dest)
    return dest


def snapshot(save):
    """Every file of a run directory with its bytes."""
    return {p.name: p.read_bytes() for p in save.iterdir()}


def test_smoke_run_records_its_settings(smoke):
    result = json.loads((smoke / "results.json").read_text())
    assert result["updates"] == 6
    assert (result["max_update"], result["recipe_max_update"], result["max_epoch"]) == (6, 300, None)
    assert result["settings_match_recipe"] is False
    assert result["recipe_differences"] == ["MAX_UPDATE=6 (recipe: 300)", f"EXTRA_ARGS={TINY}"]
    assert result["decoding"] == {"beam": 5, "lenpen": 1.0, "average_last": 3, "average_kind": "update",
                                  "scoring": "tokenized"}
    assert result["train_command"] == (smoke / "train.done").read_text().splitlines()[0]
    assert "--max-update 6 --distributed-world-size 1" in result["train_command"]


def test_full_run_after_a_smoke_run_trains_on(data_bin, copy):
    """The issue's case: the full row after MAX_UPDATE=6 must not return the smoke run's BLEU."""
    proc = run_row(row_env(data_bin, copy))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "MAX_UPDATE 6 -> 300: training continues" in proc.stderr and "already finished" not in proc.stderr
    log = (copy / "train.log").read_text()
    assert "Loaded checkpoint" in log and "@ 6 updates)" in log
    result = json.loads((copy / "results.json").read_text())
    assert (result["updates"], result["max_update"], result["recipe_max_update"]) == (300, 300, 300)
    assert result["recipe_differences"] == [f"EXTRA_ARGS={TINY}"]  # the updates are the recipe's now
    assert "--max-update 300 " in (copy / "train.done").read_text().splitlines()[0]
    # and the same command again reuses it
    again = run_row(row_env(data_bin, copy))
    assert again.returncode == 0 and "already finished" in again.stderr
    assert json.loads(again.stdout)["updates"] == 300


@pytest.mark.parametrize("env, named", [
    ({"MAX_UPDATE": "6", "SEED": "2"}, "SEED (--seed): 1 in the run, 2 asked"),
    ({"MAX_UPDATE": "6", "UPDATE_FREQ": "2"}, "UPDATE_FREQ (--update-freq): 1 in the run, 2 asked"),
    ({"MAX_UPDATE": "6", "EXTRA_ARGS": TINY + " --lr 5e-4"}, "--lr: 2e-3 in the run, 5e-4 asked"),
    ({"SEED": "2"}, "SEED (--seed): 1 in the run, 2 asked"),  # with a larger MAX_UPDATE too
])
def test_another_setting_is_refused_in_one_line(data_bin, copy, env, named):
    before = snapshot(copy)
    line = one_line(run_row(row_env(data_bin, copy, **env)))
    assert "holds a finished training with other settings" in line and named in line
    assert f"delete {copy} to start afresh" in line and "another SAVE_DIR" in line
    assert snapshot(copy) == before


def test_fewer_updates_than_trained_are_refused(data_bin, copy):
    before = snapshot(copy)
    line = one_line(run_row(row_env(data_bin, copy, MAX_UPDATE="4")))
    assert "MAX_UPDATE=4 is below the 6 updates" in line and "another SAVE_DIR" in line
    assert snapshot(copy) == before


def test_an_unfinished_training_with_other_settings_is_refused(data_bin, copy):
    (copy / "train.done").unlink()  # as if stopped: train.cmd holds the attempt's command
    (copy / "results.json").unlink()
    line = one_line(run_row(row_env(data_bin, copy, MAX_UPDATE="8", SEED="2")))
    assert "holds an unfinished training with other settings: SEED (--seed): 1 in the run, 2 asked" in line


def test_bad_extra_args_never_reach_the_run_log(data_bin, copy, tmp_path):
    before = snapshot(copy)
    line = one_line(run_row(row_env(data_bin, copy, MAX_UPDATE="6", EXTRA_ARGS=TINY + " --no-such-flag 3")))
    assert "fairseq-train: error: unrecognized arguments: --no-such-flag 3" in line and "EXTRA_ARGS" in line
    assert snapshot(copy) == before
    fresh = tmp_path / "fresh"
    line = one_line(run_row(row_env(data_bin, fresh, EXTRA_ARGS=TINY + " --lr abc")))
    assert "argument --lr: invalid" in line and not fresh.exists()


def test_other_decoding_settings_decode_again_without_training(data_bin, copy):
    result = json.loads((copy / "results.json").read_text())
    result["decoding"]["beam"] = 4
    (copy / "results.json").write_text(json.dumps(result))
    last = (copy / "checkpoint_last.pt").read_bytes()
    proc = run_row(row_env(data_bin, copy, MAX_UPDATE="6"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "training already finished" in proc.stderr and "beam: 4 in results.json, 5 asked" in proc.stderr
    assert json.loads((copy / "results.json").read_text())["decoding"]["beam"] == 5
    assert (copy / "checkpoint_last.pt").read_bytes() == last


@pytest.mark.parametrize("name, value, message", [
    ("MAX_UPDATE", "6o", "MAX_UPDATE=6o is not a positive integer"),
    ("MAX_UPDATE", "0", "MAX_UPDATE=0 is not a positive integer"),
    ("MAX_EPOCH", "1.5", "MAX_EPOCH=1.5 is not a positive integer"),
    ("UPDATE_FREQ", "two", "UPDATE_FREQ=two is not a positive integer"),
    ("SEED", "abc", "SEED=abc is not a positive integer"),
    ("NPROC", "two", "NPROC=two is not a positive integer"),
    ("NPROC", "-2", "NPROC=-2 is not a positive integer"),
    ("LOG_INTERVAL", "1e3", "LOG_INTERVAL=1e3 is not a positive integer"),
    ("CPU", "yes", "CPU=yes: expected 0 or 1"),
    ("DRY_RUN", "true", "DRY_RUN=true: expected 0 or 1"),
    ("ALLOW_BLEU_MISMATCH", "2", "ALLOW_BLEU_MISMATCH=2: expected 0 or 1"),
    ("SEEDS", "1,x", "SEEDS=1,x: expected positive integers"),
    ("DATA", "/nonexistent/data-bin", "no binarized data at /nonexistent/data-bin"),
])
def test_environment_typo_is_one_line_and_creates_nothing(data_bin, tmp_path, name, value, message):
    save = tmp_path / "run"
    line = one_line(run_row(row_env(data_bin, save, **{name: value})))
    assert message in line
    assert not save.exists()


def test_typos_are_caught_in_a_dry_run_too(data_bin, tmp_path):
    proc = run_row(row_env(data_bin, tmp_path / "run", DRY_RUN="1", MAX_UPDATE="6o"))
    assert "MAX_UPDATE=6o is not a positive integer" in one_line(proc) and proc.stdout == ""


def test_save_dir_that_is_a_file(data_bin, tmp_path):
    (tmp_path / "run").write_text("")
    assert f"SAVE_DIR={tmp_path / 'run'} is a file, not a directory" in one_line(run_row(row_env(data_bin, tmp_path / "run")))


def test_sigterm_while_decoding_leaves_no_partial_output(data_bin, copy):
    (copy / "results.json").unlink()  # the finished training is decoded again
    err = copy.parent / "stderr.txt"
    with open(err, "w") as f:
        proc = subprocess.Popen(["bash", str(REPO / "scripts/run_row.sh"), "synthetic", "pn"],
                                env=row_env(data_bin, copy, MAX_UPDATE="6"), stdout=subprocess.DEVNULL, stderr=f)
    try:
        while not (copy / "generate-test.txt.tmp").exists():  # the redirection exists before the decoder runs
            assert proc.poll() is None, err.read_text()[-3000:]
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)  # to the script only, as `kill PID` or a job scheduler's first signal
        assert proc.wait(timeout=120) == 143
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not (copy / "generate-test.txt.tmp").exists()
    assert "interrupted (SIGTERM): the training is finished; rerun the same command" in err.read_text()
    decoders = subprocess.run(["pgrep", "-f", f"fairseq-generate .*{copy}/"], capture_output=True, text=True)
    assert decoders.stdout == ""  # stopped with the script


def test_ctrl_c_while_training_says_how_to_resume(data_bin, tmp_path):
    save, err = tmp_path / "run", tmp_path / "stderr.txt"
    with open(err, "w") as f:
        proc = subprocess.Popen(["bash", str(REPO / "scripts/run_row.sh"), "synthetic", "pn"],
                                env=row_env(data_bin, save, MAX_UPDATE="100000"), stdout=subprocess.DEVNULL,
                                stderr=f, start_new_session=True)
    try:
        while not (save / "train.cmd").exists():  # written just before fairseq-train starts
            assert proc.poll() is None, err.read_text()[-3000:]
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C sends: the whole foreground group
        assert proc.wait(timeout=120) == 130
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert f"interrupted (SIGINT): rerun the same command to resume from {save}/checkpoint_last.pt" in err.read_text()
    trainers = subprocess.run(["pgrep", "-f", f"fairseq-train .*{save}"], capture_output=True, text=True)
    assert trainers.stdout == ""


def test_pn_results_marks_a_run_that_is_not_the_recipe(smoke, tmp_path):
    proc = subprocess.run([str(BIN / "pn-results"), str(smoke), "--no-significance"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    row = next(line for line in proc.stdout.splitlines() if line.startswith("| Transformer-PN |"))
    assert row.rstrip(" |").endswith("†")
    assert "- † pn on synthetic, seed 1: not the row's recipe: MAX_UPDATE=6 (recipe: 300)" in proc.stdout
    assert f"warning: {smoke}/results.json: not the recipe of row 'pn': MAX_UPDATE=6 (recipe: 300)" in proc.stderr
    # the same run recorded as the recipe: no mark
    recipe = tmp_path / "recipe"
    shutil.copytree(smoke, recipe)
    result = json.loads((recipe / "results.json").read_text())
    result.update(settings_match_recipe=True, recipe_differences=[])
    (recipe / "results.json").write_text(json.dumps(result))
    proc = subprocess.run([str(BIN / "pn-results"), str(recipe), "--no-significance"], capture_output=True, text=True)
    assert proc.returncode == 0 and "†" not in proc.stdout and "not the recipe" not in proc.stderr


def test_command_settings_ignore_where_a_run_lives():
    argv = ["fairseq-train", "/data", "--save-dir", "/a", "--lr", "1e-3", "--cpu", "--max-tokens", "4096",
            "--adam-betas", "(0.9, 0.98)", "--max-tokens", "400", "--log-interval", "50"]
    assert row_state.parse_command(argv) == {
        "DATA": ("/data",), "--save-dir": ("/a",), "--lr": ("1e-3",), "--cpu": (), "--max-tokens": ("400",),
        "--adam-betas": ("(0.9, 0.98)",), "--log-interval": ("50",)}
    moved = ["fairseq-train", "/data", "--save-dir", "/b", "--lr", "1e-3", "--cpu", "--max-tokens", "400",
             "--adam-betas", "(0.9, 0.98)", "--log-interval", "1", "--distributed-world-size", "1"]
    assert row_state.differences(row_state.settings(argv), row_state.settings(moved)) == []
    two = moved[:-1] + ["2"]
    assert row_state.differences(row_state.settings(argv), row_state.settings(two)) == [
        "NPROC (--distributed-world-size): 1 in the run, 2 asked"]
    gpu = [a for a in moved if a != "--cpu"]
    assert row_state.differences(row_state.settings(argv), row_state.settings(gpu)) == [
        "CPU (--cpu): set in the run, not set asked"]


def test_one_data_directory_through_a_link_is_the_same_setting(tmp_path):
    """A queued run's code snapshot links the checkout's data-bin/: rerunning the row from the
    checkout must reuse that run, not refuse it for another DATA."""
    data, other = tmp_path / "data-bin" / "m30k", tmp_path / "other"
    data.mkdir(parents=True)
    other.mkdir()
    snapshot_dir = tmp_path / "snapshot"
    snapshot_dir.mkdir()
    (snapshot_dir / "data-bin").symlink_to(tmp_path / "data-bin")

    def argv(d):
        return ["fairseq-train", str(d), "--lr", "1e-3"]

    linked = snapshot_dir / "data-bin" / "m30k"
    assert row_state.differences(row_state.settings(argv(linked)), row_state.settings(argv(data))) == []
    assert row_state.differences(row_state.settings(argv(linked)), row_state.settings(argv(other))) == [
        f"DATA (the data directory): {linked} in the run, {other} asked"]
    gone = tmp_path / "gone"  # a directory that no longer exists is compared by its text
    assert row_state.differences(row_state.settings(argv(gone)), row_state.settings(argv(data))) == [
        f"DATA (the data directory): {gone} in the run, {data} asked"]
