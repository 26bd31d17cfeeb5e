"""tests/forkrun: a fairseq command run forked from the suite's preloaded server behaves as its
own process would: the same checkpoint to the bit, the same output (less the INFO lines fairseq
logs while it is imported, which the server logged once), the same exit status; a killed caller
takes its command with it; a command started with other start-up settings runs as its own process."""
import json
import os
import re
import shutil
import signal
import subprocess
import time

import pytest
import torch

from conftest import BIN, REPO
from test_scale_cli import train_argv

SOCK = os.environ.get("PN_TEST_FORKRUN")
pytestmark = pytest.mark.skipif(not SOCK, reason="PN_TEST_REAL_PROCESSES=1: no fork server in this run")


@pytest.fixture(scope="module")
def server():
    """The server's log path, once it serves (it imports fairseq first)."""
    deadline = time.monotonic() + 120
    while not os.path.exists(SOCK):
        assert time.monotonic() < deadline, open(SOCK + ".stderr").read()
        time.sleep(0.2)
    from forkrun.sitecustomize import startup_state

    served = json.load(open(SOCK + ".env"))
    served, here = served["state"], startup_state(os.environ, served["ignore"])
    assert served == here, {k: (served["env"].get(k), here["env"].get(k)) for k in {*served["env"], *here["env"]}
                            if served["env"].get(k) != here["env"].get(k)} or (served, here)
    return SOCK + ".log"


def forked(log, marker):
    """The server's record of the command whose arguments contain marker, or None."""
    if not os.path.exists(log):
        return None
    records = [json.loads(line) for line in open(log)]
    return next((r for r in records if any(marker in a for a in r["argv"])), None)


def real_env():
    return {k: v for k, v in os.environ.items() if k != "PN_TEST_FORKRUN"}


def normalized(text, import_log):
    """Output lines without what differs between two runs of one command: time stamps, speeds,
    durations, memory; and without the messages fairseq logs while it is imported."""
    lines = []
    for line in text.splitlines():
        if any(m in line for m in import_log):
            continue
        line = re.sub(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \| ", "", line)
        line = re.sub(r'"([a-z_]*(wall|wps|ups|gb_free|gb_allocated|time)[a-z_]*)": "[^"]*"', r'"\1": _', line)
        line = re.sub(r"\d+(\.\d+)?(s| seconds| sentences/s| tokens/s)\b", "_", line)
        # a warning whose stacklevel passes the script's first frame: "sys:1" in a process of
        # its own, the server's frame below the script in a forked one
        line = re.sub(r"^(sys|<frozen runpy>):\d+: (\w+Warning): ", r"WHERE: \2: ", line)
        lines.append(line)
    return lines


def run(argv, env=None):
    return subprocess.run([str(a) for a in argv], cwd=REPO, capture_output=True, text=True, env=env)


def test_train_and_generate_as_in_their_own_processes(server, data_bin, tmp_path):
    import_log = json.load(open(SOCK + ".log.json"))["import_log"]
    outputs = {}
    for how, env in (("forked", None), ("real", real_env())):
        save = tmp_path / how
        train = run(train_argv(data_bin, save, "transformer_pn", 3), env)
        assert train.returncode == 0, train.stderr[-3000:]
        generate = run([BIN / "fairseq-generate", data_bin, "--user-dir", REPO / "pn_fairseq", "--path",
                        save / "checkpoint_last.pt", "--beam", "2", "--batch-size", "8", "--cpu", "--gen-subset", "test"],
                       env)
        assert generate.returncode == 0, generate.stderr[-3000:]
        outputs[how] = (train, generate, torch.load(save / "checkpoint_last.pt", weights_only=False))
        assert (forked(server, str(save)) is not None) == (how == "forked")
    (train_f, gen_f, ckpt_f), (train_r, gen_r, ckpt_r) = outputs["forked"], outputs["real"]
    for key, value in ckpt_r["model"].items():
        assert torch.equal(ckpt_f["model"][key], value), key
    assert ckpt_f["optimizer_history"][-1]["num_updates"] == 3
    assert any("tensorboardX" in m for m in import_log)
    assert any("tensorboardX" in line for line in train_r.stdout.splitlines())  # the real process logs it
    strip = lambda text, save: normalized(text.replace(str(tmp_path / save), "SAVE"), import_log)  # noqa: E731
    assert strip(train_f.stdout, "forked") == strip(train_r.stdout, "real")
    assert strip(train_f.stderr, "forked") == strip(train_r.stderr, "real")
    assert strip(gen_f.stdout, "forked") == strip(gen_r.stdout, "real")
    assert any(line.startswith("H-") for line in gen_f.stdout.splitlines())
    assert strip(gen_f.stderr, "forked") == strip(gen_r.stderr, "real")


@pytest.mark.parametrize("command", ["fairseq-preprocess", "-m fairseq_cli.preprocess", "row_results"])
def test_data_commands_as_in_their_own_processes(command, server, data_bin, tmp_path):
    import_log = json.load(open(SOCK + ".log.json"))["import_log"]
    text = data_bin.parent  # the toy corpus data_bin was binarized from
    outputs = {}
    for how, env in (("forked", None), ("real", real_env())):
        out = tmp_path / how
        if command == "row_results":
            shutil.copytree(data_bin, out)
            argv = [BIN / "python", "-m", "pn_fairseq.cli.row_results", "count-test", out, "de", "en"]
        else:
            head = [BIN / "fairseq-preprocess"] if command == "fairseq-preprocess" else [BIN / "python", *command.split()]
            argv = [*head, "--source-lang", "de", "--target-lang", "en", "--joined-dictionary", "--trainpref",
                    text / "train", "--testpref", text / "test", "--destdir", out, "--workers", "1"]
        proc = run(argv, env)
        assert proc.returncode == 0, proc.stderr[-3000:]
        files = {p.name: p.read_bytes() for p in sorted(out.glob("*")) if p.suffix != ".log"}
        for log in out.glob("*.log"):  # fairseq-preprocess's copy of its log lines
            files[log.name] = normalized(log.read_text().replace(str(out), "OUT"), import_log)
        outputs[how] = (normalized(proc.stdout.replace(str(out), "OUT"), import_log),
                        normalized(proc.stderr.replace(str(out), "OUT"), import_log), files)
        assert (forked(server, str(out)) is not None) == (how == "forked")
    assert outputs["forked"] == outputs["real"]
    assert outputs["real"][2] or outputs["real"][0]  # files written, or a count printed


def test_an_error_exits_as_in_its_own_process(server, tmp_path):
    results = []
    for env in (None, real_env()):
        proc = run(train_argv(tmp_path / "nowhere", tmp_path / "run", "transformer_pn", 1), env)
        results.append((proc.returncode, proc.stderr.strip().splitlines()[-1]))
    assert results[0] == results[1]
    assert results[0][0] == 1 and results[0][1].startswith("fairseq-train: error: no such file or directory")
    assert forked(server, str(tmp_path / "nowhere")) is not None


def test_other_start_up_settings_run_as_their_own_process(server, tmp_path):
    marker = str(tmp_path / "threads")
    proc = run([BIN / "fairseq-train", "--help", "--save-dir", marker], dict(os.environ, OMP_NUM_THREADS="2"))
    assert proc.returncode == 0 and "usage: fairseq-train" in proc.stdout
    assert forked(server, marker) is None


def test_a_killed_caller_takes_its_command_with_it(server, data_bin, tmp_path):
    """SIGKILL once the command runs; SIGTERM at moments before and after the server took it
    (the row driver's Ctrl-C handling sends SIGTERM right after a tool starts): no command
    outlives its caller, and the server still serves afterwards."""
    cases = [("SIGKILL", None)] + [("SIGTERM", delay) for delay in (0.0, 0.02, 0.05, 0.1, 0.2, 0.5)]
    for i, (name, delay) in enumerate(cases):
        save = tmp_path / f"run{i}"
        argv = train_argv(data_bin, save, "transformer_pn", 100000, "--disable-validation")
        proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            if delay is None:
                deadline = time.monotonic() + 120
                while forked(server, str(save)) is None:
                    assert time.monotonic() < deadline and proc.poll() is None
                    time.sleep(0.05)
                os.kill(forked(server, str(save))["pid"], 0)  # running
            else:
                time.sleep(delay)
            proc.send_signal(getattr(signal, name))
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == -getattr(signal, name), (name, delay, proc.returncode)
        record = forked(server, str(save))
        deadline = time.monotonic() + 30
        while record is not None and os.path.exists(f"/proc/{record['pid']}"):
            assert time.monotonic() < deadline, f"{name} after {delay} s: the forked command outlived its caller"
            time.sleep(0.1)
    marker = str(tmp_path / "after")
    assert run([BIN / "fairseq-train", "--help", "--save-dir", marker]).returncode == 0
    assert forked(server, marker) is not None
