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
