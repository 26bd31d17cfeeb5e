"""DeepNorm (pn_fairseq/models/deepnorm.py): the paper's Table 1 constants, the residual
x = Norm(alpha * x + G(x)), the beta-scaled initialisation, and its combination with --norm-type."""
import math
from argparse import Namespace

import pytest
import torch
from fairseq.models.transformer import TransformerConfig

import pn_fairseq  # noqa: F401  (registers the architectures)
from pn_fairseq.hooks.errors import PNUserError
from pn_fairseq.models.architectures import ARCHITECTURES
from pn_fairseq.models.deepnorm import TORCHSCALE_ENCODER_BETA_COEF, deepnorm_constants, xavier_normal_std
from pn_fairseq.models.layers import PNTransformerDecoderLayer, PNTransformerEncoderLayer
from pn_fairseq.models.norm_options import fill_norm_defaults
from pn_fairseq.norms import LayerNorm, RMSNorm


@pytest.mark.parametrize("n, m", [(1, 1), (3, 3), (6, 6), (12, 6), (18, 18), (100, 100), (6, 1)])
def test_constants_follow_table_1(n, m):
    c = deepnorm_constants(n, m)
    assert c.encoder_alpha == pytest.approx(0.81 * (n ** 4 * m) ** (1 / 16), rel=1e-12)
    assert c.encoder_beta == pytest.approx(0.87 * (n ** 4 * m) ** (-1 / 16), rel=1e-12)
    assert c.decoder_alpha == pytest.approx((3 * m) ** 0.25, rel=1e-12)
    assert c.decoder_beta == pytest.approx((12 * m) ** -0.25, rel=1e-12)
    # torchscale (decoder.py) divides by init_scale = (12M)^0.25: the same beta; its encoder
    # divides by (N^4 M)^0.0625 / 1.15, which is 1.15/0.87 = 1.32 times the paper's beta.
    assert c.decoder_beta == pytest.approx(1 / math.pow(12.0 * m, 0.25))
    torchscale_encoder_beta = 1 / (math.pow(math.pow(n, 4) * m, 0.0625) / 1.15)
    assert torchscale_encoder_beta / c.encoder_beta == pytest.approx(TORCHSCALE_ENCODER_BETA_COEF / 0.87)


def test_constants_for_the_rows():
    # 6+6 (IWSLT14 row) and 3+3 (Multi30k row), rounded
    c6 = deepnorm_constants(6, 6)
    assert (round(c6.encoder_alpha, 3), round(c6.encoder_beta, 3)) == (1.418, 0.497)
    assert (round(c6.decoder_alpha, 3), round(c6.decoder_beta, 3)) == (2.060, 0.343)
    c3 = deepnorm_constants(3, 3)
    assert (round(c3.encoder_alpha, 3), round(c3.encoder_beta, 3)) == (1.142, 0.617)
    assert (round(c3.decoder_alpha, 3), round(c3.decoder_beta, 3)) == (1.732, 0.408)


def config(arch="transformer_deepnorm", layers=6, dim=256, ffn=512, **extra):
    args = Namespace(encoder_layers=layers, decoder_layers=layers, encoder_embed_dim=dim, decoder_embed_dim=dim,
                     encoder_ffn_embed_dim=ffn, decoder_ffn_embed_dim=ffn, encoder_attention_heads=4,
                     decoder_attention_heads=4, **extra)
    ARCHITECTURES[arch](args)
    fill_norm_defaults(args)
    return TransformerConfig.from_namespace(args)


def test_architecture_is_post_norm_with_deepnorm():
    cfg = config()
    assert cfg.deepnorm is True and not cfg.encoder.normalize_before and not cfg.decoder.normalize_before
    assert cfg.norm_type == "layer" and cfg.decoder_norm_type == "layer"
    assert config("transformer_postln").deepnorm is False
    assert config("transformer_deepnorm_iwslt_de_en").encoder.ffn_embed_dim == 512


def test_alpha_and_the_scaled_weights_at_initialisation():
    cfg = config(layers=6)
    c = deepnorm_constants(6, 6)
    enc, dec = PNTransformerEncoderLayer(cfg), PNTransformerDecoderLayer(cfg)
    assert enc.residual_alpha == pytest.approx(c.encoder_alpha) and dec.residual_alpha == pytest.approx(c.decoder_alpha)

    def check(linear, gain):
        w = linear.weight.detach()
        expected = xavier_normal_std(w.shape[1], w.shape[0], gain)
        assert w.std().item() == pytest.approx(expected, rel=0.03)
        assert w.mean().abs().item() < 0.05 * expected

    for layer, beta, attns in ((enc, c.encoder_beta, [enc.self_attn]), (dec, c.decoder_beta, [dec.self_attn, dec.encoder_attn])):
        for attn in attns:
            check(attn.v_proj, beta)
            check(attn.out_proj, beta)
            check(attn.q_proj, 1.0)
            check(attn.k_proj, 1.0)
        check(layer.fc1, beta)
        check(layer.fc2, beta)


def test_without_deepnorm_fairseqs_residual_and_initialisation_are_untouched():
    cfg = config("transformer_postln")
    torch.manual_seed(0)
    ours = PNTransformerEncoderLayer(cfg)
    assert ours.residual_alpha == 1.0
    from fairseq.modules.transformer_layer import TransformerEncoderLayerBase

    torch.manual_seed(0)
    stock = TransformerEncoderLayerBase(cfg)
    for name, p in stock.named_parameters():
        torch.testing.assert_close(ours.state_dict()[name], p.detach(), rtol=0, atol=0)
    x, r = torch.randn(3, 2, 256), torch.randn(3, 2, 256)
    torch.testing.assert_close(ours.residual_connection(x, r), r + x, rtol=0, atol=0)


@pytest.mark.parametrize("norm_type, cls", [("layer", LayerNorm), ("rms", RMSNorm)])
def test_encoder_layer_computes_norm_of_alpha_x_plus_sublayer(norm_type, cls):
    cfg = config(layers=2, dim=16, ffn=32, norm_type=norm_type, dropout=0.0)
    layer = PNTransformerEncoderLayer(cfg).double().eval()
    assert isinstance(layer.self_attn_layer_norm, cls) and isinstance(layer.final_layer_norm, cls)
    alpha = deepnorm_constants(2, 2).encoder_alpha
    x = torch.randn(5, 3, 16, dtype=torch.float64)
    mask = torch.zeros(3, 5, dtype=torch.bool)
    mask[1, 3:] = True
    with torch.no_grad():
        a, _ = layer.self_attn(query=x, key=x, value=x, key_padding_mask=mask, need_weights=False)
        h = layer.self_attn_layer_norm(alpha * x + a)
        f = layer.fc2(torch.relu(layer.fc1(h)))
        expected = layer.final_layer_norm(alpha * h + f)
        got = layer(x, mask)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)


def test_decoder_scales_every_residual():
    cfg = config(layers=2, dim=16, ffn=32, dropout=0.0)
    layer = PNTransformerDecoderLayer(cfg).double().eval()
    calls = []
    original = type(layer).residual_connection

    def spy(self, x, residual):
        out = original(self, x, residual)
        calls.append(torch.allclose(out, layer.residual_alpha * residual + x))
        return out

    type(layer).residual_connection, saved = spy, original
    try:
        x, enc = torch.randn(4, 2, 16, dtype=torch.float64), torch.randn(6, 2, 16, dtype=torch.float64)
        with torch.no_grad():
            layer(x, encoder_out=enc, encoder_padding_mask=None)
    finally:
        type(layer).residual_connection = saved
    assert calls == [True, True, True]  # self-attention, cross-attention, FFN
    assert layer.residual_alpha == pytest.approx((3 * 2) ** 0.25)


def test_pre_norm_is_refused():
    cfg = config(encoder_normalize_before=True)
    with pytest.raises(PNUserError, match="--deepnorm is a post-norm scheme.*--encoder-normalize-before"):
        PNTransformerEncoderLayer(cfg)


def test_grad_norms_analysis_accepts_the_new_architectures(data_bin, tmp_path):
    import json

    from pn_fairseq.cli.analyze import main

    archs = ["transformer_deepnorm", "transformer_rms", "transformer_scale", "transformer_dyt"]
    tiny = ["--encoder-layers", "2", "--decoder-layers", "2", "--encoder-embed-dim", "8", "--decoder-embed-dim", "8",
            "--encoder-ffn-embed-dim", "16", "--decoder-ffn-embed-dim", "16", "--encoder-attention-heads", "2",
            "--decoder-attention-heads", "2", "--share-all-embeddings"]
    argv = ["grad-norms", "--data", str(data_bin), "--out", str(tmp_path / "o"), "--seeds", "1", "--batches", "1",
            "--max-tokens", "150", "--cpu"]
    for arch in archs:
        argv += ["--arch", arch]
    assert main(argv + tiny) == 0
    result = json.loads((tmp_path / "o" / "grad-norms.json").read_text())
    assert sorted(result["archs"]) == sorted(archs)
    for arch in archs:
        values = result["archs"][arch]["encoder"]["W2"]["mean"]
        assert len(values) == 2 and all(v > 0 for v in values)
