"""``replace_norms`` (issue 38): a ``torch.nn.TransformerEncoder`` (batch-first, with
``src_key_padding_mask``) and a small causal decoder written here, their LayerNorms replaced by
each norm, train exactly as the same models built with the norm directly (norms called with the
mask explicitly instead of through ``pad_mask_context``); padding values change no statistic
and no real token's output; the library path imports no fairseq; a norm that cannot take a
layer is refused in one line."""
import copy
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn as nn

from pn_fairseq.norms import build_norm, pad_mask_context, replace_norms

C, HEADS, VOCAB = 16, 2, 23
NORMS = [
    ("layer", {}),
    ("batch", {}),
    ("power_v", {}),
    ("power", dict(warmup_updates=2, groups=2)),
    ("power", dict(variant="paper", groups=2)),
    ("rms", {}),
    ("scale", {}),
    ("dyt", {}),
]
IDS = ["layer", "batch", "power_v", "power-reference", "power-paper", "rms", "scale", "dyt"]


def _padded_tokens(step, pad_token=0, seed=0):
    """tokens: B x T (right padding filled with ``pad_token``), pad_mask: B x T (True = pad)."""
    g = torch.Generator().manual_seed(seed * 100 + step)
    lengths = torch.tensor([7, 4, 6, 3])[torch.randperm(4, generator=g)]
    tokens = torch.randint(1, VOCAB, (4, 7), generator=g)
    mask = torch.arange(7)[None, :] >= lengths[:, None]
    return tokens.masked_fill(mask, pad_token), mask


# -- torch.nn.TransformerEncoder ---------------------------------------------------------------

class Encoder(nn.Module):
    """Embedding -> torch's batch-first post-norm TransformerEncoder (final norm too) -> logits."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Embedding(VOCAB, C)
        layer = nn.TransformerEncoderLayer(C, HEADS, 32, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, norm=nn.LayerNorm(C), enable_nested_tensor=False)
        self.out = nn.Linear(C, VOCAB)

    def forward(self, tokens, mask):
        return self.out(self.encoder(self.embed(tokens), src_key_padding_mask=mask))


def direct_encoder_forward(model, tokens, mask):
    """What ``nn.TransformerEncoderLayer`` computes (post-norm, ReLU, no dropout), written out
    with each norm called as ``norm(x, mask)``: the model built with the norm directly."""
    x = model.embed(tokens)
    for layer in model.encoder.layers:
        x = layer.norm1(x + layer.self_attn(x, x, x, key_padding_mask=mask, need_weights=False)[0], mask)
        x = layer.norm2(x + layer.linear2(torch.relu(layer.linear1(x))), mask)
    return model.out(model.encoder.norm(x, mask))


def _encoder_with_norms_built_directly(name, opts):
    model = Encoder()
    for layer in model.encoder.layers:
        layer.norm1 = build_norm(name, C, batch_first=True, **opts)
        layer.norm2 = build_norm(name, C, batch_first=True, **opts)
    model.encoder.norm = build_norm(name, C, batch_first=True, **opts)
    return model


# -- a small causal decoder --------------------------------------------------------------------

class Decoder(nn.Module):
    """Pre-norm causal decoder, batch-first: ``norm(C)`` builds each norm; ``explicit_mask``:
    call them as ``norm(x, pad_mask)`` (the norms here) or as ``norm(x)`` (nn.LayerNorm)."""

    def __init__(self, norm, explicit_mask):
        super().__init__()
        torch.manual_seed(1)
        self.explicit_mask = explicit_mask
        self.embed = nn.Embedding(VOCAB, C)
        self.pos = nn.Parameter(0.1 * torch.randn(8, C))
        self.attn = nn.ModuleList(nn.MultiheadAttention(C, HEADS, batch_first=True) for _ in range(2))
        self.ffn = nn.ModuleList(nn.Sequential(nn.Linear(C, 32), nn.ReLU(), nn.Linear(32, C)) for _ in range(2))
        self.norm_attn = nn.ModuleList(norm(C) for _ in range(2))
        self.norm_ffn = nn.ModuleList(norm(C) for _ in range(2))
        self.final = norm(C)
        self.out = nn.Linear(C, VOCAB)

    def _norm(self, norm, x, mask):
        return norm(x, mask) if self.explicit_mask else norm(x)

    def forward(self, tokens, mask):
        T = tokens.shape[1]
        future = torch.triu(torch.ones(T, T, dtype=torch.bool), 1)
        x = self.embed(tokens) + self.pos[:T]
        for attn, ffn, n1, n2 in zip(self.attn, self.ffn, self.norm_attn, self.norm_ffn):
            h = self._norm(n1, x, mask)
            x = x + attn(h, h, h, attn_mask=future, key_padding_mask=mask, need_weights=False)[0]
            x = x + ffn(self._norm(n2, x, mask))
        return self.out(self._norm(self.final, x, mask))


# -- training ----------------------------------------------------------------------------------

def _train(model, forward, steps=4, pad_token=0):
    """Adam on next-token cross-entropy over real tokens. Returns per step the real tokens'
    logits (before the update), and the final state (parameters and every buffer)."""
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    logits = []
    for step in range(steps):
        tokens, mask = _padded_tokens(step, pad_token)
        out = forward(model, tokens, mask)
        real = ~mask[:, 1:]
        loss = nn.functional.cross_entropy(out[:, :-1][real], tokens[:, 1:][real])
        opt.zero_grad()
        loss.backward()
        opt.step()
        logits.append(out[~mask].detach())
    state = {k: v.detach().clone() for k, v in model.named_parameters()}
    state.update({k: v.clone() for k, v in model.named_buffers()})
    return logits, state


def _through_context(model, tokens, mask):
    with pad_mask_context(model, mask):
        return model(tokens, mask)


def _assert_equal_runs(a, b):
    for step, (x, y) in enumerate(zip(a[0], b[0])):
        assert torch.equal(x, y), f"logits of step {step}"
    assert a[1].keys() == b[1].keys()
    for k in a[1]:
        assert torch.equal(a[1][k], b[1][k]), k


@pytest.mark.parametrize("name, opts", NORMS, ids=IDS)
def test_replaced_encoder_trains_as_the_encoder_built_with_the_norm(name, opts):
    replaced = Encoder()
    names = replace_norms(replaced, name, batch_first=True, **opts)
    assert sorted(names) == ["encoder.layers.0.norm1", "encoder.layers.0.norm2", "encoder.layers.1.norm1",
                             "encoder.layers.1.norm2", "encoder.norm"]
    direct = _encoder_with_norms_built_directly(name, opts)
    _assert_equal_runs(_train(replaced, _through_context), _train(direct, direct_encoder_forward))
    # Inference too, where torch's fused encoder path would compute LayerNorm itself.
    replaced.eval(), direct.eval()
    tokens, mask = _padded_tokens(9)
    with torch.no_grad():  # (torch's attention takes its own fast path here, equal to rounding)
        torch.testing.assert_close(_through_context(replaced, tokens, mask)[~mask],
                                   direct_encoder_forward(direct, tokens, mask)[~mask], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name, opts", NORMS, ids=IDS)
def test_replaced_causal_decoder_trains_as_the_decoder_built_with_the_norm(name, opts):
    replaced = Decoder(nn.LayerNorm, explicit_mask=False)
    assert len(replace_norms(replaced, name, batch_first=True, **opts)) == 5
    direct = Decoder(lambda c: build_norm(name, c, batch_first=True, **opts), explicit_mask=True)
    _assert_equal_runs(_train(replaced, _through_context), _train(direct, lambda m, t, k: m(t, k)))


PADDING_CASES = [(n, o) for n, o in NORMS if o.get("variant", "reference") != "reference" or n != "power"]


@pytest.mark.parametrize("name, opts", PADDING_CASES, ids=[i for i in IDS if i != "power-reference"])
def test_padding_values_change_no_statistic_and_no_real_output(name, opts):
    """Other tokens at the padding positions: every buffer and every real token's logits the
    same, exactly, over four training steps (encoder and decoder), and so every parameter.

    PN: one step only. Its backward hands each padding row ``-nu z / sqrt(psi2)`` (``g~ = g -
    nu z`` at every row, spec), which is 0 in the first backward (``nu`` starts at 0) and not
    after: from the second backward on it reaches the parameters below through the padding
    positions and real tokens' gradients through the attention of padding queries (so ``nu``
    too). The reference variant is left out: its ``nu`` averages over padding on purpose (spec,
    PN reference item 5) and the fused kernel derives its forward sum over real tokens as
    (all rows) - (padding rows), equal to rounding only."""
    for model_class in (Encoder, lambda: Decoder(nn.LayerNorm, explicit_mask=False)):
        runs = []
        for pad_token in (0, 5):
            model = model_class()
            replace_norms(model, name, batch_first=True, **opts)
            runs.append(_train(model, _through_context, steps=1 if name == "power" else 4, pad_token=pad_token))
        _assert_equal_runs(*runs)


def test_gamma_beta_device_dtype_and_mode_are_kept():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(C, C), nn.LayerNorm(C), nn.Sequential(nn.LayerNorm(C))).double().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.uniform_(-1, 1)
    shared = model[1]
    model.append(shared)  # one LayerNorm under two names
    old = {k: v.clone() for k, v in model.state_dict().items()}
    names = replace_norms(model, "power", select=r"^(1|3)$", groups=4)
    assert names == ["1", "3"] and model[1] is model[3] and isinstance(model[2][0], nn.LayerNorm)
    assert model[1].weight.dtype == torch.float64 and not model[1].training
    assert torch.equal(model[1].weight, old["1.weight"]) and torch.equal(model[1].bias, old["1.bias"])
    rms = replace_norms(model, "rms", select=lambda n: n == "2.0")
    assert rms == ["2.0"] and torch.equal(model[2][0].weight, old["2.0.weight"])


@pytest.mark.parametrize("layer, options, message", [
    (nn.LayerNorm((4, C)), {}, r"cannot replace 0 by 'power': it normalizes over \(4, 16\)"),
    (nn.LayerNorm(C, elementwise_affine=False), {}, r"cannot replace 0 by 'power': it has no gamma/beta"),
    (nn.LayerNorm(C), dict(groups=3), r"cannot replace 0 \(16 channels\) by 'power': embed_dim 16 is not divisible by groups=3"),
    (nn.LayerNorm(C), dict(momentum=0.5), r"cannot replace 0 \(16 channels\) by 'power': norm 'power' does not take option"),
])
def test_a_norm_that_cannot_take_the_layer_is_refused_in_one_line(layer, options, message):
    model = nn.Sequential(layer, nn.LayerNorm(C))
    with pytest.raises(ValueError, match=message) as err:
        replace_norms(model, "power", **options)
    assert "\n" not in str(err.value)
    assert isinstance(model[0], nn.LayerNorm) and isinstance(model[1], nn.LayerNorm)  # nothing changed
    with pytest.raises(ValueError, match="found no nn.LayerNorm selected by select="):
        replace_norms(model, "power", select="nothing")


def test_batch_first_equals_time_major():
    """The same tokens, B x T x C with batch_first against T x B x C: the same statistics and outputs."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(4, 7, C, generator=g, dtype=torch.float64)
    mask = torch.arange(7)[None, :] >= torch.tensor([7, 4, 6, 3])[:, None]
    for name, opts in NORMS:
        bf = build_norm(name, C, batch_first=True, **opts).double()
        tm = build_norm(name, C, **opts).double()
        for _ in range(3):
            torch.testing.assert_close(bf(x, mask), tm(x.transpose(0, 1), mask).transpose(0, 1), rtol=1e-12, atol=1e-12)
        for (k, a), (_, b) in zip(bf.named_buffers(), tm.named_buffers()):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match=r"pad_mask must be B x T = 4 x 7 for x of shape B x T x C"):
        build_norm("power", C, batch_first=True)(x, mask.t())


def test_the_library_path_imports_no_fairseq():
    code = textwrap.dedent("""
        import sys
        import torch
        import pn_fairseq.norms as norms
        layer = torch.nn.TransformerEncoderLayer(16, 2, 32, batch_first=True)
        model = torch.nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        assert len(norms.replace_norms(model, "power", batch_first=True, groups=2)) == 4
        x, mask = torch.randn(3, 5, 16), torch.zeros(3, 5, dtype=torch.bool)
        mask[1, 3:] = True
        with norms.pad_mask_context(model, mask):
            model(x, src_key_padding_mask=mask).sum().backward()
        assert "fairseq" not in sys.modules, sorted(m for m in sys.modules if "fairseq" in m)
        print("ok")
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-3000:]
