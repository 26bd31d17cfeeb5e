"""scripts/run_queue.py: jobs from a code snapshot, N at a time, state and logs, safe reruns."""
import json
import subprocess
import sys

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
        "exit 3  # a failing job\n")
    proc = run(queue, "--lanes", 2)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    state = json.loads((tmp_path / "q.txt.state.json").read_text())
    assert [v["status"] for v in state.values()] == ["done", "done", "failed"]
    assert list(state.values())[2]["rc"] == 3
    threads, cpu, cwd = (marks / "a").read_text().split()
    sha = (tmp_path / "q.txt.snapshot").read_text().strip()
    assert (threads, cpu) == ("1", "1") and cwd.endswith(sha[:12])  # ran inside the snapshot
    assert "FAILED (exit 3)" in proc.stdout
    # a second start runs only what is not done
    proc = run(queue)
    assert (marks / "b").read_text() == "b\n"
    assert "1 of 3 job(s) to run" in proc.stdout


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
