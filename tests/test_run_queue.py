"""scripts/run_queue.py: jobs from a code snapshot, N at a time, state and logs, safe reruns."""
import json
import os
import pathlib
import subprocess
import sys

import pytest

from conftest import REPO

QUEUE = REPO / "scripts" / "run_queue.py"


def run(*args):
    return subprocess.run([sys.executable, str(QUEUE), *map(str, args)], cwd=REPO, capture_output=True, text=True)


def test_queue_runs_each_job_once_from_a_snapshot_with_one_thread(tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    queue = tmp_path / "q.txt"
    queue.write_text(
        "# a comment line\n"
        f"test -f scripts/run_row.sh && echo $OMP_NUM_THREADS $CPU > {marks}/a && pwd >> {marks}/a\n"
        f"echo b >> {marks}/b\n"
        # run from /: only PYTHONPATH can point at the snapshot's packages, not the working directory
        f"cd / && {sys.executable} -c 'import importlib.util as u; print(u.find_spec(\"pn_dataprep\").origin, "
        f"u.find_spec(\"pn_fairseq\").origin)' > {marks}/c\n"
        "exit 3  # a failing job\n")
    proc = run(queue, "--lanes", 2)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    state = json.loads((tmp_path / "q.txt.state.json").read_text())
    assert [v["status"] for v in state.values()] == ["done", "done", "done", "failed"]
    assert list(state.values())[3]["rc"] == 3
    threads, cpu, cwd = (marks / "a").read_text().split()
    sha = (tmp_path / "q.txt.snapshot").read_text().strip()
    assert (threads, cpu) == ("1", "1") and cwd.endswith(sha[:12])  # ran inside the snapshot
    snap = REPO / "runs" / "snapshots" / sha[:12]
    # the venv's editable install maps both packages to this checkout: the jobs must not see it
    found = [pathlib.Path(p).resolve() for p in (marks / "c").read_text().split()]
    assert found == [(snap / "data-prep" / "pn_dataprep" / "__init__.py").resolve(),
                     (snap / "pn_fairseq" / "__init__.py").resolve()]
    assert "FAILED (exit 3)" in proc.stdout
    # each job's log beside the queue file, none in this checkout's runs/
    logs = sorted(p.name for p in (tmp_path / "queue" / "q").iterdir())
    assert len(logs) == 4 and logs[1].startswith("01-echo_b") and (tmp_path / "queue" / "q" / logs[1]).read_text() == ""
    assert not (REPO / "runs" / "queue" / "q").exists()
    # a second start runs only what is not done
    proc = run(queue)
    assert (marks / "b").read_text() == "b\n"
    assert "1 of 4 job(s) to run" in proc.stdout


def test_queue_errors_are_one_line(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n")
    proc = run(empty)
    assert proc.returncode != 0 and proc.stderr.strip() == f"run_queue: error: {empty} holds no command (one shell command per line)"
    proc = run(tmp_path / "missing.txt")
    assert proc.stderr.strip().startswith("run_queue: error: no queue file")
    one = tmp_path / "one.txt"
    one.write_text("true\n")
    proc = run(one, "--snapshot", "nonsense-rev")
    assert proc.stderr.strip() == "run_queue: error: --snapshot nonsense-rev: not a commit of this repository"


def test_two_queues_started_together_share_one_complete_snapshot(tmp_path):
    # A clone of this repository with the working run_queue.py, so the commit is not exported yet.
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", "--shared", str(REPO), str(clone)], check=True)
    (clone / "scripts" / "run_queue.py").write_text(QUEUE.read_text())
    # a failed export leaves nothing behind and says so in one line
    fake = tmp_path / "fake-bin"
    fake.mkdir()
    (fake / "tar").write_text("#!/bin/sh\ncat > /dev/null; exit 2\n")
    (fake / "tar").chmod(0o755)
    failing = tmp_path / "failing.txt"
    failing.write_text("true\n")
    proc = subprocess.run([sys.executable, str(clone / "scripts" / "run_queue.py"), str(failing)], cwd=clone,
                          capture_output=True, text=True, env=dict(os.environ, PATH=f"{fake}:{os.environ['PATH']}"))
    assert proc.returncode == 1 and proc.stderr.strip().splitlines()[-1].startswith("run_queue: error: exporting ")
    assert list((clone / "runs" / "snapshots").iterdir()) == []
    starts = []
    for name in ("a", "b", "c"):
        queue = tmp_path / f"{name}.txt"
        queue.write_text("test -f configs/multi30k/pn.conf && test -f scripts/run_row.sh\n")
        starts.append(subprocess.Popen([sys.executable, str(clone / "scripts" / "run_queue.py"), str(queue)],
                                       cwd=clone, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = [p.communicate()[0] for p in starts]
    assert [p.returncode for p in starts] == [0, 0, 0], outputs
    snapshots = sorted(p.name for p in (clone / "runs" / "snapshots").iterdir())
    sha = (tmp_path / "a.txt.snapshot").read_text().strip()
    assert snapshots == [sha[:12]]  # one copy, no leftover temporary directory


def _sessions_can_lower_their_group():
    """Autogroup scheduling, and a new session allowed to write its group's nice (not in every container)."""
    if not pathlib.Path("/proc/self/autogroup").exists():
        return False
    probe = subprocess.run(["setsid", "-w", "sh", "-c", "echo 5 > /proc/self/autogroup && cat /proc/self/autogroup"],
                           capture_output=True, text=True)
    return probe.returncode == 0 and probe.stdout.split()[-2:] == ["nice", "5"]


@pytest.mark.skipif(not _sessions_can_lower_their_group(), reason="no autogroup scheduling, or sessions may not set its nice here")
def test_a_queue_in_its_own_session_lowers_the_sessions_priority(tmp_path):
    # With autogroup, nice only orders processes inside one session: a setsid-started queue
    # must lower its session's group, or its jobs take half the CPU from the user's shell.
    queue = tmp_path / "q.txt"
    queue.write_text(f"cat /proc/self/autogroup > {tmp_path}/group; nice > {tmp_path}/nice\n")
    ours = pathlib.Path("/proc/self/autogroup").read_text()
    niced = str(min(19, os.nice(0) + 7))  # nice -n adds to the niceness the suite runs at
    proc = subprocess.run(["setsid", "-w", sys.executable, str(QUEUE), str(queue), "--nice", "7"], cwd=REPO,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "group").read_text().split()[-2:] == ["nice", "7"]
    assert (tmp_path / "nice").read_text().strip() == niced
    assert pathlib.Path("/proc/self/autogroup").read_text() == ours  # this session untouched
    # started without setsid (inside this session), the queue leaves the session's group alone
    inside = tmp_path / "inside.txt"
    inside.write_text(queue.read_text())
    proc = subprocess.run([sys.executable, str(QUEUE), str(inside), "--nice", "7"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0 and (tmp_path / "nice").read_text().strip() == niced
    assert pathlib.Path("/proc/self/autogroup").read_text() == ours
    assert (tmp_path / "group").read_text() == ours
