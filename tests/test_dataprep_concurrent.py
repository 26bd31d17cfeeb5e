"""Two preparations at once: different DESTs get different default work directories and
both finish; a second run on the same DEST stops at once, naming the run that holds it.

The scripts run from a copy of data-prep/ in a temporary "checkout", so that the default
work directory (<checkout>/work/...) is not the real checkout's."""
import os
import pathlib
import shutil
import signal
import subprocess
import time

from conftest_dataprep import DATA_PREP, describe, script_env

SMALL = dict(SYNTH_TRAIN=300, SYNTH_VALID=20, SYNTH_TEST=20, BPE_MERGES=100, WORKERS=1)


def checkout(tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(DATA_PREP, repo / "data-prep", ignore=shutil.ignore_patterns("__pycache__"))
    return repo / "data-prep" / "prepare-synthetic.sh"


def start(script, cwd, **env):
    return subprocess.Popen(["bash", str(script)], cwd=cwd, env=script_env(**SMALL, **env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def finish(proc, timeout=600):
    out, err = proc.communicate(timeout=timeout)
    proc.stderr_text = err
    return proc


def files(dest):
    """{relative path: bytes} of a prepared directory, except prep.json and preprocess.log
    (they record the paths)."""
    dest = pathlib.Path(dest)
    return {str(p.relative_to(dest)): p.read_bytes() for p in sorted(dest.rglob("*"))
            if p.is_file() and p.name not in ("prep.json", "preprocess.log")}


def test_two_destinations_prepared_at_once(tmp_path):
    script = checkout(tmp_path)
    first, second = tmp_path / "out" / "one", tmp_path / "out" / "two"
    runs = [start(script, tmp_path, DEST=first), start(script, tmp_path, DEST=second)]
    runs = [finish(p) for p in runs]
    for proc in runs:
        assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stderr_text[-4000:]}"
    work = [line.split("work directory ", 1)[1].split(",")[0] for proc in runs
            for line in proc.stderr_text.splitlines() if "work directory " in line]
    assert len(work) == 2 and work[0] != work[1]
    assert all(w.startswith(str(tmp_path / "repo" / "work" / "synthetic-")) for w in work)
    assert os.path.basename(work[0]).startswith("synthetic-one-")
    assert files(first) == files(second) and "train.de-en.de.bin" in files(first)
    # cleaned up: no work directories, partial outputs or lock files left
    assert sorted(os.listdir(tmp_path / "out")) == ["one", "two"]
    assert os.listdir(tmp_path / "repo" / "work") == []


def test_second_run_on_the_same_destination_names_the_first(tmp_path):
    script = checkout(tmp_path)
    dest = tmp_path / "out"
    lock = tmp_path / "out.lock"
    first = start(script, tmp_path, DEST=dest)
    try:
        deadline = time.monotonic() + 120
        while not (lock.exists() and lock.read_text().strip()) and first.poll() is None:
            assert time.monotonic() < deadline, "the first run took no lock"
            time.sleep(0.05)
        second = subprocess.run(["bash", str(script)], cwd=tmp_path, env=script_env(**SMALL, DEST=dest),
                                capture_output=True, text=True, timeout=120)
    finally:
        finish(first)
    assert first.returncode == 0, f"exit {first.returncode}\n{first.stderr_text[-4000:]}"
    assert second.returncode != 0
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1, second.stderr
    assert "another preparation is using DEST=" + str(dest) in lines[0]
    assert f"pid {first.pid} on " in lines[0] and str(lock) in lines[0]
    assert (dest / "prep.json").exists() and not lock.exists()
    third = subprocess.run(["bash", str(script)], cwd=tmp_path, env=script_env(**SMALL, DEST=dest),
                           capture_output=True, text=True, timeout=120)
    assert third.returncode == 0 and "already prepared" in third.stderr, describe(third)


def test_explicit_shared_work_directory_is_locked_too(tmp_path):
    script = checkout(tmp_path)
    work = tmp_path / "work"
    first = start(script, tmp_path, DEST=tmp_path / "one", WORK_DIR=work)
    try:
        lock = tmp_path / "work.lock"
        deadline = time.monotonic() + 120
        while not (lock.exists() and lock.read_text().strip()) and first.poll() is None:
            assert time.monotonic() < deadline, "the first run took no lock"
            time.sleep(0.05)
        second = subprocess.run(["bash", str(script)], cwd=tmp_path,
                                env=script_env(**SMALL, DEST=tmp_path / "two", WORK_DIR=work),
                                capture_output=True, text=True, timeout=120)
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # the first run and the tools it started
        finish(first)
    assert second.returncode != 0
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and f"another preparation is using WORK_DIR={work}" in lines[0], second.stderr
    assert not (tmp_path / "two.lock").exists()  # the second run released the DEST it had locked
