"""CUDA tests (`pytest -m cuda`; make gpu-check stage b): skipped where torch.cuda.is_available()
is false. PN_TEST_DEVICE=cpu runs the layer comparisons on the CPU instead (gpu-check's smoke run: CPU
float32, the fused kernels, against float64); the fairseq runs, which are about CUDA, then skip.

* every norm on the device in float32 against the same norm on the CPU in float64: outputs,
  input and parameter gradients, every buffer, over 6 training steps across PN's warm-up, then
  an eval-mode forward;
* fairseq-train steps with --fp16 and --amp (finite losses, norms' counters = updates);
* pn-fold of a checkpoint trained on the device: decoding there gives the same hypotheses.
"""
import os
import re
import subprocess

import pytest
import torch

from pn_fairseq.checkpoints.files import load_checkpoint
from pn_fairseq.gpucheck.checks import check_run
from pn_fairseq.norms import build_norm

from conftest import BIN, REPO, padded_batch, run

DEVICE = os.environ.get("PN_TEST_DEVICE", "cuda")
pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(DEVICE == "cuda" and not torch.cuda.is_available(),
                       reason="needs a CUDA GPU (torch.cuda.is_available() is false)"),
]
needs_cuda = pytest.mark.skipif(DEVICE != "cuda", reason="a CUDA run (PN_TEST_DEVICE=cpu)")

NORMS = [
    ("layer", {}),
    ("batch", dict(variant="reference")),
    ("batch", dict(variant="paper")),
    ("power_v", {}),
    ("power", dict(variant="reference", warmup_updates=3, groups=2)),
    ("power", dict(variant="reference", warmup_updates=3, groups=0)),
    ("power", dict(variant="paper")),
    ("rms", {}),
    ("scale", {}),
    ("dyt", {}),
]
STEPS = 6  # PN reference: batch statistics for 3 steps, then the running ones


def _step_inputs(step):
    """x: T x B x C (float64, padded), pad_mask: B x T, dy with zeros at the padding."""
    torch.manual_seed(100 + step)
    x, mask = padded_batch(T=7, B=5, C=16, scale=1.0 + step, lengths=(7, 5, 6, 2, 4))
    dy = torch.randn(x.shape, dtype=torch.float64)
    dy[mask.t()] = 0.0
    return x, mask, dy


@pytest.mark.parametrize("name, options", NORMS, ids=[f"{n}-{'-'.join(map(str, o.values()))}" for n, o in NORMS])
def test_norm_float32_on_device_matches_float64_on_cpu(name, options):
    ref = build_norm(name, 16, **options).double()
    dev = build_norm(name, 16, **options).to(DEVICE)
    with torch.no_grad():  # parameters away from their initial values, the same on both
        for p_ref, p_dev in zip(ref.parameters(), dev.parameters()):
            p_ref.add_(0.1 * torch.randn_like(p_ref))
            p_dev.copy_(p_ref)
    for step in range(STEPS):
        x, mask, dy = _step_inputs(step)
        x_ref = x.clone().requires_grad_(True)
        x_dev = x.float().to(DEVICE).requires_grad_(True)
        y_ref, y_dev = ref(x_ref, mask), dev(x_dev, mask.to(DEVICE))
        y_ref.backward(dy)
        y_dev.backward(dy.float().to(DEVICE))
        close = dict(rtol=1e-4, atol=2e-5)
        torch.testing.assert_close(y_dev.double().cpu(), y_ref.detach(), **close, msg=f"output, step {step}")
        torch.testing.assert_close(x_dev.grad.double().cpu(), x_ref.grad, **close, msg=f"dx, step {step}")
        for (pname, p_ref), p_dev in zip(ref.named_parameters(), dev.parameters()):
            torch.testing.assert_close(p_dev.grad.double().cpu(), p_ref.grad, **close, msg=f"d{pname}, step {step}")
            p_ref.grad, p_dev.grad = None, None
        for (bname, b_ref), b_dev in zip(ref.named_buffers(), dev.buffers()):
            if b_ref.is_floating_point():
                torch.testing.assert_close(b_dev.double().cpu(), b_ref, rtol=1e-5, atol=1e-6,
                                           msg=f"buffer {bname}, step {step}")
            else:
                assert torch.equal(b_dev.cpu(), b_ref), f"buffer {bname}, step {step}"
    ref.eval(), dev.eval()
    x, mask, _ = _step_inputs(STEPS)
    torch.testing.assert_close(dev(x.float().to(DEVICE), mask.to(DEVICE)).double().cpu(), ref(x, mask),
                               rtol=1e-4, atol=2e-5)


TINY = ["--encoder-layers", "2", "--decoder-layers", "2", "--encoder-embed-dim", "32", "--decoder-embed-dim", "32",
        "--encoder-ffn-embed-dim", "64", "--decoder-ffn-embed-dim", "64",
        "--encoder-attention-heads", "4", "--decoder-attention-heads", "4", "--share-all-embeddings"]
UPDATES = 20  # enough for peaked output distributions: beam search meets no near-ties in the fold test


def train_command(data_bin, save_dir, arch, mode):
    return [str(BIN / "fairseq-train"), str(data_bin), "--user-dir", str(REPO / "pn_fairseq"),
            "--task", "translation_pn", "--arch", arch, *TINY, "--optimizer", "adam", "--lr", "1e-3",
            "--lr-scheduler", "inverse_sqrt", "--warmup-updates", "3", "--criterion", "label_smoothed_cross_entropy",
            "--label-smoothing", "0.1", "--max-tokens", "400", "--max-update", str(UPDATES), "--save-dir", str(save_dir),
            "--no-progress-bar", "--seed", "1", "--no-epoch-checkpoints", "--log-format", "json", "--log-interval", "1",
            "--distributed-world-size", "1", f"--{mode}"]


@pytest.fixture(scope="module")
def trained(data_bin, tmp_path_factory):
    """{(arch, mode): (log, checkpoint)}, the four runs trained side by side on the GPU."""
    runs = {}
    for arch in ("transformer_pn", "transformer_bn"):
        for mode in ("amp", "fp16"):
            save_dir = tmp_path_factory.mktemp(f"{arch}-{mode}")
            log = save_dir / "train.log"
            with open(log, "w") as f:
                proc = subprocess.Popen(train_command(data_bin, save_dir, arch, mode), cwd=REPO, stdout=f,
                                        stderr=subprocess.STDOUT)
            runs[arch, mode] = (proc, log, save_dir / "checkpoint_last.pt")
    for (arch, mode), (proc, log, _) in runs.items():
        assert proc.wait() == 0, f"fairseq-train {arch} --{mode} failed:\n{log.read_text()[-3000:]}"
    return {key: (log, ckpt) for key, (_, log, ckpt) in runs.items()}


@needs_cuda
@pytest.mark.parametrize("mode", ["amp", "fp16"])
@pytest.mark.parametrize("arch", ["transformer_pn", "transformer_bn"])
def test_mixed_precision_training_steps(trained, arch, mode):
    log, ckpt = trained[arch, mode]
    measured = check_run(log, ckpt, UPDATES, mode=mode)
    assert measured["updates"] == UPDATES and measured["counters"] >= 2 * 2  # two norms per encoder layer
    assert load_checkpoint(str(ckpt))["cfg"]["common"][mode] is True  # it really was a mixed-precision run


def generate(data_bin, path):
    proc = subprocess.run(
        [str(BIN / "fairseq-generate"), str(data_bin), "--user-dir", str(REPO / "pn_fairseq"), "--path", str(path),
         "--beam", "5", "--batch-size", "4", "--required-batch-size-multiple", "1", "--gen-subset", "test"],
        cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {m.group(1): m.group(2) for m in re.finditer(r"^H-(\d+)\t\S+\t(.*)$", proc.stdout, re.M)}


@needs_cuda
def test_fold_then_decode_on_device_gives_the_same_hypotheses(trained, data_bin, tmp_path):
    _, original = trained["transformer_pn", "amp"]
    folded = tmp_path / "folded.pt"
    log = run("pn-fold", original, "--output", folded)
    assert "folded 5 encoder norm(s)" in log
    before, after = generate(data_bin, original), generate(data_bin, folded)
    assert len(before) == 12 and after == before
