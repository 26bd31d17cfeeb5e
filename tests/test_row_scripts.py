"""Row scripts: DRY_RUN prints each recipe's exact flags; one row runs end to end on a
tiny corpus, and a second run does not retrain; the GPU count the driver checks NPROC against.
(Reuse, continuation and one-line errors of reruns: test_row_reuse.py.)"""
import json
import os
import re
import shlex
import subprocess

import pytest
import torch

import pn_fairseq  # noqa: F401
from conftest import BIN, REPO


def dry_run(script, **env):
    e = dict(os.environ, DRY_RUN="1", PATH=f"{BIN}:{os.environ['PATH']}")
    e.update(env)
    proc = subprocess.run(["bash", str(REPO / "scripts" / script)], capture_output=True, text=True, env=e, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    cmds = {}
    for line in lines:
        argv = shlex.split(line.split(" 2>&1 |")[0].split(" > ")[0])
        tool = argv[2] if argv[0].endswith("python") else argv[0]  # python -m MODULE
        cmds[tool] = argv
    return cmds


def flags(argv):
    """{--flag: value or True} of an argv (value-less flags map to True)."""
    out, i = {}, 1
    while i < len(argv):
        if argv[i].startswith("--"):
            nxt = argv[i + 1] if i + 1 < len(argv) else None
            if nxt is not None and not nxt.startswith("--"):
                out[argv[i]] = nxt
                i += 2
                continue
            out[argv[i]] = True
        i += 1
    return out


IWSLT = {"--lr": "0.0015", "--warmup-updates": "8000", "--warmup-init-lr": "1e-07", "--dropout": "0.3",
         "--attention-dropout": "0.1", "--activation-dropout": "0.1", "--weight-decay": "0.0001",
         "--max-tokens": "4096", "--label-smoothing": "0.1", "--adam-betas": "(0.9, 0.98)",
         "--lr-scheduler": "inverse_sqrt", "--clip-norm": "0.0", "--share-all-embeddings": True,
         "--patience": "5"}
WMT = dict(IWSLT, **{"--lr": "0.003", "--weight-decay": "0.0", "--patience": "10"})


@pytest.mark.parametrize("dataset, row", [(d, r) for d in ("iwslt14", "wmt14") for r in ("postln", "preln", "bn", "pnv", "pn")])
def test_table1_rows(dataset, row):
    cmds = dry_run(f"{dataset}/{row}.sh")
    train = flags(cmds["fairseq-train"])
    size = "iwslt_de_en" if dataset == "iwslt14" else "wmt_en_de_big"
    assert train["--arch"] == f"transformer_{row}_{size}"
    for flag, value in (IWSLT if dataset == "iwslt14" else WMT).items():
        assert train[flag] == value, flag
    assert train["--user-dir"].endswith("pn_fairseq")
    n = "5" if dataset == "iwslt14" else "10"
    avg = flags(cmds["pn-average-checkpoints"])
    assert avg["--num-epoch-checkpoints"] == n
    gen = flags(cmds["fairseq-generate"])
    assert (gen["--beam"], gen["--lenpen"]) == (("5", "1.0") if dataset == "iwslt14" else ("4", "0.6"))
    assert gen["--path"] == avg["--output"] and gen["--remove-bpe"] is True
    assert gen["--required-batch-size-multiple"] == "1"
    score = flags(cmds["pn-score"])
    assert score["--scheme"] == ("tokenized" if dataset == "iwslt14" else "wmt")
    results = flags(cmds["pn_fairseq.cli.row_results"])
    paper = {"iwslt14": {"preln": "35.5", "bn": "34.4", "pnv": "35.4", "pn": "35.9"},
             "wmt14": {"preln": "29.5", "bn": "28.1", "pnv": "28.5", "pn": "30.1"}}[dataset]
    assert results.get("--paper", "") == paper.get(row, ""), "paper number"


@pytest.mark.parametrize("row, arch, lr, sched, warmup", [
    # warmup_rsqrt: the paper's warm-up then inverse square root (every row: tests/test_preln_rows.py)
    ("postln-warmup4k", "transformer_postln_iwslt_de_en", "5e-4", "warmup_rsqrt", "4000"),
    ("postln-warmup500", "transformer_postln_iwslt_de_en", "5e-4", "warmup_rsqrt", "500"),
    ("postln-nowarmup", "transformer_postln_iwslt_de_en", "5e-4", "warmup_rsqrt", "1"),
    ("preln-nowarmup", "transformer_preln_iwslt_de_en", "5e-4", "epoch_step", None),
])
def test_preln_paper_rows(row, arch, lr, sched, warmup):
    cmds = dry_run(f"preln/{row}.sh")
    train = flags(cmds["fairseq-train"])
    assert (train["--arch"], train["--lr"], train["--lr-scheduler"], train["--dropout"]) == (arch, lr, sched, "0.1")
    assert train.get("--warmup-updates") == warmup
    if sched == "epoch_step":
        assert (train["--lr-decay-epochs"], train["--lr-decay-factor"]) == ("8", "0.1")
    gen = flags(cmds["fairseq-generate"])
    assert (gen["--beam"], gen["--lenpen"]) == ("5", "1.2")


@pytest.mark.parametrize("row", ["postln", "preln", "bn", "pnv", "pn"])
def test_multi30k_rows(row):
    train = flags(dry_run(f"multi30k/{row}.sh")["fairseq-train"])
    assert train["--arch"] == f"transformer_{row}"
    assert (train["--encoder-layers"], train["--encoder-embed-dim"], train["--encoder-ffn-embed-dim"]) == ("3", "256", "512")
    assert (train["--max-update"], train["--warmup-updates"], train["--lr"]) == ("600", "400", "1e-3")


def test_overrides_reach_the_commands():
    cmds = dry_run("iwslt14/pn.sh", MAX_UPDATE="123", MAX_EPOCH="7", UPDATE_FREQ="4", SEED="9", CPU="1",
                   EXTRA_ARGS="--pn-groups 2 --fp16", DATA="/d", SAVE_DIR="/s")
    train = flags(cmds["fairseq-train"])
    assert (train["--max-update"], train["--max-epoch"], train["--update-freq"], train["--seed"]) == ("123", "7", "4", "9")
    assert train["--cpu"] is True and train["--pn-groups"] == "2" and train["--fp16"] is True
    assert cmds["fairseq-train"][1] == "/d" and train["--save-dir"] == "/s"
    assert flags(cmds["fairseq-generate"])["--cpu"] is True


def test_unknown_row_names_the_choices():
    proc = subprocess.run(["bash", str(REPO / "scripts/run_row.sh"), "iwslt14", "gn"], capture_output=True, text=True)
    assert proc.returncode != 0 and "unknown row 'gn'" in proc.stderr and "pnv" in proc.stderr


def test_missing_data_says_how_to_prepare_it(tmp_path):
    env = dict(os.environ, DATA=str(tmp_path / "nothing"), SAVE_DIR=str(tmp_path / "run"))
    proc = subprocess.run(["bash", str(REPO / "scripts/iwslt14/pn.sh")], capture_output=True, text=True, env=env)
    assert proc.returncode != 0 and "no binarized data" in proc.stderr and "data-prep/prepare-" in proc.stderr


def test_one_row_end_to_end_then_not_retrained(data_bin, tmp_path):
    save = tmp_path / "run"
    tiny = ("--encoder-layers 1 --decoder-layers 1 --encoder-embed-dim 32 --decoder-embed-dim 32 "
            "--encoder-ffn-embed-dim 64 --decoder-ffn-embed-dim 64 --max-tokens 400 --warmup-updates 2 "
            "--save-interval-updates 2 --validate-interval-updates 2")
    env = dict(os.environ, DATA=str(data_bin), SAVE_DIR=str(save), MAX_UPDATE="6", CPU="1", EXTRA_ARGS=tiny,
               ALLOW_BLEU_MISMATCH="1", LOG_INTERVAL="1")
    # synthetic rows average the last 3 update checkpoints (every 2 updates here; fairseq saves
    # an epoch checkpoint instead when an update ends an epoch, so 2 or 3 of them exist)
    first = subprocess.run(["bash", str(REPO / "scripts/run_row.sh"), "synthetic", "pn"], capture_output=True, text=True, env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    result = json.loads((save / "results.json").read_text())
    assert result["row"] == "pn" and result["dataset"] == "synthetic" and result["updates"] == 6
    assert isinstance(result["bleu_main"], float) and result["bleu"]["fairseq"] == result["bleu_main"]
    n = result["averaged_checkpoints"]
    assert n in (2, 3) and result["checkpoint"].endswith(f"checkpoint_avg_last{n}.pt")
    assert os.path.exists(result["checkpoint"])
    gen = (save / "generate-test.txt").read_text()
    assert len(re.findall(r"^H-\d+", gen, flags=re.M)) == 12
    # the sorted texts pn-results compares, and the seed, beside results.json
    assert len((save / "test.hyp.txt").read_text().splitlines()) == len((save / "test.ref.txt").read_text().splitlines()) == 12
    assert result["seed"] == 1 and result["texts"]["hypotheses"] == "test.hyp.txt"
    mtime = (save / "checkpoint_last.pt").stat().st_mtime
    second = subprocess.run(["bash", str(REPO / "scripts/run_row.sh"), "synthetic", "pn"], capture_output=True, text=True, env=env)
    assert second.returncode == 0 and "already finished" in second.stderr
    assert (save / "checkpoint_last.pt").stat().st_mtime == mtime
    # Removing results.json re-scores without training (fairseq would add one update).
    (save / "results.json").unlink()
    third = subprocess.run(["bash", str(REPO / "scripts/run_row.sh"), "synthetic", "pn"], capture_output=True, text=True, env=env)
    assert third.returncode == 0, third.stderr[-3000:]
    assert "training already finished" in third.stderr
    assert torch.load(save / "checkpoint_last.pt")["optimizer_history"][-1]["num_updates"] == 6
    assert json.loads((save / "results.json").read_text())["bleu_main"] == result["bleu_main"]
    # A larger MAX_UPDATE continuing the run: tests/test_row_reuse.py (smoke run -> the recipe).


def fake_gpus(tmp_path, n):
    """A directory holding a stand-in nvidia-smi that lists ``n`` GPUs, for the front of PATH."""
    fake = tmp_path / "fake-bin"
    fake.mkdir(exist_ok=True)
    lines = "".join(f"echo 'GPU {i}: NVIDIA H100 80GB HBM3 (UUID: GPU-{i:08d})'\n" for i in range(n))
    (fake / "nvidia-smi").write_text("#!/bin/sh\n" + (lines or "exit 9\n"))
    (fake / "nvidia-smi").chmod(0o755)
    return fake


def test_one_gpu_by_default_on_an_8_gpu_node(tmp_path):
    """fairseq's default --distributed-world-size is every visible GPU: the driver always passes NPROC."""
    path = f"{fake_gpus(tmp_path, 8)}{os.pathsep}{os.environ['PATH']}"
    assert flags(dry_run("multi30k/pn.sh", PATH=path)["fairseq-train"])["--distributed-world-size"] == "1"
    assert flags(dry_run("wmt14/pn.sh", PATH=path, NPROC="8")["fairseq-train"])["--distributed-world-size"] == "8"


def test_dry_run_needs_no_gpu(tmp_path):
    path = f"{fake_gpus(tmp_path, 0)}{os.pathsep}{os.environ['PATH']}"
    cmds = dry_run("wmt14/pn.sh", PATH=path, NPROC="8", UPDATE_FREQ="16")
    train = flags(cmds["fairseq-train"])
    assert (train["--distributed-world-size"], train["--update-freq"]) == ("8", "16")
    assert "fairseq-generate" in cmds and "pn-score" in cmds


# CUDA_VISIBLE_DEVICES as torch reads it, on a machine whose nvidia-smi lists 8 GPUs: ordinals up to
# the first invalid, negative or absent one; a repeated one hides all; UUIDs counted likewise.
@pytest.mark.parametrize("visible, nproc, gpus", [
    ("0,1", 4, 2),
    (None, 9, 8),
    ("0,1,-1,3", 3, 2),
    ("0,9,1", 2, 1),
    ("2,x,3", 2, 1),
    ("GPU-00000001,GPU-00000002,3", 3, 2),
])
def test_nproc_beyond_the_visible_gpus_stops_in_one_line(tmp_path, visible, nproc, gpus):
    env = dict(os.environ, PATH=f"{fake_gpus(tmp_path, 8)}{os.pathsep}{os.environ['PATH']}", NPROC=str(nproc),
               DATA=str(tmp_path / "no-data"), SAVE_DIR=str(tmp_path / "run"))
    env.pop("CUDA_VISIBLE_DEVICES", None)
    if visible is not None:
        env["CUDA_VISIBLE_DEVICES"] = visible
    proc = subprocess.run(["bash", str(REPO / "scripts/run_row.sh"), "synthetic", "pn"], capture_output=True,
                          text=True, env=env)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr
    assert f"NPROC={nproc} but {gpus} GPU(s) are visible" in lines[0] and "UPDATE_FREQ" in lines[0]
    if visible is not None:
        assert f"(CUDA_VISIBLE_DEVICES={visible})" in lines[0]
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("visible", ["", "-1", "0,0"])
def test_no_visible_gpu_says_so(tmp_path, visible):
    env = dict(os.environ, PATH=f"{fake_gpus(tmp_path, 8)}{os.pathsep}{os.environ['PATH']}", NPROC="2",
               CUDA_VISIBLE_DEVICES=visible, DATA=str(tmp_path / "no-data"))
    proc = subprocess.run(["bash", str(REPO / "scripts/run_row.sh"), "synthetic", "pn"], capture_output=True,
                          text=True, env=env)
    assert proc.returncode == 1 and f"NPROC=2 but no GPU is visible (CUDA_VISIBLE_DEVICES={visible})" in proc.stderr


@pytest.mark.parametrize("visible, nproc", [(None, 8), ("3,5", 2), ("GPU-00000001,GPU-00000002", 2)])
def test_nproc_within_the_visible_gpus_passes_the_check(tmp_path, visible, nproc):
    """The next check (the data) is what stops these."""
    env = dict(os.environ, PATH=f"{fake_gpus(tmp_path, 8)}{os.pathsep}{os.environ['PATH']}", NPROC=str(nproc),
               DATA=str(tmp_path / "no-data"))
    env.pop("CUDA_VISIBLE_DEVICES", None)
    if visible is not None:
        env["CUDA_VISIBLE_DEVICES"] = visible
    proc = subprocess.run(["bash", str(REPO / "scripts/run_row.sh"), "synthetic", "pn"], capture_output=True,
                          text=True, env=env)
    assert proc.returncode == 1 and "no binarized data" in proc.stderr and "GPU" not in proc.stderr


def test_header_points_to_doc_sections_that_exist():
    header = "".join(line for line in (REPO / "scripts/run_row.sh").read_text().splitlines(True) if line.startswith("#"))
    cited = re.findall(r'(README\.md|docs/[\w-]+\.md) "([^"]+)"', header.replace("\n# ", " "))
    assert cited
    for page, heading in cited:
        headings = set(re.findall(r"^#+ (.+)$", (REPO / page).read_text(), flags=re.M))
        assert heading in headings, (page, heading, headings)
