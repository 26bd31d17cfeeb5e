"""pn-fold: the eval-mode BN / PN-V / PN maps folded into the linear layers they feed.

Unit tests check each norm's map against a hand-written eval formula in float64; the end
-to-end tests train tiny pre-norm models, perturb their norms so that the maps are far from
the identity, fold them with the console tool and decode both checkpoints with stock
fairseq-generate."""
import hashlib
import subprocess

import pytest
import torch
import torch.nn.functional as F

import pn_fairseq  # noqa: F401  (allow-lists fairseq's checkpoint globals for torch.load)
from pn_fairseq.checkpoints.files import load_checkpoint, save_checkpoint
from pn_fairseq.cli.fold import main as fold_main
from pn_fairseq.hooks.errors import PNUserError
from pn_fairseq.checkpoints.fold import eval_affine, fold_linear
from pn_fairseq.norms import build_norm
from pn_fairseq.norms.folded import FoldedNorm

from conftest import BIN, REPO, run

EPS = 1e-5
C = 8


def group_rms_by_hand(x, groups):
    """Each row's ``groups`` contiguous channel groups divided by their RMS (x: N x C)."""
    n, c = x.shape
    g = x.reshape(n, groups, c // groups)
    return (g / torch.sqrt(g.pow(2).mean(-1, keepdim=True) + EPS)).reshape(n, c)


def eval_norm_by_hand(name, groups, norm, x):
    """The spec's inference-time formulas, written out."""
    xs = group_rms_by_hand(x, groups) if groups else x
    w, b = norm.weight.detach(), norm.bias.detach()
    if name == "batch":
        return (xs - norm.running_mean) / torch.sqrt(norm.running_var + EPS) * w + b
    return xs / torch.sqrt(norm.running_psi2 + EPS) * w + b


NORMS = [  # (name, options, the group scaling its eval map starts with)
    ("power", dict(variant="reference", groups=4), 4),
    ("power", dict(variant="paper"), 0),
    ("power_v", {}, 0),
    ("batch", dict(variant="reference"), 1),
    ("batch", dict(variant="paper"), 0),
]


def randomized(name, options):
    norm = build_norm(name, C, **options).double()
    with torch.no_grad():
        norm.weight.uniform_(-1.5, 1.5)
        norm.bias.normal_()
        for buf in ("running_psi2", "running_var"):
            if hasattr(norm, buf):
                getattr(norm, buf).uniform_(0.1, 4.0)
        if hasattr(norm, "running_mean"):
            norm.running_mean.normal_()
    return norm.eval()


@pytest.mark.parametrize("name, options, groups", NORMS, ids=lambda v: str(v))
def test_norm_then_linear_equals_folded_linear_after_the_scaling(name, options, groups):
    norm = randomized(name, options)
    x = torch.randn(20, C, dtype=torch.float64) * 3 + 0.7
    weight, bias = torch.randn(6, C, dtype=torch.float64), torch.randn(6, dtype=torch.float64)
    expected = F.linear(eval_norm_by_hand(name, groups, norm, x), weight, bias)
    # the map folded is the one the module computes
    torch.testing.assert_close(F.linear(norm(x), weight, bias), expected, rtol=1e-12, atol=1e-12)

    affine = eval_affine(norm)
    assert affine.groups == groups
    new_weight, new_bias = fold_linear(weight, bias, affine)
    scaling = FoldedNorm(C, groups=affine.groups, eps=affine.eps).eval()
    xs = group_rms_by_hand(x, groups) if groups else x
    torch.testing.assert_close(scaling(x), xs, rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(F.linear(scaling(x), new_weight, new_bias), expected, rtol=1e-12, atol=1e-12)


def test_fold_linear_computes_in_float64_and_keeps_the_dtype():
    norm = randomized("batch", dict(variant="paper"))
    weight, bias = torch.randn(6, C), torch.randn(6)
    new_weight, new_bias = fold_linear(weight, bias, eval_affine(norm))
    assert new_weight.dtype == new_bias.dtype == torch.float32
    a = norm.weight.detach() / torch.sqrt(norm.running_var + EPS)
    c = norm.bias.detach() - norm.running_mean * a
    torch.testing.assert_close(new_weight, (weight.double() * a).float(), rtol=0, atol=0)
    torch.testing.assert_close(new_bias, (bias.double() + weight.double() @ c).float(), rtol=0, atol=0)


def test_folded_norm_identity_half_precision_and_no_training():
    x = torch.randn(3, 2, C)
    identity = FoldedNorm(C, groups=0).eval()
    assert identity(x, torch.zeros(2, 3, dtype=torch.bool)) is x
    assert list(identity.parameters()) == [] and list(identity.buffers()) == []
    scaled = FoldedNorm(C, groups=2).eval()
    y = scaled(x.half())
    assert y.dtype == torch.float16
    expected = group_rms_by_hand(x.half().float().reshape(-1, C), 2).reshape(x.shape).half()
    torch.testing.assert_close(y, expected)  # half precision's tolerance: the scaling ran in float32
    with pytest.raises(PNUserError, match="folded by pn-fold.*can only decode"):
        FoldedNorm(C, groups=2).train()(x)
    with pytest.raises(ValueError, match="not divisible by groups=3"):
        FoldedNorm(C, groups=3)


# ---- end to end: fairseq-train -> pn-fold -> fairseq-generate --------------------------------

LAYERS, HEADS = 2, 4
TINY = [
    "--encoder-layers", LAYERS, "--decoder-layers", LAYERS, "--encoder-embed-dim", "32", "--decoder-embed-dim", "32",
    "--encoder-ffn-embed-dim", "64", "--decoder-ffn-embed-dim", "64",
    "--encoder-attention-heads", HEADS, "--decoder-attention-heads", HEADS, "--share-all-embeddings",
]
CASES = {  # case -> (arch, flags, what the folded norms keep)
    "pn": ("transformer_pn", [], f"group RMS scaling with {HEADS} group(s)"),  # reference: groups = heads
    "bn-paper": ("transformer_pn", ["--norm-type", "batch", "--norm-variant", "paper"], "the identity"),
}


def train(data_bin, save_dir, arch, max_update, extra=()):
    run("fairseq-train", data_bin, "--user-dir", REPO / "pn_fairseq", "--arch", arch, *TINY,
        "--optimizer", "adam", "--lr", "1e-3", "--lr-scheduler", "inverse_sqrt", "--warmup-updates", "3",
        "--criterion", "label_smoothed_cross_entropy", "--label-smoothing", "0.1", "--max-tokens", "400",
        "--max-update", max_update, "--save-dir", save_dir, "--cpu", "--no-progress-bar", "--seed", "1",
        "--no-epoch-checkpoints", *extra)
    return save_dir / "checkpoint_last.pt"


def perturb_encoder_norms(path, seed):
    """Move every encoder norm's weight, bias and running statistics well away from their
    near-initial values, so that folding is tested on maps far from the identity."""
    state = load_checkpoint(path)
    gen = torch.Generator().manual_seed(seed)
    for key, value in state["model"].items():
        if not (key.startswith("encoder.") and "layer_norm." in key and value.is_floating_point()):
            continue
        kind = key.rsplit(".", 1)[1]
        if kind in ("weight", "running_psi2", "running_var"):
            value.mul_(torch.empty_like(value).uniform_(0.5, 2.0, generator=gen))
        elif kind in ("bias", "running_mean"):
            value.add_(0.3 * torch.randn(value.shape, generator=gen))
    save_checkpoint(state, path)


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def folded(data_bin, tmp_path_factory):
    """{case: (original checkpoint, folded checkpoint, pn-fold's output, original's sha256 before folding)}"""
    out = {}
    for seed, (case, (arch, flags, _)) in enumerate(CASES.items()):
        save_dir = tmp_path_factory.mktemp(case)
        original = train(data_bin, save_dir, arch, 4, flags)
        perturb_encoder_norms(original, seed)
        digest = sha(original)
        target = save_dir / "folded.pt"
        log = run("pn-fold", original, "--output", target)
        out[case] = (original, target, log, digest)
    return out


@pytest.mark.parametrize("case", CASES)
def test_fold_reports_what_it_folded_and_leaves_the_input_alone(case, folded):
    original, target, log, digest = folded[case]
    norms = 2 * LAYERS + 1  # two per encoder layer, and the final encoder norm
    linears = 4 * LAYERS + 2 * LAYERS  # q, k, v, fc1 per encoder layer; cross-attention k, v per decoder layer
    assert f"folded {norms} encoder norm(s)" in log and f"into {linears} linear layer(s)" in log
    assert CASES[case][2] in log
    assert sha(original) == digest
    model = load_checkpoint(target)["model"]
    assert not [k for k in model if k.startswith("encoder.") and "layer_norm" in k]
    assert "decoder.layers.0.self_attn_layer_norm.weight" in model  # the decoder's LayerNorms stay


def generate(data_bin, path):
    proc = subprocess.run(
        [str(BIN / "fairseq-generate"), str(data_bin), "--user-dir", str(REPO / "pn_fairseq"), "--path", str(path),
         "--beam", "5", "--batch-size", "4", "--required-batch-size-multiple", "1", "--cpu", "--gen-subset", "test"],
        cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    hyps = {}
    for line in proc.stdout.splitlines():
        if line.startswith("H-"):
            ident, score, text = line.split("\t")
            hyps[ident] = (float(score), text)
    return hyps


@pytest.mark.parametrize("case", CASES)
def test_generate_gives_the_same_hypotheses(case, folded, data_bin):
    original, target, _, _ = folded[case]
    before, after = generate(data_bin, original), generate(data_bin, target)
    assert len(before) == 12
    assert {k: text for k, (_, text) in after.items()} == {k: text for k, (_, text) in before.items()}
    for k, (score, _) in before.items():
        assert after[k][0] == pytest.approx(score, abs=1e-4), k


@pytest.mark.parametrize("case", CASES)
def test_folded_model_gives_the_same_log_probs(case, folded):
    from fairseq import checkpoint_utils

    original, target, _, _ = folded[case]
    (model,), _ = checkpoint_utils.load_model_ensemble([str(original)])
    (folded_model,), _ = checkpoint_utils.load_model_ensemble([str(target)])
    norms = [m for n, m in folded_model.named_modules() if n.startswith("encoder.") and n.endswith("layer_norm")]
    assert len(norms) == 2 * LAYERS + 1 and all(isinstance(m, FoldedNorm) for m in norms)
    assert {m.groups for m in norms} == {HEADS if case == "pn" else 0}
    gen = torch.Generator().manual_seed(0)
    src = torch.randint(4, 40, (3, 7), generator=gen)
    src[1, :2] = src[2, :4] = 1  # left padding (fairseq's default for the source), pad = 1
    lengths = (src != 1).sum(1)
    prev = torch.randint(4, 40, (3, 5), generator=gen)
    prev[:, 0], prev[2, 3:] = 2, 1  # eos first; right padding
    with torch.no_grad():
        outputs = [m.eval().get_normalized_probs(m(src, lengths, prev), log_probs=True) for m in (model, folded_model)]
        enc = [m.encoder(src, src_lengths=lengths)["encoder_out"][0] for m in (model, folded_model)]
    assert not torch.allclose(enc[0], enc[1], atol=1e-2)  # the encoder output itself changed...
    torch.testing.assert_close(outputs[1], outputs[0], rtol=0, atol=1e-5)  # ...the model's output did not


# ---- errors: one line, naming the problem ------------------------------------------------


def fold_error(*argv):
    with pytest.raises(SystemExit) as exc:
        fold_main([str(a) for a in argv])
    message = str(exc.value.code)
    assert message.startswith("pn-fold: error: ") and "\n" not in message
    return message


@pytest.fixture(scope="module")
def unfoldable(data_bin, tmp_path_factory):
    """A post-norm PN checkpoint and a pre-norm LayerNorm one, one update each."""
    return {
        "postln-pn": train(data_bin, tmp_path_factory.mktemp("postln-pn"), "transformer_postln", 1,
                           ["--norm-type", "power"]),
        "preln": train(data_bin, tmp_path_factory.mktemp("preln"), "transformer_preln", 1),
    }


def test_post_norm_is_refused(unfoldable, tmp_path):
    message = fold_error(unfoldable["postln-pn"], "--output", tmp_path / "out.pt")
    assert "post-norm" in message and "nothing to fold them into" in message
    assert not (tmp_path / "out.pt").exists()


def test_layer_norm_only_has_nothing_to_fold(unfoldable, tmp_path):
    message = fold_error(unfoldable["preln"], "--output", tmp_path / "out.pt")
    assert "nothing to fold" in message and "'layer'" in message
    assert not (tmp_path / "out.pt").exists()


def test_missing_and_garbage_checkpoints(tmp_path):
    assert "no such file" in fold_error(tmp_path / "missing.pt", "--output", tmp_path / "out.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    assert "not a loadable torch checkpoint" in fold_error(garbage, "--output", tmp_path / "out.pt")
    not_fairseq = tmp_path / "plain.pt"
    torch.save({"model": {"w": torch.zeros(2)}}, not_fairseq)
    assert "no transformer_pn model config" in fold_error(not_fairseq, "--output", tmp_path / "out.pt")
    assert not (tmp_path / "out.pt").exists()


def test_existing_output_needs_force_and_input_is_never_replaced(folded, tmp_path, capsys):
    original = folded["pn"][0]
    existing = tmp_path / "existing.pt"
    existing.write_bytes(b"keep me")
    assert "exists; pass --force" in fold_error(original, "--output", existing)
    assert existing.read_bytes() == b"keep me"
    assert "is the checkpoint to fold" in fold_error(original, "--output", original, "--force")
    assert fold_main([str(original), "--output", str(existing), "--force"]) == 0
    assert "wrote" in capsys.readouterr().out
    assert load_checkpoint(existing)["cfg"]["model"].norm_type == "folded"


def test_folding_twice_is_refused(folded, tmp_path):
    assert "already folded" in fold_error(folded["pn"][1], "--output", tmp_path / "again.pt")
