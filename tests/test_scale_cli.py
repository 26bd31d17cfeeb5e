"""Scale without surprises, through the real commands: exact resume mid-epoch, a SIGTERM
during training, atomic checkpoint copies, two CPU workers with and without
--norm-sync-stats (through the row driver), the torchrun trap, NPROC errors, and fairseq's
own half-precision trainer on CPU."""
import json
import math
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

import pn_fairseq  # noqa: F401  (allow-lists fairseq's checkpoint globals for torch.load)
from conftest import BIN, REPO
from test_cli_end_to_end import TINY

NORM_BUFFERS = ("running_psi2", "running_nu", "running_mean", "running_var", "num_batches_tracked")


def train_argv(data_bin, save_dir, arch, max_update, *extra):
    return [str(BIN / "fairseq-train"), str(data_bin), "--user-dir", str(REPO / "pn_fairseq"), "--task", "translation_pn",
            "--arch", arch, *TINY, "--dropout", "0.1", "--optimizer", "adam", "--lr", "1e-3",
            "--lr-scheduler", "inverse_sqrt", "--warmup-updates", "3", "--criterion", "label_smoothed_cross_entropy",
            "--label-smoothing", "0.1", "--max-tokens", "200", "--max-update", str(max_update),
            "--save-dir", str(save_dir), "--cpu", "--no-progress-bar", "--log-format", "json", "--log-interval", "1",
            "--seed", "1", "--no-epoch-checkpoints", *map(str, extra)]


def train(*args, **kwargs):
    proc = subprocess.run(train_argv(*args, **kwargs), cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


# What a step's log line records about the computation (not its wall-clock speed).
STEP_KEYS = ("epoch", "update", "loss", "nll_loss", "ppl", "wpb", "bsz", "num_updates", "lr", "gnorm")


def train_steps(log, keys=STEP_KEYS):
    """{num_updates: the train_inner record's ``keys`` (no timings)} from a --log-format json log."""
    steps = {}
    for line in log.splitlines():
        if "| train_inner | " in line:
            record = json.loads(line.split("| train_inner | ", 1)[1])
            steps[int(record["num_updates"])] = {k: record[k] for k in keys}
    return steps


@pytest.mark.parametrize("row, update_freq", [("pn", 1), ("bn", 1), ("pn", 2)])
def test_resume_mid_epoch_is_exact(row, update_freq, data_bin, tmp_path):
    """6 updates straight == 3 updates, stop, resume to 6 in the same save dir: the same loss
    at every step and bit-identical parameters, norm buffers, optimizer state and counters.
    PN's warm-up (3 updates) ends inside the run, and update 3 is mid-epoch (12 batches)."""
    arch = f"transformer_{row}"
    freq = ("--update-freq", update_freq)
    straight = train_steps(train(data_bin, tmp_path / "straight", arch, 6, *freq))
    first = train(data_bin, tmp_path / "resumed", arch, 3, *freq)
    stopped = torch.load(tmp_path / "resumed" / "checkpoint_last.pt")
    second = train(data_bin, tmp_path / "resumed", arch, 6, *freq)
    assert "Loaded checkpoint" in second and "@ 3 updates" in second

    # update 3 is inside epoch 1 (the log's "update" is the fraction of the epoch done)
    assert float(straight[3]["update"]) < 1 and int(straight[6]["epoch"]) == 1
    assert stopped["extra_state"]["train_iterator"]["iterations_in_epoch"] == 3 * update_freq
    resumed = {**train_steps(first), **train_steps(second)}
    assert sorted(straight) == sorted(resumed) == [1, 2, 3, 4, 5, 6]
    for n in straight:
        assert resumed[n] == straight[n], f"update {n}: {resumed[n]} != {straight[n]}"

    a = torch.load(tmp_path / "straight" / "checkpoint_last.pt")
    b = torch.load(tmp_path / "resumed" / "checkpoint_last.pt")
    buffers = [k for k in a["model"] if k.rsplit(".", 1)[-1] in NORM_BUFFERS]
    expected = {"pn": {"running_psi2", "running_nu", "num_batches_tracked"},
                "bn": {"running_mean", "running_var", "num_batches_tracked"}}[row]
    assert {k.rsplit(".", 1)[-1] for k in buffers} == expected
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for key in buffers:
        if key.endswith("num_batches_tracked"):
            assert int(a["model"][key]) == 6 * update_freq, key  # one per forward
    assert a["optimizer_history"][-1]["num_updates"] == b["optimizer_history"][-1]["num_updates"] == 6
    assert a["optimizer_history"][-1]["lr_scheduler_state"] == b["optimizer_history"][-1]["lr_scheduler_state"]
    assert a["extra_state"]["train_iterator"] == b["extra_state"]["train_iterator"]
    sa, sb = a["last_optimizer_state"]["state"], b["last_optimizer_state"]["state"]
    assert sa.keys() == sb.keys()
    for i in sa:
        for name in sa[i]:
            assert torch.equal(torch.as_tensor(sa[i][name]), torch.as_tensor(sb[i][name])), (i, name)


def test_sigterm_leaves_a_loadable_checkpoint_that_resumes(data_bin, tmp_path):
    save = tmp_path / "run"
    argv = train_argv(data_bin, save, "transformer_pn", 100000, "--save-interval-updates", "1",
                      "--keep-interval-updates", "2", "--disable-validation")
    proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            # checkpoint_E_U.pt: written, then copied onto checkpoint_last.pt, every update
            saved = [int(p.stem.rsplit("_", 1)[1]) for p in save.glob("checkpoint_*_*.pt")]
            if max(saved, default=0) >= 4:
                break
            time.sleep(0.1)
        assert proc.poll() is None, "fairseq-train stopped by itself:\n" + proc.stderr.read()[-3000:]
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    assert proc.returncode != 0  # killed, not finished
    state = torch.load(save / "checkpoint_last.pt")  # never a half-written file
    done = state["optimizer_history"][-1]["num_updates"]
    assert done >= 3
    log = train(data_bin, save, "transformer_pn", done + 1)
    assert f"@ {done} updates" in log
    assert torch.load(save / "checkpoint_last.pt")["optimizer_history"][-1]["num_updates"] == done + 1


def _half_failing_copyfile(src, dst, *args, **kwargs):
    with open(src, "rb") as f, open(dst, "wb") as g:
        data = f.read()
        g.write(data[: len(data) // 2])
    raise OSError(28, "No space left on device (simulated)")


def test_failed_copy_leaves_the_old_checkpoint_and_no_temporary(tmp_path, monkeypatch):
    from fairseq.file_io import PathManager

    from pn_fairseq.checkpoints.serialization import atomic_copyfile

    src, dst = tmp_path / "checkpoint7.pt", tmp_path / "checkpoint_last.pt"
    src.write_bytes(b"new" * 1000)
    dst.write_bytes(b"old checkpoint")
    monkeypatch.setattr(shutil, "copyfile", _half_failing_copyfile)
    for copy in (lambda: atomic_copyfile(str(src), str(dst)),
                 lambda: PathManager.copy(str(src), str(dst), overwrite=True)):  # what fairseq calls
        with pytest.raises(OSError, match="simulated"):
            copy()
        assert dst.read_bytes() == b"old checkpoint"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint7.pt", "checkpoint_last.pt"]
    monkeypatch.undo()
    assert PathManager.copy(str(src), str(dst), overwrite=True)
    assert dst.read_bytes() == src.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint7.pt", "checkpoint_last.pt"]


# A sitecustomize module on PYTHONPATH captures the model each fairseq-train process builds
# and, when the process exits, saves its norm buffers and the dtype of every tensor (the
# in-memory model: checkpoints are written in float32 whatever the training precision).
CAPTURE = '''
import atexit, os, sys
if os.path.basename(sys.argv[0]) == "fairseq-train" and os.environ.get("PN_TEST_BUFFERS"):
    import logging
    # fairseq_cli.train's own logging set-up, which importing fairseq here would pre-empt
    logging.basicConfig(format="%(asctime)s | %(levelname)s | %(name)s | %(message)s", datefmt="%Y-%m-%d %H:%M:%S",
                        level=os.environ.get("LOGLEVEL", "INFO").upper(), stream=sys.stdout)
    import torch
    from pn_fairseq.models.transformer_pn import TransformerPNModel
    _built = []
    _build = TransformerPNModel.build_model.__func__

    def build_model(cls, args, task):
        model = _build(cls, args, task)
        _built.append(model)
        return model

    TransformerPNModel.build_model = classmethod(build_model)

    def _dump():
        rank = sys.argv[sys.argv.index("--distributed-rank") + 1] if "--distributed-rank" in sys.argv else "0"
        model = _built[-1].state_dict()
        state = {k: v for k, v in model.items() if "running" in k or "num_batches" in k}
        dtypes = {k: str(v.dtype) for k, v in model.items()}
        torch.save({"buffers": state, "dtypes": dtypes}, os.path.join(os.environ["PN_TEST_BUFFERS"], f"rank{rank}.pt"))

    atexit.register(_dump)
'''

def capture_env(tmp_path):
    """(environment that captures each fairseq-train's model, {rank: capture} after it ran)."""
    dumps, site = tmp_path / "buffers", tmp_path / "site"
    dumps.mkdir()
    site.mkdir()
    (site / "sitecustomize.py").write_text(CAPTURE)
    env = dict(os.environ, PYTHONPATH=f"{site}{os.pathsep}{REPO}", PN_TEST_BUFFERS=str(dumps))
    return env, lambda: {int(p.stem[4:]): torch.load(p) for p in dumps.glob("rank*.pt")}


# --max-tokens 250: 9 batches per epoch, so in the 5th update (the last of epoch 1) rank 0 has
# a batch and rank 1 runs fairseq's dummy batch.
ROW_TINY = ("--encoder-layers 1 --decoder-layers 1 --encoder-embed-dim 32 --decoder-embed-dim 32 "
            "--encoder-ffn-embed-dim 64 --decoder-ffn-embed-dim 64 --max-tokens 250 --warmup-updates 2 "
            "--disable-validation")


def two_cpu_workers(data_bin, tmp_path, extra):
    """NPROC=2 CPU=1 scripts/run_row.sh synthetic pn on the tiny corpus; returns (save dir,
    {rank: norm buffers at exit})."""
    save = tmp_path / "run"
    env, captured = capture_env(tmp_path)
    env.update(DATA=str(data_bin), SAVE_DIR=str(save), MAX_UPDATE="5", CPU="1", NPROC="2",
               EXTRA_ARGS=f"{ROW_TINY} {extra}", ALLOW_BLEU_MISMATCH="1", LOG_INTERVAL="1")
    env.pop("OMP_NUM_THREADS", None)
    proc = subprocess.run(["bash", str(REPO / "scripts/run_row.sh"), "synthetic", "pn"], capture_output=True,
                          text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "starting 2 CPU workers" in proc.stderr
    buffers = {rank: capture["buffers"] for rank, capture in captured().items()}
    assert sorted(buffers) == [0, 1]
    return save, buffers


def test_two_cpu_workers_with_synchronized_statistics(data_bin, tmp_path):
    save, buffers = two_cpu_workers(data_bin, tmp_path, "--norm-sync-stats")
    rank1_log = (save / "train.rank1.log").read_text()
    assert "distributed init (rank 1)" in rank1_log
    assert json.loads((save / "results.json").read_text())["updates"] == 5
    checkpoint = torch.load(save / "checkpoint_last.pt")
    assert checkpoint["cfg"]["model"].norm_sync_stats is True
    keys = sorted(buffers[0])
    assert keys == sorted(buffers[1]) and any(k.endswith("running_nu") for k in keys)
    for key in keys:
        assert torch.equal(buffers[0][key], buffers[1][key]), key  # rank 1 == rank 0
        assert torch.equal(buffers[0][key], checkpoint["model"][key]), key  # rank 0's are saved
    # 5 updates on both: in the last, rank 1's dummy batch joined the all-reduce with zero
    # weight and both ranks normalized by rank 0's batch
    assert int(buffers[0]["encoder.layer_norm.num_batches_tracked"]) == 5


def test_two_cpu_workers_without_synchronization_keep_their_own_statistics(data_bin, tmp_path):
    save, buffers = two_cpu_workers(data_bin, tmp_path, "")
    assert not torch.equal(buffers[0]["encoder.layer_norm.running_psi2"], buffers[1]["encoder.layer_norm.running_psi2"])
    assert not torch.equal(buffers[0]["encoder.layer_norm.running_nu"], buffers[1]["encoder.layer_norm.running_nu"])
    checkpoint = torch.load(save / "checkpoint_last.pt")
    for key in buffers[0]:
        assert torch.equal(buffers[0][key], checkpoint["model"][key]), key  # rank 0's are saved
    # rank 1's last batch was fairseq's dummy batch (--task translation_pn): not counted
    assert int(buffers[0]["encoder.layer_norm.num_batches_tracked"]) == 5
    assert int(buffers[1]["encoder.layer_norm.num_batches_tracked"]) == 4


TORCHRUN = {"RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500", "LOCAL_RANK": "0"}


def test_torchrun_trap():
    from pn_fairseq.hooks.errors import PNUserError
    from pn_fairseq.hooks.launch_check import check_launch

    argv = ["/x/bin/fairseq-train", "data-bin/d", "--arch", "transformer_pn", "--cpu"]
    with pytest.raises(PNUserError, match="--distributed-rank R"):
        check_launch(argv, TORCHRUN, cuda_devices=0)
    gpu_argv = [a for a in argv if a != "--cpu"]
    with pytest.raises(PNUserError, match="pass --distributed-world-size 2"):
        check_launch(gpu_argv, TORCHRUN, cuda_devices=0)  # no GPU: fairseq's world size would be 1
    with pytest.raises(PNUserError, match="pass --distributed-world-size 2"):
        check_launch(gpu_argv + ["--distributed-world-size", "1"], TORCHRUN, cuda_devices=8)
    # fine: what torchrun + fairseq are meant for, a plain run, other tools, a world of 1
    check_launch(gpu_argv + ["--distributed-world-size", "2"], TORCHRUN, cuda_devices=0)
    check_launch(gpu_argv, TORCHRUN, cuda_devices=2)
    check_launch(argv, {}, cuda_devices=0)
    check_launch(argv, dict(TORCHRUN, WORLD_SIZE="1"), cuda_devices=0)
    check_launch(["/x/bin/fairseq-generate", "--cpu"], TORCHRUN, cuda_devices=0)


def test_torchrun_trap_through_the_command(data_bin, tmp_path):
    env = dict(os.environ, **TORCHRUN)
    proc = subprocess.run(train_argv(data_bin, tmp_path, "transformer_pn", 1), cwd=REPO, capture_output=True,
                          text=True, env=env)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("fairseq-train: error: ")]
    assert len(errors) == 1 and "torchrun" in errors[0] and "NPROC=N CPU=1" in errors[0]
    assert not list(tmp_path.glob("*.pt"))


def driver_error(**env):
    # not DRY_RUN: a dry run prints the commands on any machine, without the GPU and core checks
    e = dict(os.environ, DATA="/nonexistent/data-bin", SAVE_DIR="/nonexistent/run", **env)
    e.pop("OMP_NUM_THREADS", None)
    proc = subprocess.run(["bash", str(REPO / "scripts/run_row.sh"), "synthetic", "pn"], capture_output=True,
                          text=True, env=e)
    assert proc.returncode != 0 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_nproc_errors_are_one_line(tmp_path):
    cores = int(subprocess.run(["nproc"], capture_output=True, text=True, env={"PATH": os.environ["PATH"]}).stdout)
    line = driver_error(NPROC=str(cores + 1), CPU="1")
    assert f"NPROC={cores + 1} but this machine has {cores} CPU cores" in line and "UPDATE_FREQ" in line
    for bad in ("two", "0", "1.5", "-2"):
        assert f"NPROC={bad} is not a positive integer" in driver_error(NPROC=bad, CPU="1")
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "nvidia-smi").write_text("#!/bin/sh\necho 'GPU 0: NVIDIA H100 (UUID: GPU-0)'\n")
    (fake / "nvidia-smi").chmod(0o755)
    line = driver_error(NPROC="2", PATH=f"{fake}{os.pathsep}{os.environ['PATH']}")
    assert "NPROC=2 but 1 GPU(s) are visible" in line and "CPU=1" in line


def test_nproc_dry_run_prints_one_command_per_rank():
    e = dict(os.environ, DRY_RUN="1", NPROC="2", CPU="1", SAVE_DIR="/s")
    e.pop("OMP_NUM_THREADS", None)
    proc = subprocess.run(["bash", str(REPO / "scripts/run_row.sh"), "synthetic", "pn"], capture_output=True,
                          text=True, env=e)
    assert proc.returncode == 0, proc.stderr
    ranks = [line for line in proc.stdout.splitlines() if line.startswith("fairseq-train ")]
    assert len(ranks) == 2
    for r, line in enumerate(ranks):
        for flag in ("--task translation_pn", "--distributed-world-size 2", f"--distributed-rank {r}",
                     "--distributed-backend gloo", "--ddp-backend legacy_ddp", "--distributed-no-spawn", "--cpu"):
            assert flag in line, (r, flag)
    assert ranks[0].endswith(">> /s/train.log 2>&1 &") and ranks[1].endswith(">> /s/train.rank1.log 2>&1 &")


@pytest.mark.parametrize("row", ["pn", "bn"])
def test_fairseq_fp16_trainer_on_cpu(row, data_bin, tmp_path):
    """fairseq's --memory-efficient-fp16 (the model in float16, dynamic loss scaling) runs on
    CPU; the norms keep float32 statistics. (--fp16 and --bf16 cannot run on CPU: see
    test_bad_input.py.)"""
    env, captured = capture_env(tmp_path)
    proc = subprocess.run(train_argv(data_bin, tmp_path / "run", f"transformer_{row}", 3, "--memory-efficient-fp16"),
                          cwd=REPO, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    steps = train_steps(proc.stdout + proc.stderr)
    assert sorted(steps) == [1, 2, 3] and all(math.isfinite(float(s["loss"])) for s in steps.values())
    dtypes = captured()[0]["dtypes"]
    assert dtypes["encoder.layers.0.fc1.weight"] == "torch.float16"  # the trainer's half model
    assert dtypes["encoder.layer_norm.weight"] == "torch.float16"
    stats = [k for k in dtypes if k.rsplit(".", 1)[-1] in NORM_BUFFERS and not k.endswith("num_batches_tracked")]
    assert len(stats) == 10  # 2 buffers x (2 layers x 2 norms + the final norm)
    assert {dtypes[k] for k in stats} == {"torch.float32"}
    model = torch.load(tmp_path / "run" / "checkpoint_last.pt")["model"]
    for key in stats:
        assert model[key].dtype == torch.float32 and torch.isfinite(model[key]).all(), key
    assert int(model["encoder.layer_norm.num_batches_tracked"]) == 3
