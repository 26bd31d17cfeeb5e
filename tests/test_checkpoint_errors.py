"""Checkpoints a colleague can read and a checkpoint of another dictionary named in one line.

* fairseq writes the first file of a save itself (it follows the umask) and copies it onto
  ``checkpoint_best.pt`` / ``checkpoint_last.pt`` through the plugin's atomic copy, which
  must give the copies the same mode (a bare ``mkstemp`` gives 0600).
* A checkpoint trained on another data-bin meets this data's dictionaries in the model's
  ``load_state_dict``: ``fairseq-generate`` and a ``fairseq-train`` resume say so in one line
  with both sizes and the data-bin the checkpoint was trained with.
"""
import os
import random
import stat
import subprocess

import pytest
import torch

from conftest import run
from test_bad_input import fails, generate_argv
from test_scale_cli import train_argv


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("umask, expected", [(0o022, 0o644), (0o027, 0o640)])
def test_checkpoint_copies_follow_the_umask(umask, expected, data_bin, tmp_path):
    save = tmp_path / "run"
    # --save-interval-updates 1: fairseq writes checkpoint_1_1.pt, then copies it twice.
    proc = subprocess.run(train_argv(data_bin, save, "transformer_pn", 1, "--save-interval-updates", "1"),
                          capture_output=True, text=True, preexec_fn=lambda: os.umask(umask))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    names = sorted(p.name for p in save.iterdir())
    assert names == ["checkpoint_1_1.pt", "checkpoint_best.pt", "checkpoint_last.pt"]
    assert {name: mode(save / name) for name in names} == dict.fromkeys(names, expected)


def test_atomic_copy_follows_the_umask(tmp_path):
    from pn_fairseq.checkpoints.serialization import atomic_copyfile

    src = tmp_path / "src.pt"
    src.write_bytes(b"checkpoint")
    previous = os.umask(0o027)
    try:
        atomic_copyfile(str(src), str(tmp_path / "copy.pt"))
    finally:
        os.umask(previous)
    assert mode(tmp_path / "copy.pt") == 0o640 and (tmp_path / "copy.pt").read_bytes() == b"checkpoint"


@pytest.fixture(scope="module")
def other_data_run(tmp_path_factory):
    """(data-bin, save dir): transformer_pn trained for 1 update on data with 25 word types
    (the conftest data has 40), binarized with a joined dictionary."""
    root = tmp_path_factory.mktemp("other")
    rng = random.Random(1)
    words = [f"v{i}" for i in range(25)]
    for split, n in [("train", 100), ("valid", 10), ("test", 5)]:
        lines = [" ".join(rng.choice(words) for _ in range(rng.randint(2, 6))) for _ in range(n)]
        (root / f"{split}.de").write_text("\n".join(lines) + "\n")
        (root / f"{split}.en").write_text("\n".join(line.upper() for line in lines) + "\n")
    run("fairseq-preprocess", "--source-lang", "de", "--target-lang", "en", "--joined-dictionary",
        "--trainpref", root / "train", "--validpref", root / "valid", "--testpref", root / "test",
        "--destdir", root / "bin", "--workers", "1")
    save = root / "run"
    proc = subprocess.run(train_argv(root / "bin", save, "transformer_pn", 1), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return root / "bin", save


def dictionary_rows(data_bin):
    """Embedding rows fairseq builds for a dictionary file: its 4 special symbols, then one
    per line (fairseq-preprocess has padded the file with madeupword entries)."""
    return 4 + len((data_bin / "dict.de.txt").read_text().splitlines())


def test_generate_with_another_dictionary_is_one_line(data_bin, other_data_run):
    other_bin, save = other_data_run
    theirs, mine = dictionary_rows(other_bin), dictionary_rows(data_bin)
    assert theirs != mine
    assert int(torch.load(save / "checkpoint_last.pt", weights_only=False)["model"][
        "encoder.embed_tokens.weight"].shape[0]) == theirs
    line = fails(generate_argv(data_bin, save / "checkpoint_last.pt"))
    assert line == (f"fairseq-generate: error: the checkpoint was trained on another dictionary (source and target "
                    f"vocabularies: {theirs} entries in the checkpoint, {mine} in this data's dictionaries): pass "
                    f"the data-bin the checkpoint was trained with ({other_bin})")


def test_resume_on_another_dictionary_is_one_line(data_bin, other_data_run, tmp_path):
    other_bin, save = other_data_run
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "checkpoint_last.pt").write_bytes((save / "checkpoint_last.pt").read_bytes())
    line = fails(train_argv(data_bin, tmp_path / "run", "transformer_pn", 2))
    assert f"vocabularies: {dictionary_rows(other_bin)} entries in the checkpoint, {dictionary_rows(data_bin)} in this data" in line
    assert line.endswith(f"trained with ({other_bin}); to train on this data, use a new --save-dir")


def test_stock_model_size_error_is_read_the_same_way():
    """A model that is not the plugin's fails inside torch's load_state_dict; its message
    (torch's own, produced here) becomes the same line."""
    from pn_fairseq.hooks.errors import explain

    def model(rows):
        m = torch.nn.Module()
        m.encoder, m.decoder = torch.nn.Module(), torch.nn.Module()
        m.encoder.embed_tokens, m.decoder.embed_tokens = torch.nn.Embedding(rows, 4), torch.nn.Embedding(rows + 8, 4)
        return m

    with pytest.raises(RuntimeError) as info:
        model(16).load_state_dict(model(24).state_dict())
    assert explain(info.value) == (
        "the checkpoint was trained on another dictionary (source vocabulary: 24 entries in the checkpoint, 16 in "
        "this data's dictionary; target vocabulary: 32 entries in the checkpoint, 24 in this data's dictionary): "
        "pass the data-bin the checkpoint was trained with")
