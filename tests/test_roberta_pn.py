"""roberta_pn (pn_fairseq/models/roberta_pn.py): fairseq's RoBERTa with every encoder norm,
the embedding norm included, chosen by --norm-type, and the LM head's by --lm-head-norm-type.

Every arch x norm trains a few updates through fairseq's Trainer in this process, saves, loads
back through checkpoint_utils and validates; three combinations through fairseq-train and
fairseq-validate; the norm places are fairseq's own roberta's LayerNorm places; the embedding
norm's statistics are those of the real tokens; with LayerNorm the model is fairseq's roberta,
bit for bit, after a few updates.
"""
import copy
import math
import re
import subprocess

import pytest
import torch
import torch.nn as nn

import pn_fairseq  # noqa: F401  (allow-lists fairseq's checkpoint globals for torch.load)
from pn_fairseq.hooks.errors import PNUserError
from pn_fairseq.norms import NORM_CHOICES
from pn_fairseq.norms.registry import norm_name_of

from bert_corpus import TINY, build_corpus
from conftest import BIN, REPO, run

ARCHS = ("roberta_pn", "roberta_pn_prenorm")
FAIRSEQ_ARCH = {"roberta_pn": "roberta", "roberta_pn_prenorm": "roberta_prenorm"}
HEAD = "encoder.lm_head.layer_norm"
EMBEDDING_NORM = "encoder.sentence_encoder.layernorm_embedding"
TRAIN = ["--optimizer", "adam", "--lr", "1e-3", "--batch-size", "8", "--criterion", "masked_lm", "--seed", "1", "--cpu"]


def plugin_flags(arch):
    """PN trains one update on batch statistics, then on its running ones (fairseq's own
    roberta, built for comparison, has no such flag)."""
    return ["--pn-warmup-updates", "1"] if arch.startswith("roberta_pn") else []


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return build_corpus(tmp_path_factory.mktemp("mlm"))


def parse(corpus, arch, *extra):
    from fairseq import options

    return options.parse_args_and_arch(options.get_training_parser(), [
        str(corpus), "--user-dir", str(REPO / "pn_fairseq"), "--task", "masked_lm_pn", "--arch", arch,
        *TINY, *TRAIN, *plugin_flags(arch), *map(str, extra)])


def build(corpus, arch, *extra):
    from fairseq import tasks

    args = parse(corpus, arch, *extra)
    return tasks.setup_task(args).build_model(args)


def layer_norm_places(model):
    return {name for name, m in model.named_modules() if isinstance(m, nn.LayerNorm)}


@pytest.fixture(scope="module")
def fairseq_places(corpus):
    """Where fairseq's own roberta / roberta_prenorm have a LayerNorm, with the same flags."""
    return {arch: layer_norm_places(build(corpus, theirs)) for arch, theirs in FAIRSEQ_ARCH.items()}


@pytest.fixture(scope="module")
def training_cfg(corpus):
    """fairseq's structured config of one training command, converted once (the conversion
    takes seconds); each test puts its own model flags into ``cfg.model``, the one part that
    differs, as fairseq-train would have."""
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    return convert_namespace_to_omegaconf(parse(corpus, "roberta_pn"))


def train_in_process(cfg, args, updates=3):
    """fairseq-train's loop in this process: ``updates`` updates of fairseq's Trainer.
    Returns (trainer, task, the model's state before the first update)."""
    from fairseq import tasks, utils
    from fairseq.trainer import Trainer

    vars(cfg.model).clear()
    vars(cfg.model).update(vars(args), _name=args.arch)
    utils.set_torch_seed(1)
    task = tasks.setup_task(cfg.task)
    task.load_dataset("valid")
    trainer = Trainer(cfg, task, task.build_model(cfg.model), task.build_criterion(cfg.criterion))
    initial = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    batches = trainer.get_train_iterator(epoch=1).next_epoch_itr(shuffle=True)
    for _, sample in zip(range(updates), batches):
        trainer.train_step([sample])
    assert trainer.get_num_updates() == updates
    return trainer, task, initial


def valid_loss(task, model, criterion):
    """Masked-LM loss per masked token (nats) over the valid split, in eval mode."""
    model.eval()
    total = count = 0
    batches = task.get_batch_iterator(task.dataset("valid"), max_sentences=16).next_epoch_itr(shuffle=False)
    with torch.no_grad():
        for sample in batches:
            loss, size, _ = criterion(model, sample)
            total, count = total + float(loss), count + int(size)
    return total / count


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("norm,head", [(n, None) for n in NORM_CHOICES] + [("power", "batch"), ("rms", "power")])
def test_trains_loads_back_and_validates(corpus, training_cfg, fairseq_places, tmp_path, arch, norm, head):
    from fairseq import checkpoint_utils

    args = parse(corpus, arch, "--norm-type", norm, *(["--lm-head-norm-type", head] if head else []))
    trainer, task, initial = train_in_process(training_cfg, args)
    model = trainer.model
    # Every place fairseq's roberta has a LayerNorm holds the asked norm; the head keeps
    # LayerNorm unless --lm-head-norm-type says otherwise; no other norm exists.
    places = fairseq_places[arch]
    assert HEAD in places and (EMBEDDING_NORM in places) == (arch == "roberta_pn")
    kinds = {name: norm_name_of(m) for name, m in model.named_modules() if norm_name_of(m)}
    assert kinds == {name: (head or "layer") if name == HEAD else norm for name in places}
    if norm != "layer":
        assert layer_norm_places(model) == ({HEAD} if head in (None, "layer") else set())
    if norm in ("batch", "power_v", "power"):  # the statistics moved: the stack trained on them
        embedding_or_first = EMBEDDING_NORM if arch == "roberta_pn" else "encoder.sentence_encoder.layers.0.self_attn_layer_norm"
        assert int(model.get_submodule(embedding_or_first).num_batches_tracked) > 0

    assert not torch.equal(initial["encoder.sentence_encoder.layers.0.fc1.weight"],
                           model.state_dict()["encoder.sentence_encoder.layers.0.fc1.weight"])

    path = tmp_path / "checkpoint.pt"
    trainer.consolidate_optimizer()
    trainer.save_checkpoint(str(path), {})
    models, cfg, loaded_task = checkpoint_utils.load_model_ensemble_and_task([str(path)])
    loaded = models[0]
    assert type(loaded).__name__ == "RobertaPNModel"
    theirs, mine = model.state_dict(), loaded.state_dict()
    assert theirs.keys() == mine.keys()
    assert all(torch.equal(theirs[k], mine[k]) for k in theirs)
    loaded_task.load_dataset("valid")
    loss = valid_loss(loaded_task, loaded, loaded_task.build_criterion(cfg.criterion))
    # Finite, near ln(vocabulary) after 3 updates, and what the trained model itself gives.
    assert math.isfinite(loss) and 0.5 * math.log(len(task.source_dictionary)) < loss < 2 * math.log(len(task.source_dictionary))
    assert loss == pytest.approx(valid_loss(task, model, trainer.criterion), rel=1e-6)


@pytest.mark.parametrize("impl", ["eager", "fused"])
@pytest.mark.parametrize("norm", ["batch", "power_v", "power"])
def test_embedding_norm_statistics_ignore_padding(corpus, norm, impl):
    """The embedding norm (B x T x C, before fairseq's transpose) takes only real tokens'
    statistics: different values at the padding positions leave its buffers and the real
    positions' outputs as they were; BN's running mean is momentum x the real tokens' mean."""
    model = build(corpus, "roberta_pn", "--norm-type", norm, "--pn-warmup-updates", "10", "--norm-impl", impl)
    enc = model.encoder.sentence_encoder
    pad = enc.padding_idx
    tokens = torch.tensor([[0, 5, 6, 7, 8, 2], [0, 9, 10, 2, pad, pad], [0, 11, 2, pad, pad, pad]])  # B 3 != T 6
    is_pad = tokens.eq(pad)
    other = copy.deepcopy(model)
    with torch.no_grad():  # padding's embedding rows (zero from BERT's init) become arbitrary
        other.encoder.sentence_encoder.embed_tokens.weight[pad].normal_()
        other.encoder.sentence_encoder.embed_positions.weight[pad].normal_()
    outs, inputs = [], []
    for m in (model, other):
        m.train()
        norm_module = m.encoder.sentence_encoder.layernorm_embedding
        hook = norm_module.register_forward_pre_hook(lambda mod, a: inputs.append(a[0].detach().clone()))
        torch.manual_seed(3)  # the same dropout masks
        out, _ = m(tokens, features_only=True)
        out.pow(2).sum().backward()  # PN's backward statistic too
        hook.remove()
        outs.append(out.detach())
    assert inputs[0].shape == (3, 6, 32)  # B x T x C
    assert not torch.equal(inputs[0][is_pad], inputs[1][is_pad])  # the padding did reach the norm
    assert torch.equal(inputs[0][~is_pad], inputs[1][~is_pad])
    mine, theirs = (m.encoder.sentence_encoder.layernorm_embedding for m in (model, other))
    # Eager: exactly. Fused: within float32 rounding (the CPU kernels' psi2 differs in its last
    # bit here, and the rest follows from it); a statistic that took the padding in would be
    # off by O(1).
    tol = 0.0 if impl == "eager" else 1e-4
    for name, buf in mine.named_buffers():
        scale = float(buf.abs().max()) if buf.is_floating_point() else 0.0
        torch.testing.assert_close(buf, dict(theirs.named_buffers())[name], rtol=0, atol=tol * scale, msg=name)
    torch.testing.assert_close(outs[0][~is_pad], outs[1][~is_pad], rtol=0, atol=tol)
    if norm == "batch":
        # The reference BN divides each position by its RMS over the channels, then
        # running_mean = (1 - m) * 0 + m * mean over the real tokens (m = 0.05).
        real = inputs[0][~is_pad].double()
        scaled = real / real.pow(2).mean(-1, keepdim=True).add(1e-5).sqrt()
        torch.testing.assert_close(mine.running_mean.double(), 0.05 * scaled.mean(0), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("head", [["power_v"], ["batch", "--norm-variant", "paper"]])
def test_head_norm_without_masked_positions_masks_padding(corpus, head):
    """A batch-statistics LM head norm fed every position (B x T x C, the criterion passes no
    masked positions when a batch has none) takes the statistics of the real tokens, as when
    it is fed those tokens' N x C rows. (The reference BN fills padding with the batch mean
    and counts it in its variance, as the released code did: not this test's.)"""
    model = build(corpus, "roberta_pn", "--lm-head-norm-type", *head, "--dropout", "0", "--attention-dropout", "0")
    pad = model.encoder.sentence_encoder.padding_idx
    tokens = torch.tensor([[0, 5, 6, 7, 2], [0, 9, 2, pad, pad]])
    real = tokens.ne(pad)
    other = copy.deepcopy(model)
    model.train(), other.train()
    every, _ = model(tokens)  # B x T x V
    rows, _ = other(tokens, masked_tokens=real)  # N x V
    assert every.shape[:2] == tokens.shape
    torch.testing.assert_close(every[real], rows, rtol=0, atol=1e-5)
    norm, norm_rows = model.encoder.lm_head.layer_norm, other.encoder.lm_head.layer_norm
    assert int(norm.num_batches_tracked) == 1
    for name, buf in norm.named_buffers():
        torch.testing.assert_close(buf, dict(norm_rows.named_buffers())[name], rtol=1e-6, atol=1e-7, msg=name)


@pytest.mark.parametrize("flags,fragment", [
    (["--decoder-norm-type", "power"], "--decoder-norm-type power does not apply to roberta_pn"),
    (["--pn-causal", "--norm-type", "power"], "--pn-causal does not apply to roberta_pn: its encoder is bidirectional"),
    (["--deepnorm"], "--deepnorm does not apply to roberta_pn"),
    (["--fixnorm"], "--fixnorm does not apply to roberta_pn"),
])
def test_flags_that_do_not_apply_are_refused_in_one_line(corpus, flags, fragment):
    with pytest.raises(PNUserError) as e:
        build(corpus, "roberta_pn", *flags)
    assert fragment in str(e.value) and "\n" not in str(e.value)


def test_refusal_from_the_command_line(corpus, tmp_path):
    proc = run_train(corpus, tmp_path, "roberta_pn", "--pn-causal", check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "--pn-causal does not apply to roberta_pn" in errors[0], proc.stderr[-2000:]


def test_checkpoint_norm_mismatch_names_the_head_flag(corpus):
    trained = build(corpus, "roberta_pn", "--lm-head-norm-type", "power")
    model = build(corpus, "roberta_pn")
    with pytest.raises(PNUserError, match=r"a 'power' norm at encoder\.lm_head\.layer_norm.*pass --lm-head-norm-type power"):
        model.load_state_dict(trained.state_dict())
    encoder_norm = build(corpus, "roberta_pn", "--norm-type", "rms")
    with pytest.raises(PNUserError, match=r"layernorm_embedding, but this model was built with --norm-type rms"):
        encoder_norm.load_state_dict(model.state_dict())


# -- fairseq-train and fairseq-validate, as the rows run them --

def run_train(corpus, save_dir, arch, *extra, check=True):
    cmd = [str(BIN / "fairseq-train"), str(corpus), "--user-dir", str(REPO / "pn_fairseq"), "--task", "masked_lm_pn",
           "--arch", arch, *TINY, *TRAIN, *plugin_flags(arch), "--max-update", "4", "--save-dir", str(save_dir), "--no-epoch-checkpoints",
           "--no-progress-bar", "--log-format", "simple", "--log-interval", "1", *map(str, extra)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if check:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.mark.parametrize("arch,norm", [("roberta_pn", "layer"), ("roberta_pn_prenorm", "power"), ("roberta_pn", "batch")])
def test_fairseq_train(corpus, tmp_path, arch, norm):
    proc = run_train(corpus, tmp_path, arch, "--norm-type", norm)
    ckpt = torch.load(tmp_path / "checkpoint_last.pt")
    assert ckpt["cfg"]["model"].norm_type == norm and ckpt["cfg"]["model"].arch == arch
    assert ckpt["optimizer_history"][-1]["num_updates"] == 4
    # fairseq-train validates after its last update
    loss = float(re.search(r"valid on 'valid' subset \| loss ([^ ]+)", proc.stdout + proc.stderr).group(1))
    assert math.isfinite(loss) and loss > 0
    if norm == "power":  # fairseq-validate loads it back and gets the same loss (same masks, running statistics)
        out = run("fairseq-validate", corpus, "--user-dir", REPO / "pn_fairseq", "--task", "masked_lm_pn",
                  "--path", tmp_path / "checkpoint_last.pt", "--batch-size", "16", "--cpu")
        assert float(re.search(r"valid on 'valid' subset \| loss ([^ ]+)", out).group(1)) == loss


def test_layer_norm_is_fairseq_roberta_bit_for_bit(corpus, training_cfg):
    """With LayerNorm, roberta_pn after 4 updates equals fairseq's own roberta trained with the
    same flags and seed, parameter for parameter: the swap changes nothing else (random
    initialisation, dropout, data order)."""
    states = {}
    for arch in ("roberta", "roberta_pn"):
        trainer, _, initial = train_in_process(training_cfg, parse(corpus, arch), updates=4)
        states[arch] = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    theirs, mine = states["roberta"], states["roberta_pn"]
    assert theirs.keys() == mine.keys()
    assert [k for k in theirs if not torch.equal(theirs[k], mine[k])] == []
    assert not torch.equal(initial["encoder.sentence_encoder.layers.0.fc1.weight"],
                           mine["encoder.sentence_encoder.layers.0.fc1.weight"])  # it trained


@pytest.mark.parametrize("norm", ["batch", "power"])
def test_activation_checkpointing_changes_nothing(corpus, norm):
    """--checkpoint-activations (fairseq's wrapper around each layer, the norms replaying the
    recomputed forward): the same loss, gradients and running statistics as without it."""
    from fairseq.modules.checkpoint_activations import checkpoint_wrapper  # noqa: F401

    results = []
    for flags in ([], ["--checkpoint-activations"]):
        torch.manual_seed(5)
        model = build(corpus, "roberta_pn", "--norm-type", norm, "--dropout", "0", "--attention-dropout", "0", *flags)
        layer = model.encoder.sentence_encoder.layers[0]
        assert hasattr(layer, "precheckpoint_forward") == bool(flags)  # fairseq's wrapper is on
        model.train()
        tokens = torch.tensor([[0, 5, 6, 7, 8, 2], [0, 9, 10, 2, 1, 1]])
        logits, _ = model(tokens, masked_tokens=tokens.ne(1))
        logits.logsumexp(-1).sum().backward()
        results.append(({k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None},
                         {k: b.clone() for k, b in model.state_dict().items() if "running" in k or "tracked" in k}))
    (grads, bufs), (grads_ckpt, bufs_ckpt) = results
    assert grads.keys() == grads_ckpt.keys() and bufs.keys() == bufs_ckpt.keys() and bufs
    for k in grads:
        torch.testing.assert_close(grads_ckpt[k], grads[k], rtol=1e-5, atol=1e-7, msg=k)
    for k in bufs:
        torch.testing.assert_close(bufs_ckpt[k], bufs[k], rtol=1e-6, atol=0, msg=k)
