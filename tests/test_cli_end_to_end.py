"""The plugin through fairseq's own command-line tools: train, resume, generate; and
incremental decoding against a full forward pass. A tiny generated corpus keeps it fast."""
import subprocess
import sys

import pytest
import torch

import pn_fairseq  # noqa: F401  (allow-lists fairseq's checkpoint globals for torch.load)
from conftest import BIN, REPO, run

ROWS = ["postln", "preln", "bn", "pnv", "pn"]
TINY = [
    "--encoder-layers", "2", "--decoder-layers", "2", "--encoder-embed-dim", "32", "--decoder-embed-dim", "32",
    "--encoder-ffn-embed-dim", "64", "--decoder-ffn-embed-dim", "64",
    "--encoder-attention-heads", "4", "--decoder-attention-heads", "4", "--share-all-embeddings",
]


def train(data_bin, save_dir, arch, max_update, extra=()):
    return run("fairseq-train", data_bin, "--user-dir", REPO / "pn_fairseq", "--arch", arch, *TINY,
               "--optimizer", "adam", "--lr", "1e-3", "--lr-scheduler", "inverse_sqrt", "--warmup-updates", "3",
               "--criterion", "label_smoothed_cross_entropy", "--label-smoothing", "0.1",
               "--max-tokens", "400", "--max-update", max_update, "--save-dir", save_dir, "--cpu",
               "--no-progress-bar", "--log-interval", "1", "--seed", "1", "--no-epoch-checkpoints", *extra)


@pytest.fixture(scope="module")
def trained(data_bin, tmp_path_factory):
    """Each row trained for 4 updates, then resumed to 7: {row: (save_dir, log, state@4)}."""
    out = {}
    for row in ROWS:
        save_dir = tmp_path_factory.mktemp(row)
        train(data_bin, save_dir, f"transformer_{row}", 4)
        first = torch.load(save_dir / "checkpoint_last.pt")
        log = train(data_bin, save_dir, f"transformer_{row}", 7)
        out[row] = (save_dir, log, first)
    return out


@pytest.mark.parametrize("row", ROWS)
def test_train_resume_generate(row, trained, data_bin):
    save_dir, log, first = trained[row]
    assert "Loaded checkpoint" in log and "@ 4 updates" in log  # resumed, not restarted
    last = torch.load(save_dir / "checkpoint_last.pt")
    assert last["optimizer_history"][-1]["num_updates"] == 7
    counters = [k for k in last["model"] if k.endswith("num_batches_tracked")]
    if row in ("bn", "pnv", "pn"):
        # 2 layers x 2 norms + final encoder norm, each having counted every training forward.
        assert len(counters) == 5
        for key in counters:
            assert int(first["model"][key]) == 4 and int(last["model"][key]) == 7, key
    else:
        assert counters == []
    if row == "pn":
        psi2 = "encoder.layers.0.final_layer_norm.running_psi2"
        assert not torch.equal(first["model"][psi2], torch.ones_like(first["model"][psi2]))
        assert "encoder.layers.0.self_attn_layer_norm.running_nu" in last["model"]
    generate = ["fairseq-generate", data_bin, "--user-dir", REPO / "pn_fairseq", "--path", save_dir / "checkpoint_last.pt",
                "--beam", "5", "--batch-size", "4", "--cpu", "--gen-subset", "test"]
    out = run(*generate, "--required-batch-size-multiple", "1")
    assert "BLEU4 = " in out
    assert sum(line.startswith("H-") for line in out.splitlines()) == 12  # every test sentence
    if row == "pn":
        # Why every script passes that flag: fairseq main's batch_by_size drops a last batch
        # that is not a multiple of --required-batch-size-multiple (default 8), i.e. the
        # longest test sentences.
        dropped = run(*generate)
        assert sum(line.startswith("H-") for line in dropped.splitlines()) < 12


def test_norm_names_and_placement_in_checkpoint(trained):
    model = torch.load(trained["pn"][0] / "checkpoint_last.pt")["model"]
    assert "encoder.layer_norm.running_psi2" in model  # the final encoder norm is PN too
    assert "decoder.layers.0.self_attn_layer_norm.weight" in model
    assert not any(k.startswith("decoder") and "running_" in k for k in model)  # decoder keeps LN
    cfg = torch.load(trained["pn"][0] / "checkpoint_last.pt")["cfg"]["model"]
    assert cfg.pn_warmup_updates == 3 and cfg.pn_groups is None and cfg.norm_variant == "reference"


@pytest.mark.parametrize("row, extra", [("preln", ()), ("pn", ()), ("pn", ("--decoder-norm-type", "power"))])
def test_incremental_decoding_matches_full_forward(row, extra, data_bin, tmp_path):
    from fairseq import checkpoint_utils

    train(data_bin, tmp_path, f"transformer_{row}", 3, extra)
    models, _ = checkpoint_utils.load_model_ensemble([str(tmp_path / "checkpoint_last.pt")])
    model = models[0].eval()
    src = torch.tensor([[5, 6, 7, 8, 2], [1, 9, 10, 11, 2]])  # second row left-padded (pad = 1)
    src_lengths = torch.tensor([5, 4])
    prev = torch.tensor([[2, 12, 13, 14], [2, 15, 16, 1]])
    with torch.no_grad():
        enc = model.encoder(src, src_lengths=src_lengths)
        full, _ = model.decoder(prev, encoder_out=enc)
        state = {}
        steps = [model.decoder(prev[:, : t + 1], encoder_out=enc, incremental_state=state)[0] for t in range(4)]
    torch.testing.assert_close(torch.cat(steps, 1)[0], full[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(torch.cat(steps, 1)[1, :3], full[1, :3], rtol=1e-5, atol=1e-5)


def test_help_lists_the_norm_flags():
    out = run("fairseq-train", "--user-dir", REPO / "pn_fairseq", "--arch", "transformer_pn", "--help")
    for flag in ["--norm-type", "--decoder-norm-type", "--norm-variant", "--pn-alpha-fwd", "--pn-alpha-bkw",
                 "--pn-warmup-updates", "--pn-groups", "--norm-momentum"]:
        assert flag in out, flag
    # every model of the plugin with its task and architectures, the LM and RoBERTa ones included
    for model, task, arch in [("transformer_pn", "translation_pn", "transformer_preln_iwslt_de_en"),
                              ("transformer_lm_pn", "language_modeling_pn", "transformer_lm_pn_postln"),
                              ("roberta_pn", "masked_lm_pn", "roberta_pn_prenorm_small")]:
        line = next(line for line in out.splitlines() if line.strip().startswith(model + " (--task"))
        assert f"--task {task}" in line and f" {arch}," in line + ",", (model, line)


def test_decoder_batch_statistics_warn(data_bin, tmp_path):
    log = train(data_bin, tmp_path, "transformer_preln", 1, ("--decoder-norm-type", "batch"))
    assert "train/test mismatch" in log


def test_bad_group_count_fails_at_build_with_the_flag_named(data_bin, tmp_path):
    proc = subprocess.run(
        [str(BIN / "fairseq-train"), str(data_bin), "--user-dir", str(REPO / "pn_fairseq"), "--arch", "transformer_pn",
         *TINY, "--pn-groups", "3", "--max-update", "1", "--save-dir", str(tmp_path), "--cpu", "--optimizer", "adam",
         "--lr", "1e-3", "--max-tokens", "400"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode != 0
    assert "--norm-type power" in proc.stderr and "not divisible by groups=3" in proc.stderr


def test_checkpoints_load_with_weights_only_only_through_the_plugin(trained):
    path = trained["preln"][0] / "checkpoint_last.pt"
    code = "import sys, torch\n{}\ntorch.load(sys.argv[1])\nprint('loaded')"
    plain = subprocess.run([sys.executable, "-c", code.format(""), str(path)], capture_output=True, text=True)
    assert plain.returncode != 0 and "argparse.Namespace" in plain.stderr  # torch's default refuses
    ours = subprocess.run([sys.executable, "-c", code.format("import pn_fairseq"), str(path)],
                          capture_output=True, text=True, cwd=REPO)
    assert ours.returncode == 0 and "loaded" in ours.stdout
    # and safety stays on: a pickled arbitrary callable is still refused
    evil = path.parent / "evil.pt"
    torch.save({"model": {}, "x": print}, evil)
    bad = subprocess.run([sys.executable, "-c", code.format("import pn_fairseq"), str(evil)],
                         capture_output=True, text=True, cwd=REPO)
    assert bad.returncode != 0 and "Unsupported global" in bad.stderr
