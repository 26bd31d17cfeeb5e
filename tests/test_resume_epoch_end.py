"""Exact resume across epoch ends, through fairseq-train (pn_fairseq/tasks/resume.py).

The row scripts save at epoch ends only, so an interrupted row resumes from a checkpoint
that says "epoch E, no batch done yet". fairseq then built other batches than a run that
went on in one process (it draws the ties among equally long sentences with ``--seed + the
epoch the process started in``). The tiny data has 12 batches an epoch at ``--max-tokens
200``: the resumed run stops at the end of epoch 1 (update 12), resumes to update 14 (inside
epoch 2) and from there to 16, so both an epoch-end and a mid-epoch resume in epoch 2 are
compared with 16 updates in one process.
"""
import json
import subprocess

import pytest
import torch

import pn_fairseq  # noqa: F401  (allow-lists fairseq's checkpoint globals for torch.load)
from conftest import REPO
from test_scale_cli import NORM_BUFFERS, train_argv, train_steps

BATCHES_PER_EPOCH = 12


def train(data_bin, save_dir, arch, max_update, *extra):
    proc = subprocess.run(train_argv(data_bin, save_dir, arch, max_update, *extra), cwd=REPO,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def iterator_state(path):
    return torch.load(path)["extra_state"]["train_iterator"]


@pytest.mark.parametrize("arch, buffers", [
    ("transformer_pn", {"running_psi2", "running_nu", "num_batches_tracked"}),
    ("transformer_bn", {"running_mean", "running_var", "num_batches_tracked"}),
    ("transformer_preln", set()),
])
def test_resume_at_an_epoch_end_is_exact(arch, buffers, data_bin, tmp_path):
    straight = train_steps(train(data_bin, tmp_path / "straight", arch, 16))
    assert int(straight[BATCHES_PER_EPOCH]["epoch"]) == 1 and int(straight[BATCHES_PER_EPOCH + 1]["epoch"]) == 2

    resumed_dir = tmp_path / "resumed"
    logs = [train(data_bin, resumed_dir, arch, 0, "--max-epoch", 1)]  # 0 = no --max-update limit
    # The checkpoint the second process starts from: the end of epoch 1, nothing of epoch 2 done.
    assert iterator_state(resumed_dir / "checkpoint_last.pt") == {
        "version": 2, "epoch": 2, "iterations_in_epoch": 0, "shuffle": True}
    logs.append(train(data_bin, resumed_dir, arch, 14))
    assert f"@ {BATCHES_PER_EPOCH} updates" in logs[-1]
    assert iterator_state(resumed_dir / "checkpoint_last.pt")["iterations_in_epoch"] == 2
    logs.append(train(data_bin, resumed_dir, arch, 16))
    assert "@ 14 updates" in logs[-1]

    resumed = {}
    for log in logs:
        resumed.update(train_steps(log))
    assert sorted(resumed) == sorted(straight) == list(range(1, 17))
    for n in straight:
        assert resumed[n] == straight[n], f"update {n}: {json.dumps(resumed[n])} != {json.dumps(straight[n])}"

    a = torch.load(tmp_path / "straight" / "checkpoint_last.pt")
    b = torch.load(resumed_dir / "checkpoint_last.pt")
    assert {k.rsplit(".", 1)[-1] for k in a["model"] if k.rsplit(".", 1)[-1] in NORM_BUFFERS} == buffers
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert a["extra_state"]["train_iterator"] == b["extra_state"]["train_iterator"]
    sa, sb = a["last_optimizer_state"]["state"], b["last_optimizer_state"]["state"]
    for i in sa:
        for name in sa[i]:
            assert torch.equal(torch.as_tensor(sa[i][name]), torch.as_tensor(sb[i][name])), (i, name)
