"""--layernorm-embedding in the translation model: the embedding norms (encoder and decoder,
``B x T x C``) follow --norm-type / --decoder-norm-type like every other norm, and a
batch-statistics one takes only the real tokens' statistics (the padding mask reaches it)."""
import copy

import torch

import pn_fairseq  # noqa: F401
from pn_fairseq.norms import NormBase
from pn_fairseq.norms.registry import norm_name_of

from test_fixnorm import build


def test_embedding_norms_follow_the_norm_flags(data_bin):
    model = build(data_bin, "--layernorm-embedding", "--norm-type", "power", "--decoder-norm-type", "rms")
    assert norm_name_of(model.encoder.layernorm_embedding) == "power"
    assert norm_name_of(model.decoder.layernorm_embedding) == "rms"
    assert not any(isinstance(m, torch.nn.LayerNorm) and not isinstance(m, NormBase) for m in model.modules())
    stock = build(data_bin, "--layernorm-embedding", "--norm-type", "layer", "--decoder-norm-type", "layer")
    assert norm_name_of(stock.encoder.layernorm_embedding) == "layer"
    # fairseq's parameter names, so a stock checkpoint with --layernorm-embedding loads
    assert {"encoder.layernorm_embedding.weight", "encoder.layernorm_embedding.bias",
            "decoder.layernorm_embedding.weight", "decoder.layernorm_embedding.bias"} <= set(stock.state_dict())


def test_batch_statistics_embedding_norm_ignores_padding(data_bin):
    model = build(data_bin, "--layernorm-embedding", "--norm-type", "batch", "--dropout", "0")
    pad = model.encoder.padding_idx
    tokens = torch.tensor([[5, 6, 7, 8, 2], [9, 10, 2, pad, pad]])  # B 2 != T 5
    lengths = torch.tensor([5, 3])
    prev = torch.tensor([[2, 5, 6, 7, 8], [2, 9, 10, pad, pad]])
    other = copy.deepcopy(model)
    with torch.no_grad():  # the padding rows (zero at init) become arbitrary
        other.encoder.embed_tokens.weight[pad].normal_()
    inputs = []
    for m in (model, other):
        m.train()
        hook = m.encoder.layernorm_embedding.register_forward_pre_hook(lambda mod, a: inputs.append(a[0].clone()))
        m(tokens, lengths, prev)
        hook.remove()
    is_pad = tokens.eq(pad)
    assert inputs[0].shape == (2, 5, 32)  # B x T x C
    assert not torch.equal(inputs[0][is_pad], inputs[1][is_pad])  # the padding did reach the norm
    mine, theirs = model.encoder.layernorm_embedding, other.encoder.layernorm_embedding
    torch.testing.assert_close(mine.running_mean, theirs.running_mean, rtol=0, atol=0)
    torch.testing.assert_close(mine.running_var, theirs.running_var, rtol=0, atol=0)
    assert mine.running_mean.abs().max() > 0  # it did update from the real tokens
