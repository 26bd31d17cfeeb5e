"""--fixnorm (FixNorm, pn_fairseq/models/fixnorm.py): unit-length embedding rows in the lookup
and in the tied output projection, checked against values computed here; off by default;
a few fairseq-train updates then fairseq-generate."""
import math

import pytest
import torch

import pn_fairseq  # noqa: F401  (allow-lists fairseq's checkpoint globals for torch.load)

from conftest import REPO, run
from test_new_rows import TINY


def build(data_bin, *extra):
    from fairseq import options, tasks

    args = options.parse_args_and_arch(options.get_training_parser(), [
        str(data_bin), "--user-dir", str(REPO / "pn_fairseq"), "--task", "translation_pn", "--arch", "transformer_scale",
        *TINY, "--cpu", *extra])
    task = tasks.setup_task(args)
    return task.build_model(args)


def test_fixnorm_embeddings_and_logits(data_bin):
    model = build(data_bin, "--fixnorm").eval()
    emb, dec = model.encoder.embed_tokens, model.decoder
    assert emb.weight is dec.embed_tokens.weight is dec.output_projection.weight  # shared, one parameter
    with torch.no_grad():
        emb.weight.mul_(torch.rand(emb.weight.shape[0], 1) * 5 + 0.1)  # rows of very different lengths
    tokens = torch.tensor([[5, 6, 7, 2], [1, 8, 9, 2]])  # 1 = padding
    looked_up = emb(tokens)
    norms = looked_up.norm(dim=-1)
    torch.testing.assert_close(norms[tokens != 1], torch.ones(int((tokens != 1).sum())))
    assert torch.equal(looked_up[tokens == 1], torch.zeros(1, 32))  # padding's row stays zero
    # The encoder's input is sqrt(d) * unit row (+ positions): length g = sqrt(d).
    assert model.encoder.embed_scale == pytest.approx(math.sqrt(32))
    feats = torch.randn(3, 32)
    unit = emb.weight / emb.weight.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    torch.testing.assert_close(dec.output_layer(feats), feats @ unit.t())


def test_without_fixnorm_nothing_changes(data_bin):
    model = build(data_bin)
    assert type(model.encoder.embed_tokens) is torch.nn.Embedding
    assert type(model.decoder.output_projection) is torch.nn.Linear
    feats = torch.randn(3, 32)
    torch.testing.assert_close(model.decoder.output_layer(feats), feats @ model.decoder.embed_tokens.weight.t())


def test_fixnorm_trains_and_decodes(data_bin, tmp_path):
    run("fairseq-train", data_bin, "--user-dir", REPO / "pn_fairseq", "--task", "translation_pn",
        "--arch", "transformer_scale", *TINY, "--fixnorm", "--optimizer", "adam", "--lr", "1e-3",
        "--lr-scheduler", "inverse_sqrt", "--warmup-updates", "2", "--criterion", "label_smoothed_cross_entropy",
        "--label-smoothing", "0.1", "--max-tokens", "400", "--max-update", "3", "--save-dir", tmp_path, "--cpu",
        "--no-progress-bar", "--seed", "1", "--no-epoch-checkpoints")
    ckpt = torch.load(tmp_path / "checkpoint_last.pt")  # pn_fairseq allow-lists what fairseq stores
    assert ckpt["cfg"]["model"].fixnorm is True
    assert "encoder.embed_tokens.weight" in ckpt["model"]  # the checkpoint keys do not change
    out = run("fairseq-generate", data_bin, "--user-dir", REPO / "pn_fairseq", "--path", tmp_path / "checkpoint_last.pt",
              "--beam", "5", "--batch-size", "4", "--cpu", "--gen-subset", "test", "--required-batch-size-multiple", "1")
    assert "BLEU4 = " in out
