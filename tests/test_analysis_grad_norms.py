"""pn-analyze grad-norms on a tiny model, against gradients computed here independently:
the model and batches fairseq-train --seed S would have (built with fairseq's API), the
loss written out as cross-entropy against the label-smoothed target distribution,
torch.autograd.grad per batch, averaged, Frobenius norms."""
import json
import warnings

import numpy as np
import pytest
import torch

from pn_fairseq.cli.analyze import main

TINY = ["--encoder-layers", "2", "--decoder-layers", "2", "--encoder-embed-dim", "8", "--decoder-embed-dim", "8",
        "--encoder-ffn-embed-dim", "16", "--decoder-ffn-embed-dim", "16", "--encoder-attention-heads", "2",
        "--decoder-attention-heads", "2", "--share-all-embeddings",
        # dropout off: the gradients are then a function of the weights and batches alone
        "--dropout", "0", "--attention-dropout", "0", "--activation-dropout", "0"]
MAX_TOKENS, BATCHES, EPS = 150, 2, 0.1


def independent_norms(data_bin, arch, seed, layers=2):
    from fairseq import options, tasks, utils
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    flags = TINY + ["--encoder-layers", str(layers), "--decoder-layers", str(layers)]
    args = options.parse_args_and_arch(options.get_training_parser(), [
        str(data_bin), "--arch", arch, *flags, "--max-tokens", str(MAX_TOKENS), "--seed", str(seed), "--cpu"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # hydra's deprecation notices
        cfg = convert_namespace_to_omegaconf(args)
    np.random.seed(seed)  # what fairseq_cli.train.main does before building the model
    utils.set_torch_seed(seed)
    task = tasks.setup_task(cfg.task)
    model = task.build_model(cfg.model)
    task.load_dataset("train")
    itr = task.get_batch_iterator(
        dataset=task.dataset("train"), max_tokens=MAX_TOKENS, ignore_invalid_inputs=True,
        max_positions=utils.resolve_max_positions(task.max_positions(), model.max_positions(), MAX_TOKENS),
        required_batch_size_multiple=cfg.dataset.required_batch_size_multiple, seed=seed, epoch=1,
    ).next_epoch_itr(shuffle=True)
    names = [f"{side}.layers.{i}.{fc}.weight" for side in ("encoder", "decoder") for i in range(layers)
             for fc in ("fc1", "fc2")]
    params = dict(model.named_parameters())
    weights = [params[n] for n in names]
    total = [torch.zeros_like(w) for w in weights]
    model.train()
    for _ in range(BATCHES):
        sample = next(itr)
        logits = model(**sample["net_input"])[0]  # B x T x V
        lprobs = torch.log_softmax(logits.float(), dim=-1)
        target = sample["target"]
        keep = target.ne(task.target_dictionary.pad())
        vocab = lprobs.size(-1)
        # label smoothing 0.1: 1 - eps on the reference token, eps spread over the others
        q = torch.full_like(lprobs, EPS / (vocab - 1)).scatter_(-1, target.unsqueeze(-1), 1 - EPS)
        loss = -(q * lprobs).sum(-1)[keep].sum() / keep.sum()
        for acc, g in zip(total, torch.autograd.grad(loss, weights)):
            acc += g / BATCHES
    return {n: float(g.double().norm()) for n, g in zip(names, total)}


def run_cli(data_bin, out, *extra, archs=("transformer_postln", "transformer_preln")):
    args = ["grad-norms", *[a for arch in archs for a in ("--arch", arch)], "--data", str(data_bin),
            "--out", str(out), "--seeds", "1,2", "--batches", str(BATCHES), "--max-tokens", str(MAX_TOKENS), "--cpu",
            *TINY, *extra]
    assert main(args) == 0
    return json.loads((out / "grad-norms.json").read_text())


def test_numbers_match_independent_gradients(data_bin, tmp_path):
    data = run_cli(data_bin, tmp_path)
    assert (tmp_path / "grad-norms.png").stat().st_size > 1000
    for arch in ("transformer_postln", "transformer_preln"):
        per_seed = [independent_norms(data_bin, arch, seed) for seed in (1, 2)]
        for side in ("encoder", "decoder"):
            for w, fc in (("W1", "fc1"), ("W2", "fc2")):
                entry = data["archs"][arch][side][w]
                expected = np.array([[norms[f"{side}.layers.{i}.{fc}.weight"] for i in range(2)] for norms in per_seed])
                np.testing.assert_allclose(entry["per_seed"], expected, rtol=1e-4)
                np.testing.assert_allclose(entry["mean"], expected.mean(0), rtol=1e-4)
                np.testing.assert_allclose(entry["std"], expected.std(0, ddof=1), rtol=1e-3)


def test_depths_and_after_updates(data_bin, tmp_path, capsys):
    preln = ("transformer_preln",)
    data = run_cli(data_bin, tmp_path / "a", "--seeds", "1", "--depths", "1", archs=preln)
    # --depths 1: the 1-1 model's only (hence last) W2, both sides
    depth = data["depths"]["transformer_preln"]
    one = independent_norms(data_bin, "transformer_preln", 1, layers=1)
    assert depth["depths"] == [1]
    for side in ("encoder", "decoder"):
        assert depth[f"{side}_last_W2"]["per_seed"] == [[pytest.approx(one[f"{side}.layers.0.fc2.weight"], rel=1e-4)]]
        assert depth[f"{side}_last_W2"]["std"] == [0.0]  # one seed: no spread
    assert "[grad-norms] model 2/2 transformer_preln depth 1-1, seed 1 (1/1)" in capsys.readouterr().err
    # two Adam updates first: the measured model is no longer the initial one
    after = run_cli(data_bin, tmp_path / "b", "--seeds", "1", "--after-updates", "2", "--lr", "1e-2",
                    "--warmup-updates", "1", archs=preln)
    assert after["settings"]["after_updates"] == 2
    a = data["archs"]["transformer_preln"]["decoder"]["W2"]["mean"]
    b = after["archs"]["transformer_preln"]["decoder"]["W2"]["mean"]
    assert not np.allclose(a, b, rtol=1e-3)


@pytest.mark.parametrize("case, expected", [
    ("arch", "unknown architecture 'transformer_lstm'"),
    ("nodict", "no dict.*.txt dictionaries"),
    ("flag", "fairseq flags: argument --encoder-layers: invalid int value: 'two'"),
    ("unknown", "fairseq flags: unrecognized arguments: --no-such-flag"),
])
def test_bad_input_is_one_line(data_bin, tmp_path, capsys, case, expected):
    data = tmp_path if case == "nodict" else data_bin
    arch = "transformer_lstm" if case == "arch" else "transformer_preln"
    extra = {"flag": ["--encoder-layers", "two"], "unknown": ["--no-such-flag"]}.get(case, [])
    assert main(["grad-norms", "--arch", arch, "--data", str(data), "--out", str(tmp_path / "o"), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("pn-analyze grad-norms: error: ") and expected in err[-1], err
    assert not (tmp_path / "o").exists()
