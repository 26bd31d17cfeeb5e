"""The rows beyond the two papers (rms, scale, dyt, deepnorm): DRY_RUN flags on Multi30k and
IWSLT14, and a few fairseq-train updates of each architecture then fairseq-generate."""
import pytest
import torch

import pn_fairseq  # noqa: F401  (allow-lists fairseq's checkpoint globals for torch.load)
from pn_fairseq.evaluation.results import ROWS as RESULT_ROWS

from conftest import REPO, run
from test_row_scripts import IWSLT, dry_run, flags

NEW_ROWS = ["rms", "scale", "dyt", "deepnorm"]


@pytest.mark.parametrize("dataset", ["multi30k", "iwslt14"])
@pytest.mark.parametrize("row", NEW_ROWS)
def test_dry_run(dataset, row):
    cmds = dry_run(f"{dataset}/{row}.sh")
    train = flags(cmds["fairseq-train"])
    suffix = "" if dataset == "multi30k" else "_iwslt_de_en"
    assert train["--arch"] == f"transformer_{row}{suffix}"
    if dataset == "multi30k":
        assert (train["--encoder-layers"], train["--encoder-embed-dim"], train["--max-update"], train["--lr"]) == (
            "3", "256", "600", "1e-3")
    else:
        for flag, value in IWSLT.items():
            assert train[flag] == value, flag
    assert train.get("--dyt-alpha-init") == ("0.5" if row == "dyt" else None)
    assert "fairseq-generate" in cmds and "pn-score" in cmds
    assert flags(cmds["pn_fairseq.cli.row_results"]).get("--paper", "") == ""
    assert row in RESULT_ROWS
    conf = (REPO / "configs" / dataset / f"{row}.conf").read_text()
    assert "ARCH=" in conf and ("2019" in conf or "2022" in conf or "2025" in conf)  # the paper is named


TINY = [
    "--encoder-layers", "2", "--decoder-layers", "2", "--encoder-embed-dim", "32", "--decoder-embed-dim", "32",
    "--encoder-ffn-embed-dim", "64", "--decoder-ffn-embed-dim", "64",
    "--encoder-attention-heads", "4", "--decoder-attention-heads", "4", "--share-all-embeddings",
]
CASES = {
    "rms": ("transformer_rms", ()),
    "scale": ("transformer_scale", ()),
    "dyt": ("transformer_dyt", ("--dyt-alpha-init", "0.5")),
    "deepnorm": ("transformer_deepnorm", ()),
}


@pytest.fixture(scope="module")
def trained(data_bin, tmp_path_factory):
    out = {}
    for case, (arch, extra) in CASES.items():
        save_dir = tmp_path_factory.mktemp(case.replace("+", "_"))
        log = run("fairseq-train", data_bin, "--user-dir", REPO / "pn_fairseq", "--task", "translation_pn",
                  "--arch", arch, *TINY, "--optimizer", "adam", "--lr", "1e-3", "--lr-scheduler", "inverse_sqrt",
                  "--warmup-updates", "2", "--criterion", "label_smoothed_cross_entropy", "--label-smoothing", "0.1",
                  "--max-tokens", "400", "--max-update", "3", "--save-dir", save_dir, "--cpu", "--no-progress-bar",
                  "--log-interval", "1", "--seed", "1", "--no-epoch-checkpoints", *extra)
        out[case] = (save_dir, log)
    return out


@pytest.mark.parametrize("case", list(CASES))
def test_train_then_generate(case, trained, data_bin):
    save_dir, log = trained[case]
    ckpt = torch.load(save_dir / "checkpoint_last.pt")
    assert ckpt["optimizer_history"][-1]["num_updates"] == 3
    state, cfg = ckpt["model"], ckpt["cfg"]["model"]
    for v in state.values():
        assert torch.isfinite(v).all()
    norm = "layer" if case == "deepnorm" else case  # deepnorm with --norm-type rms: tests/test_deepnorm.py
    prefixes = ["encoder.layers.0.self_attn_layer_norm", "decoder.layers.1.final_layer_norm"]
    if case in ("rms", "scale", "dyt"):
        prefixes += ["encoder.layer_norm", "decoder.layer_norm"]  # pre-norm: final norms too
    else:
        assert cfg.deepnorm is True and "encoder.layer_norm.weight" not in state  # post-norm
    keys = {"layer": {"weight", "bias"}, "rms": {"weight"}, "scale": {"scale"}, "dyt": {"alpha", "weight", "bias"}}[norm]
    for prefix in prefixes:
        assert {k[len(prefix) + 1:] for k in state if k.startswith(prefix + ".")} == keys, prefix
    if case == "dyt":
        assert cfg.dyt_alpha_init == 0.5
        assert not torch.equal(state["encoder.layers.0.final_layer_norm.alpha"], torch.tensor([0.5]))  # learned
    out = run("fairseq-generate", data_bin, "--user-dir", REPO / "pn_fairseq", "--path", save_dir / "checkpoint_last.pt",
              "--beam", "5", "--batch-size", "4", "--cpu", "--gen-subset", "test", "--required-batch-size-multiple", "1")
    assert "BLEU4 = " in out and sum(line.startswith("H-") for line in out.splitlines()) == 12


@pytest.mark.parametrize("case", list(CASES))
def test_incremental_decoding_matches_full_forward(case, trained):
    from fairseq import checkpoint_utils

    models, _ = checkpoint_utils.load_model_ensemble([str(trained[case][0] / "checkpoint_last.pt")])
    model = models[0].eval()
    if case == "deepnorm":
        assert model.encoder.layers[0].residual_alpha > 1 and model.decoder.layers[0].residual_alpha > 1
    src = torch.tensor([[5, 6, 7, 8, 2], [1, 9, 10, 11, 2]])
    prev = torch.tensor([[2, 12, 13, 14], [2, 15, 16, 1]])
    with torch.no_grad():
        enc = model.encoder(src, src_lengths=torch.tensor([5, 4]))
        full, _ = model.decoder(prev, encoder_out=enc)
        state = {}
        steps = [model.decoder(prev[:, : t + 1], encoder_out=enc, incremental_state=state)[0] for t in range(4)]
    torch.testing.assert_close(torch.cat(steps, 1)[0], full[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(torch.cat(steps, 1)[1, :3], full[1, :3], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["rms", "scale", "dyt"])
def test_transformer_pn_arch_takes_the_new_norm_types(name, data_bin):
    """``--arch transformer_pn --norm-type NAME``: the encoder's norms (final norm included)
    become NAME, the decoder keeps LayerNorm, and a training forward/backward runs."""
    from fairseq import options, tasks

    from pn_fairseq.norms import LayerNorm, build_norm

    args = options.parse_args_and_arch(options.get_training_parser(), [
        str(data_bin), "--user-dir", str(REPO / "pn_fairseq"), "--task", "translation_pn", "--arch", "transformer_pn",
        "--norm-type", name, *TINY, "--cpu"])
    task = tasks.setup_task(args)
    model = task.build_model(args)
    cls = type(build_norm(name, 8))
    assert isinstance(model.encoder.layers[0].self_attn_layer_norm, cls) and isinstance(model.encoder.layer_norm, cls)
    assert isinstance(model.decoder.layers[0].final_layer_norm, LayerNorm)
    src = torch.tensor([[5, 6, 7, 2], [1, 8, 9, 2]])
    out, _ = model(src, torch.tensor([4, 3]), torch.tensor([[2, 10, 11], [2, 12, 1]]))
    out.sum().backward()
    assert torch.isfinite(out).all()
    norm = model.encoder.layers[0].final_layer_norm
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in norm.parameters())
