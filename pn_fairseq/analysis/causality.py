"""Causality of the norms in a causal language model (issue 35).

In training mode a norm that divides by batch statistics pools every position of the batch,
so the output at position t can depend on tokens after t of the same sequence. Two
measurements, both on the plugin's own ``transformer_lm_pn`` built in-process:

- :func:`future_leak`: the forward probe. Two token batches that differ only after position
  ``t`` of sequence 0; the largest change of the logits at positions ``<= t`` of that sequence.
  Exactly 0 for a causal model. (Gradient probes mislead for PN: its approximate backward sends
  ``-nu z`` to every position, so only the forward is tested.)
- :func:`random_token_losses`: whether training *exploits* the leak. A small LM trained on
  i.i.d. uniform tokens drawn fresh every batch, where nothing can be learned honestly: the
  best honest loss is ``ln V``, so a training-mode loss below it is leakage; the eval-mode
  loss (running statistics, no batch pooling) on fresh batches shows what the model really
  predicts.
"""
import copy
import math
import os
import tempfile

import torch
import torch.nn.functional as F

# Norm cases of the measurements: label -> (--norm-type, extra flags, updates done before the probe).
# "power" in warm-up normalizes by the batch statistic; after it by psi2_{t-1}; --pn-causal never
# by the current batch.
WARMUP = 1000
CASES = {
    "layer": ("layer", [], 0),
    "rms": ("rms", [], 0),
    "batch": ("batch", [], 0),
    "power_v": ("power_v", [], 0),
    "power (in warm-up)": ("power", ["--pn-warmup-updates", str(WARMUP)], 0),
    "power (after warm-up)": ("power", ["--pn-warmup-updates", str(WARMUP)], WARMUP),
    "power --pn-causal (in warm-up)": ("power", ["--pn-warmup-updates", str(WARMUP), "--pn-causal"], 0),
}


def _dictionary_dir(vocab: int) -> str:
    """A data directory holding only ``dict.txt`` with ``vocab`` words: all that fairseq's
    language-modeling task reads to build a model."""
    path = tempfile.mkdtemp(prefix="pn-causality-")
    with open(os.path.join(path, "dict.txt"), "w") as f:
        for i in range(vocab):
            f.write(f"w{i} 1\n")
    return path


def build_lm(norm_type: str, extra=(), vocab: int = 64, layers: int = 2, dim: int = 64, heads: int = 2,
             tokens: int = 16, arch: str = "transformer_lm_pn", seed: int = 1):
    """``(model, task)``: a ``transformer_lm_pn`` built as fairseq-train builds it, dropout 0 (the
    probes compare two forwards), ``vocab`` real words besides fairseq's 4 specials."""
    from fairseq import options, tasks

    import pn_fairseq

    data = _dictionary_dir(vocab)
    argv = [data, "--user-dir", os.path.dirname(pn_fairseq.__file__), "--task", "language_modeling_pn",
            "--arch", arch, "--norm-type", norm_type, "--decoder-layers", str(layers),
            "--decoder-embed-dim", str(dim), "--decoder-ffn-embed-dim", str(2 * dim),
            "--decoder-attention-heads", str(heads), "--tokens-per-sample", str(tokens),
            "--dropout", "0", "--attention-dropout", "0", "--optimizer", "adam", "--lr", "1e-3",
            "--cpu", "--seed", str(seed), *extra]
    args = options.parse_args_and_arch(options.get_training_parser(), argv)
    torch.manual_seed(seed)
    task = tasks.setup_task(args)
    return task.build_model(args), task


def _tokens(task, batch: int, length: int, generator):
    """``B x T`` uniform random word indices (no specials)."""
    d = task.source_dictionary
    return torch.randint(d.nspecial, len(d), (batch, length), generator=generator)


def future_leak(model, task, t: int, train: bool = True, updates: int = 0, batch: int = 4,
                length: int = 16, seed: int = 0) -> float:
    """Largest ``|logit change|`` at positions ``<= t`` of sequence 0 when only its tokens after
    ``t`` change. Each forward runs on its own copy of ``model`` (a training forward moves
    running statistics). ``updates``: fairseq's update count before the forward (PN's warm-up
    clock)."""
    g = torch.Generator().manual_seed(seed)
    a = _tokens(task, batch, length, g)
    b = a.clone()
    b[0, t + 1:] = _tokens(task, 1, length - t - 1, g)[0]
    outs = []
    for tokens in (a, b):
        m = copy.deepcopy(model)
        m.train(train)
        if train:
            m.set_num_updates(updates)
        with torch.no_grad():
            outs.append(m(tokens)[0][0, : t + 1])
    return float((outs[0] - outs[1]).abs().max())


def _next_token_loss(model, tokens):
    """Mean next-token cross-entropy (nats) of ``tokens: B x T``, position t predicting t+1."""
    logits = model(tokens[:, :-1])[0]
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), tokens[:, 1:].reshape(-1))


def random_token_losses(norm_type: str, extra=(), batch: int = 4, length: int = 16, steps: int = 300,
                        last: int = 100, eval_batches: int = 20, vocab: int = 64, lr: float = 1e-3,
                        seed: int = 1, progress=None):
    """Train a small LM on fresh i.i.d. uniform tokens; return a dict with ``ln_v``, the mean
    training-mode loss of the last ``last`` steps (``train_loss``) and the eval-mode loss on
    ``eval_batches`` fresh batches (``eval_loss``), in nats per token."""
    model, task = build_lm(norm_type, extra, vocab=vocab, tokens=length, seed=seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.98))
    g = torch.Generator().manual_seed(seed + 1000)
    model.train()
    recent = []
    for step in range(steps):
        model.set_num_updates(step)
        loss = _next_token_loss(model, _tokens(task, batch, length + 1, g))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step >= steps - last:
            recent.append(float(loss.detach()))
        if progress is not None and (step + 1) % 100 == 0:
            progress(step + 1, float(loss.detach()))
    model.eval()
    with torch.no_grad():
        eval_loss = sum(float(_next_token_loss(model, _tokens(task, batch, length + 1, g)))
                        for _ in range(eval_batches)) / eval_batches
    n = len(task.source_dictionary) - task.source_dictionary.nspecial
    return {"ln_v": math.log(n), "train_loss": sum(recent) / len(recent), "eval_loss": eval_loss,
            "tokens_per_batch": batch * length, "steps": steps}
