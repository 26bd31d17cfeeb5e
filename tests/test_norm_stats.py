"""--log-norm-stats: the logged statistics equal values recomputed here from the layers'
inputs (spec notation: g = gamma * dL/dy, z the normalized input), they reach fairseq's
log as mean and max over the interval, logging changes no loss; divergence stops training
with one line naming the layer, the statistic and the update."""
import json
import math
import subprocess

import pytest
import torch
from fairseq.logging import metrics

from pn_fairseq.models import norm_monitor
from pn_fairseq.norms import build_norm

from conftest import BIN, REPO
from test_power_norm import _steps

C, EPS = 8, 1e-5


def _collect(norm):
    got = []
    norm.stats_sink = lambda n, stat, value: got.append((stat, float(value)))
    return got


def _real(x, mask):
    return x.reshape(-1, C)[~mask.t().reshape(-1)]


def _dist(a, b):
    return float(torch.linalg.vector_norm(a - b)) / C


def test_pn_paper_statistics():
    pn = build_norm("power", C, variant="paper").double()
    got = _collect(pn)
    for x, mask, dy in _steps(3, C):
        psi2_prev, nu_prev = pn.running_psi2.clone(), pn.running_nu.clone()
        got.clear()
        pn(x.requires_grad_(), mask).backward(dy)
        psi2_b = (_real(x.detach(), mask) ** 2).mean(0)
        assert dict(got)["psi2_dist"] == pytest.approx(_dist(psi2_b, psi2_prev), rel=1e-12)
        assert dict(got)["nu_update"] == pytest.approx(float(torch.linalg.vector_norm(pn.running_nu - nu_prev)), rel=1e-12)


def test_pnv_statistics():
    norm = build_norm("power_v", C).double()
    got = _collect(norm)
    gamma = norm.weight.detach()
    for x, mask, dy in _steps(3, C):
        psi2_prev = norm.running_psi2.clone()
        got.clear()
        norm(x.requires_grad_(), mask).backward(dy)
        xr, gr = _real(x.detach(), mask), _real(dy, mask) * gamma
        psi2_b = (xr ** 2).mean(0)
        z = xr / torch.sqrt(psi2_b + EPS)
        assert dict(got)["psi2_dist"] == pytest.approx(_dist(psi2_b, psi2_prev), rel=1e-12)
        assert dict(got)["g_psi2"] == pytest.approx(float(torch.linalg.vector_norm((gr * z).mean(0))), rel=1e-10)


@pytest.mark.parametrize("variant", ["paper", "reference"])
def test_bn_statistics(variant):
    norm = build_norm("batch", C, variant=variant).double()
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
    got = _collect(norm)
    gamma = norm.weight.detach()
    for x, mask, dy in _steps(3, C):
        mu_prev, var_prev = norm.running_mean.clone(), norm.running_var.clone()
        got.clear()
        norm(x.requires_grad_(), mask).backward(dy)
        keep = ~mask.t().reshape(-1)
        x2 = x.detach().reshape(-1, C)
        if variant == "reference":  # layer scaling, padding filled with the mean, variance over all rows
            x2 = x2 / torch.sqrt((x2 ** 2).mean(-1, keepdim=True) + EPS)
            mu = x2[keep].mean(0)
            var = ((x2[keep] - mu) ** 2).sum(0) / x2.shape[0]
        else:
            mu = x2[keep].mean(0)
            var = ((x2[keep] - mu) ** 2).mean(0)
        z = (x2[keep] - mu) / torch.sqrt(var + EPS)
        g = dy.reshape(-1, C)[keep] * gamma
        stats = dict(got)
        assert stats["mu_dist"] == pytest.approx(_dist(mu, mu_prev), rel=1e-10)
        assert stats["sigma2_dist"] == pytest.approx(_dist(var, var_prev), rel=1e-10)
        assert stats["g_mu"] == pytest.approx(float(torch.linalg.vector_norm(g.mean(0))), rel=1e-9)
        assert stats["g_sigma2"] == pytest.approx(float(torch.linalg.vector_norm((g * z).mean(0))), rel=1e-9)


def test_fairseq_metrics_mean_and_max_over_the_interval():
    pn = build_norm("power", C, variant="reference", warmup_updates=2, groups=2).double()
    pn.stats_name = "enc0.ffn"
    pn.stats_sink = norm_monitor.log_to_fairseq_metrics
    seen = []
    with metrics.aggregate(new_root=True) as agg:
        for x, mask, dy in _steps(4, C):
            before = pn.running_psi2.clone()
            pn(x.requires_grad_(), mask).backward(dy)
            xs = x.detach().reshape(-1, C)
            parts = xs.view(-1, 2, C // 2)
            xs = (parts / torch.sqrt((parts ** 2).mean(-1, keepdim=True) + EPS)).view(-1, C)
            seen.append(_dist((xs[~mask.t().reshape(-1)] ** 2).mean(0), before))
        values = agg.get_smoothed_values()
    assert float(values["ns.enc0.ffn.psi2_dist_mean"]) == pytest.approx(sum(seen) / len(seen), rel=1e-10)
    assert float(values["ns.enc0.ffn.psi2_dist_max"]) == pytest.approx(max(seen), rel=1e-12)
    assert "ns.enc0.ffn.nu_update_max" in values


def test_short_names():
    assert norm_monitor.short_name("encoder.layers.3.final_layer_norm") == "enc3.ffn"
    assert norm_monitor.short_name("decoder.layers.0.encoder_attn_layer_norm") == "dec0.cross"
    assert norm_monitor.short_name("decoder.layers.1.self_attn_layer_norm") == "dec1.attn"
    assert norm_monitor.short_name("encoder.layer_norm") == "enc.final"
    # RoBERTa's paths (roberta_pn): the stack under encoder.sentence_encoder, the embedding and head norms
    assert norm_monitor.short_name("encoder.sentence_encoder.layers.2.self_attn_layer_norm") == "enc2.attn"
    assert norm_monitor.short_name("encoder.sentence_encoder.layers.0.final_layer_norm") == "enc0.ffn"
    assert norm_monitor.short_name("encoder.sentence_encoder.layernorm_embedding") == "enc.embed"
    assert norm_monitor.short_name("encoder.sentence_encoder.layer_norm") == "enc.final"
    assert norm_monitor.short_name("encoder.lm_head.layer_norm") == "lm_head"
    assert norm_monitor.short_name("encoder.layernorm_embedding") == "enc.embed"


def test_overflowing_layer_is_reported_with_layer_statistic_and_update():
    pn = build_norm("power", C, variant="paper")
    norms = {"encoder.layers.1.final_layer_norm": pn}
    x = torch.randn(4, 2, C)
    pn(x)
    norm_monitor.check_finite(norms, 5)  # finite: nothing happens
    x[0, 0, 3] = 1e30  # x^2 overflows float32
    pn(x)
    with pytest.raises(norm_monitor.NormDivergence,
                       match=r"diverged at update 6: running_psi2 of the norm enc1.ffn \(encoder.layers.1.final_layer_norm\)"):
        norm_monitor.check_finite(norms, 6)


TINY = ["--encoder-layers", "2", "--decoder-layers", "1", "--encoder-embed-dim", "16", "--decoder-embed-dim", "16",
        "--encoder-ffn-embed-dim", "32", "--decoder-ffn-embed-dim", "32", "--encoder-attention-heads", "2",
        "--decoder-attention-heads", "2", "--share-all-embeddings"]


def _train(data_bin, save_dir, arch, updates, *extra):
    cmd = [str(BIN / "fairseq-train"), str(data_bin), "--user-dir", str(REPO / "pn_fairseq"), "--task", "translation_pn",
           "--arch", arch, *TINY, "--optimizer", "adam", "--lr", "1e-3", "--warmup-updates", "2", "--max-tokens", "300",
           "--max-update", str(updates), "--save-dir", str(save_dir), "--cpu", "--log-format", "json",
           "--log-interval", "1", "--seed", "3", "--no-epoch-checkpoints", "--no-progress-bar", *extra]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)


def _losses(log):
    return [json.loads(line.split("| train_inner | ", 1)[1])["loss"] for line in log.splitlines() if "| train_inner | " in line]


@pytest.mark.parametrize("arch", ["transformer_pn", "transformer_bn"])
def test_logging_changes_no_loss(arch, data_bin, tmp_path):
    off = _train(data_bin, tmp_path / "off", arch, 4)
    on = _train(data_bin, tmp_path / "on", arch, 4, "--log-norm-stats")
    assert off.returncode == 0 and on.returncode == 0, on.stderr[-2000:]
    assert len(_losses(off.stderr + off.stdout)) == 4
    assert _losses(off.stderr + off.stdout) == _losses(on.stderr + on.stdout)
    assert '"ns.enc0.attn.' in on.stdout + on.stderr and '"ns.' not in off.stdout + off.stderr


def test_divergence_stops_training_with_one_line(data_bin, tmp_path):
    first = _train(data_bin, tmp_path, "transformer_pn", 1)
    assert first.returncode == 0, first.stderr[-2000:]
    path = tmp_path / "checkpoint_last.pt"
    state = torch.load(path, weights_only=False)
    state["model"]["encoder.layers.1.self_attn_layer_norm.running_psi2"][0] = math.inf  # drive it to overflow
    torch.save(state, path)
    proc = _train(data_bin, tmp_path, "transformer_pn", 4, "--log-norm-stats")
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert lines == ["fairseq-train: error: training diverged at update 1: running_psi2 of the norm enc1.attn "
                     "(encoder.layers.1.self_attn_layer_norm) is no longer finite. Rerun with --log-norm-stats and "
                     "plot the statistics that led there with 'pn-analyze stats RUN_DIR'; a lower --lr, longer "
                     "warm-up or --clip-norm may keep the run stable"], proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
