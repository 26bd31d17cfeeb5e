"""The BERT rows (scripts/bert-multi30k, scripts/run_mlm_row.sh) and their record
(results-mlm.json, pn_fairseq/evaluation/mlm_results.py): each row's schedule as DRY_RUN prints
it, the driver end to end on a tiny corpus, bad input in one line, divergence as a result."""
import json
import math
import shlex
import subprocess

import pytest

from pn_fairseq.evaluation import mlm_results

from bert_corpus import TINY, build_corpus
from conftest import REPO

# row -> (arch, lr, warm-up % of the run, --norm-type or None)
ROWS = {
    "postln-warmup": ("roberta_pn_small", "1e-4", 1, None),
    "postln-lr3e-4": ("roberta_pn_small", "3e-4", 1, None),
    "preln-nowarmup": ("roberta_pn_prenorm_small", "3e-4", 0, None),
    "preln-bn": ("roberta_pn_prenorm_small", "3e-4", 0, "batch"),
    "preln-pnv": ("roberta_pn_prenorm_small", "3e-4", 0, "power_v"),
    "preln-pn": ("roberta_pn_prenorm_small", "3e-4", 0, "power"),
}


def row(name, **env):
    import os

    full = {**os.environ, **{k: str(v) for k, v in env.items()}}
    return subprocess.run([str(REPO / "scripts" / "bert-multi30k" / f"{name}.sh")], cwd=REPO, env=full,
                          capture_output=True, text=True)


def train_command(out):
    """{flag: [values]} of the fairseq-train line a dry run printed (the last value wins in
    argparse: the last occurrence is kept)."""
    line = next(line for line in out.splitlines() if line.startswith("fairseq-train "))
    words = shlex.split(line.split(" 2>&1 | tee")[0])
    flags, current = {}, None
    for word in words[2:]:
        if word.startswith("--"):
            current = word
            flags[current] = []
        elif current is not None:
            flags[current].append(word)
    return words[1], flags


def test_every_row_has_a_script_and_a_conf():
    confs = {p.stem for p in (REPO / "configs" / "bert-multi30k").glob("*.conf")} - {"common"}
    scripts = {p.stem for p in (REPO / "scripts" / "bert-multi30k").glob("*.sh")}
    assert confs == scripts == set(ROWS)


@pytest.mark.parametrize("name", sorted(ROWS))
def test_dry_run_prints_the_schedule_with_sources(name):
    arch, lr, percent, norm = ROWS[name]
    proc = row(name, DRY_RUN=1, MAX_UPDATE=1500)
    assert proc.returncode == 0, proc.stderr
    data, flags = train_command(proc.stdout)
    assert data == str(REPO / "data-bin" / "multi30k-lm.en")
    assert flags["--arch"] == [arch] and flags["--lr"] == [lr] and flags["--task"] == ["masked_lm_pn"]
    assert flags["--lr-scheduler"] == ["polynomial_decay"] and flags["--power"] == ["1"]
    assert flags["--end-learning-rate"] == ["0"]
    assert flags["--max-update"] == flags["--total-num-update"] == ["1500"]
    assert flags["--warmup-updates"] == [str(1500 * percent // 100)]  # 15 = 1% (10k of 1M), or 0
    assert flags["--validate-interval-updates"] == ["100"]
    assert flags.get("--norm-type") == ([norm] if norm else None)
    # Every value printed above the command with a source: one "#   FLAGS   # source" line each.
    recipe = [line for line in proc.stdout.splitlines() if line.startswith("#   ")]
    shown = {word for line in recipe for word in line[4:].split("   # ")[0].split() if word.startswith("--")}
    assert set(flags) - {"--user-dir", "--task", "--criterion", "--save-dir", "--seed", "--log-format",
                         "--log-interval", "--no-progress-bar"} <= shown
    assert all(len(line.split("   # ")) == 2 and line.split("   # ")[1].strip() for line in recipe)


def test_default_run_length_and_warmup():
    _, flags = train_command(row("postln-warmup", DRY_RUN=1).stdout)
    assert flags["--max-update"] == ["1200"] and flags["--warmup-updates"] == ["12"]


@pytest.mark.parametrize("env,fragment", [
    ({"MAX_UPDATE": "abc"}, "MAX_UPDATE=abc is not a positive integer"),
    ({"MAX_UPDATE": "0"}, "MAX_UPDATE=0 is not a positive integer"),
    ({"SEED": "-1"}, "SEED=-1 is not a positive integer"),
    ({"VALIDATE_INTERVAL": "1e2"}, "VALIDATE_INTERVAL=1e2 is not a positive integer"),
    ({"CPU": "yes"}, "CPU=yes: expected 0 or 1"),
    ({"DRY_RUN": "2"}, "DRY_RUN=2: expected 0 or 1"),
    ({"SEEDS": "1,,2"}, "SEEDS=1,,2: expected positive integers separated by commas"),
    ({"DATA": "/nonexistent/bin"}, "no binarized masked-LM data at /nonexistent/bin: run data-prep/prepare-multi30k-lm.sh"),
])
def test_bad_environment_is_one_line(env, fragment, tmp_path):
    proc = row("preln-nowarmup", SAVE_DIR=tmp_path / "run", **env)
    assert proc.returncode != 0
    assert proc.stderr.strip().count("\n") == 0 and fragment in proc.stderr, proc.stderr
    assert not (tmp_path / "run").exists()


def test_unknown_row_is_one_line():
    proc = subprocess.run([str(REPO / "scripts" / "run_mlm_row.sh"), "bert-multi30k", "postln"], cwd=REPO,
                          capture_output=True, text=True)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1
    assert "unknown row 'postln' for bert-multi30k (rows: postln-lr3e-4 postln-warmup" in proc.stderr


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return build_corpus(tmp_path_factory.mktemp("mlm"))


def test_driver_end_to_end(corpus, tmp_path):
    """4 updates of preln-pn on the tiny corpus, a validation every 2: a record whose curve is
    the training log's validation losses in nats; a rerun reuses it; another command is refused."""
    save = tmp_path / "run"
    env = dict(DATA=corpus, SAVE_DIR=save, CPU=1, MAX_UPDATE=4, VALIDATE_INTERVAL=2, LOG_INTERVAL=1,
               EXTRA_ARGS=" ".join([*TINY, "--max-tokens", "512"]))
    proc = row("preln-pn", **env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    record = mlm_results.load(save / "results-mlm.json")
    # The losses fairseq logged (bits) at those updates, read here independently.
    logged = {}
    for line in (save / "train.log").read_text().splitlines():
        if '"valid_loss"' in line:
            entry = json.loads(line[line.index("{"):])
            logged[int(entry["valid_num_updates"])] = float(entry["valid_loss"]) * math.log(2)
    assert record["valid"]["updates"] == [2, 4] == sorted(logged)
    assert record["valid"]["loss_nats"] == pytest.approx([logged[2], logged[4]], rel=1e-12)
    assert record["final_valid_loss_nats"] == record["valid"]["loss_nats"][-1]
    assert record["best_valid_loss_nats"] == min(record["valid"]["loss_nats"])
    assert record["updates"] == record["max_update"] == 4 and record["diverged"] is None
    assert record["row"] == "preln-pn" and record["seed"] == 1 and record["dataset"] == "bert-multi30k"
    assert "--norm-type power" in record["train_command"] and "--warmup-updates 0" in record["train_command"]
    assert record["wall_time_s"] > 0

    again = row("preln-pn", **env)
    assert again.returncode == 0 and "already finished" in again.stderr
    other = row("preln-pn", **{**env, "MAX_UPDATE": 6})
    assert other.returncode == 1 and "holds a training finished with another command" in other.stderr
    assert other.stderr.strip().count("\n") == 0


def _log(path, lines):
    path.write_text("".join(f"2026-01-01 | INFO | {tag} | {json.dumps(rec)}\n" for tag, rec in lines))
    return path


def test_divergence_is_a_result_and_other_failures_are_not(tmp_path):
    log = _log(tmp_path / "train.log", [
        ("train_inner", {"num_updates": "100", "loss": "9.1", "wall": "50"}),
        ("valid", {"valid_loss": "8", "valid_num_updates": "100"}),
        ("train_inner", {"num_updates": "150", "loss": "inf", "wall": "75"}),
        ("valid", {"valid_loss": "inf", "valid_num_updates": "150"}),
    ])
    with open(log, "a") as f:
        f.write("FloatingPointError: gradients are Nan/Inf\n")
    out = tmp_path / "results-mlm.json"
    base = ["write", "--train-log", str(log), "--output", str(out), "--row", "postln-lr3e-4", "--dataset", "d",
            "--seed", "1", "--max-update", "1200", "--train-command", "fairseq-train x"]
    assert mlm_results.main(base + ["--failed"]) == 0
    record = mlm_results.load(out)
    assert record["valid"] == {"updates": [100, 150], "loss_nats": [8 * math.log(2), None]}
    assert record["final_valid_loss_nats"] is None and record["best_valid_loss_nats"] == 8 * math.log(2)
    assert record["updates"] == 150 and record["wall_time_s"] == 75.0
    assert record["diverged"]["update"] == 150 and "gradients are Nan/Inf" in record["diverged"]["reason"]

    clean = _log(tmp_path / "clean.log", [("valid", {"valid_loss": "8", "valid_num_updates": "100"})])
    assert mlm_results.main(["check-diverged", str(clean)]) == 1
    assert mlm_results.main(["check-diverged", str(log)]) == 0
    assert mlm_results.main([*base[:2], str(clean), *base[3:], "--failed"]) == 1  # a crash, not a result


def test_load_refuses_a_damaged_record(tmp_path):
    path = tmp_path / "results-mlm.json"
    path.write_text(json.dumps({"kind": "mlm"}))
    with pytest.raises(mlm_results.MLMResultsError, match="missing key 'row'"):
        mlm_results.load(path)
