"""make gpu-check: the CPU smoke run (GPU_CHECK_SMOKE=1) passes every stage and leaves its
findings in one folder; a failing stage stops the run with one line and exit status 1."""
import json
import os
import subprocess
import sys

import pytest
import torch

from conftest import REPO


def gpu_check(*args, env_extra=None):
    env = dict(os.environ, **(env_extra or {}))
    return subprocess.run(["make", "--no-print-directory", "gpu-check", f"GPU_CHECK_ARGS={' '.join(map(str, args))}"],
                          cwd=REPO, capture_output=True, text=True, env=env)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu-check") / "out"
    proc = gpu_check("--out", out, env_extra={"GPU_CHECK_SMOKE": "1"})
    return proc, out


def test_smoke_run_passes_every_stage(smoke):
    proc, out = smoke
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = (out / "summary.txt").read_text()
    assert proc.stdout.rstrip().endswith(summary.rstrip())  # the summary is the last screen printed
    assert len(summary.splitlines()) <= 40
    for key in "abcde":
        assert f"\n{key}. " in summary and "PASS" in summary.split(f"\n{key}. ")[1].splitlines()[0]
    assert summary.rstrip().endswith("all stages passed")
    assert json.loads((out / "gpu-check.json").read_text())["status"] == "passed"


def test_smoke_run_records_what_each_stage_measured(smoke):
    _, out = smoke
    results = json.loads((out / "results.json").read_text())
    assert results["a"]["device"] == "cpu" and results["a"]["fairseq"]
    assert results["b"]["passed"] >= 10 and results["b"].get("failed", 0) == 0  # the layer comparisons ran
    pn = results["c"]["pn --amp"]
    assert pn["updates"] == 3 and pn["counters"] >= 6  # 3+3 layers: two norms per encoder layer
    ratios = results["d"]["norms"]["tiny float32"]["ratio"]
    assert set(ratios) == {"bn reference", "bn paper", "pn-v", "pn reference", "pn paper"}
    assert results["d"]["train"]["preln"]["ratio"] == 1.0
    table = (out / "e-multi30k" / "table.md").read_text()
    for row in ("preln", "pn"):
        run_dir = out / "e-multi30k" / "runs" / row / "seed1"
        assert json.loads((run_dir / "results.json").read_text())["row"] == row
        assert f"| {row} | multi30k | 1 |" in table
    for folder in ("a-env", "b-cuda-tests", "c-mixed-precision", "d-speed", "e-multi30k"):
        assert (out / folder).is_dir(), folder


@pytest.mark.skipif(torch.cuda.is_available(), reason="the GPU run passes stage a on a GPU")
def test_gpu_run_without_a_gpu_stops_at_stage_a_with_one_line(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "pn_fairseq.gpucheck", "--out", str(out)], cwd=REPO,
                          capture_output=True, text=True, env={k: v for k, v in os.environ.items() if k != "GPU_CHECK_SMOKE"})
    assert proc.returncode == 1  # (make gpu-check turns it into make's 2)
    failures = [line for line in proc.stdout.splitlines() if "failed" in line]
    assert len(failures) == 1
    assert failures[0].startswith("gpu-check: stage a (environment) failed after")
    assert "sees no GPU" in failures[0] and "GPU_CHECK_SMOKE=1" in failures[0]
    assert "[b]" not in proc.stdout  # nothing after the failed stage ran
    assert json.loads((out / "gpu-check.json").read_text())["status"] == "failed"


def test_output_folder_that_is_not_a_gpu_check_folder_is_refused(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    proc = subprocess.run([sys.executable, "-m", "pn_fairseq.gpucheck", "--smoke", "--out", str(tmp_path)],
                          cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        f"gpu-check: error: --out {tmp_path} exists and is not a gpu-check folder: "
        "choose another --out, or --force to clear it")
    assert (tmp_path / "keep.txt").read_text() == "mine"


# ---- the GPU path's arithmetic and checks, on fabricated inputs (no GPU here to run them) ----

def _run_files(tmp_path, counters, updates, losses=("5.1", "4.2"), overflow_lines=0):
    log = tmp_path / "train.log"
    lines = [f"INFO | fairseq_cli.train | NOTE: gradient overflow detected, ignoring gradient, setting loss "
             f"scale to: {2 ** (19 - i)}.0" for i in range(overflow_lines)]
    lines += [f'2026-01-01 | INFO | train_inner | {{"epoch": 1, "loss": "{x}", "num_updates": "{10 * (i + 1)}", '
              f'"ups": "9.5", "wall": "{2 * (i + 1)}"}}' for i, x in enumerate(losses)]
    log.write_text("\n".join(lines) + "\n")
    ckpt = tmp_path / "checkpoint_last.pt"
    model = {f"encoder.layers.{i}.final_layer_norm.{k}": torch.tensor(v) for i, (k, v) in enumerate(counters)}
    model["encoder.embed_tokens.weight"] = torch.ones(3, 2)
    torch.save({"model": model, "optimizer_history": [{"num_updates": updates}]}, ckpt)
    return log, ckpt


def test_check_run_passes_counters_equal_to_updates_and_counts_overflows(tmp_path):
    from pn_fairseq.gpucheck.checks import check_run
    from pn_fairseq.gpucheck.stages import updates_per_second

    log, ckpt = _run_files(tmp_path, [("num_batches_tracked", 200)] * 3, 200, overflow_lines=7)
    assert check_run(log, ckpt, 200, mode="fp16", expect_overflow=True) == {
        "losses": 2, "last_loss": 4.2, "overflows": 7, "updates": 200, "counters": 3}
    assert updates_per_second(log.read_text()) == 5.0  # 10 updates in 2 s


@pytest.mark.parametrize("counters, updates, losses, overflows, message", [
    ([("num_batches_tracked", 200), ("num_batches_tracked", 207)], 200, ("5.1", "4.2"), 7,
     "1 of 2 norm counters differ from the 200 applied updates (e.g. encoder.layers.1.final_layer_norm."
     "num_batches_tracked = 207): a skipped step moved a norm"),
    ([("num_batches_tracked", 190)], 190, ("5.1", "4.2"), 7, "190 updates applied, 200 asked for"),
    ([("num_batches_tracked", 200)], 200, ("5.1", "inf"), 7, "1 of 2 logged losses are not finite (first: inf)"),
    ([("num_batches_tracked", 200)], 200, ("5.1", "4.2"), 0,
     "no overflow was reported (expected 'gradient overflow detected' in the log: is --fp16-init-scale large enough?)"),
    ([], 200, ("5.1", "4.2"), 7, "the checkpoint has no num_batches_tracked buffers (a BN/PN-V/PN model has them)"),
])
def test_check_run_names_what_is_wrong(tmp_path, counters, updates, losses, overflows, message):
    from pn_fairseq.gpucheck.checks import RunCheckFailed, check_run

    log, ckpt = _run_files(tmp_path, counters, updates, losses, overflows)
    with pytest.raises(RunCheckFailed) as err:
        check_run(log, ckpt, 200, mode="fp16", expect_overflow=True)
    assert str(err.value) == message


def _gpu_context(tmp_path, elapsed, budget=480.0, speeds=(12.0, 10.0, 11.0, 9.0, 12.0, 10.0, 11.0, 9.0)):
    from pn_fairseq.gpucheck.runner import GPU, Context

    # A clock that stands still: elapsed() is exactly ``elapsed`` however long the test takes.
    ctx = Context(out=tmp_path, smoke=False, sizes=GPU, data=tmp_path, budget_s=budget,
                  start=1000.0, clock=lambda: 1000.0 + elapsed)
    ctx.results["c"] = {f"run{i}": {"updates_per_s": v} for i, v in enumerate(speeds)}
    ctx.results["c"]["seconds"] = 50.0
    return ctx


def test_stage_e_trains_for_the_time_left_at_the_speed_stage_c_measured(tmp_path):
    from pn_fairseq.gpucheck.table import EVAL_RESERVE_S, size_updates

    ctx = _gpu_context(tmp_path, elapsed=200.0)
    updates, how = size_updates(ctx, 12)
    per_process = 10.5 * 8 / 12  # median of stage c's 8 runs, the GPU shared by 12 instead of 8
    left = 480.0 - 200.0 - EVAL_RESERVE_S  # 205 s
    assert updates == 1400 == int(left * per_process) // 100 * 100
    assert how == "205 s left for training x 7.0 updates/s per process (stage c: 10.5 with 8 processes)"


def test_stage_e_refuses_to_start_what_cannot_finish_in_the_budget(tmp_path):
    from pn_fairseq.gpucheck.runner import StageFailed
    from pn_fairseq.gpucheck.table import size_updates

    ctx = _gpu_context(tmp_path, elapsed=440.0)
    # 480 - 440 - 75 s of reserve: nothing left to train
    with pytest.raises(StageFailed, match=r"^440 s of the 480 s budget are gone: 0 s left to train at 7\.0 updates/s "
                                          r"allow fewer than 300 updates; run stage e alone: --stages e"):
        size_updates(ctx, 12)
