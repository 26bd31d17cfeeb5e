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
    proc = run(one, "--threads", 0)
    assert proc.returncode != 0 and proc.stderr.strip() == "run_queue: error: --threads must be at least 1"


def test_threads_sets_each_jobs_thread_count_and_oversubscription_warns(tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    queue = tmp_path / "q.txt"
    queue.write_text(f"echo $OMP_NUM_THREADS $MKL_NUM_THREADS > {marks}/a\n")
    proc = run(queue, "--lanes", 1, "--threads", 2)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (marks / "a").read_text().split() == ["2", "2"]
    assert "1 at a time, 2 threads each" in proc.stdout
    cpus = len(os.sched_getaffinity(0))
    assert ("warning" in proc.stdout) == (2 > cpus)
    (tmp_path / "q.txt.state.json").unlink()
    proc = run(queue, "--lanes", 1, "--threads", cpus + 1)
    assert (marks / "a").read_text().split() == [str(cpus + 1)] * 2
    assert f"run_queue: warning: 1 lane(s) x {cpus + 1} thread(s) is more than this machine's {cpus} CPU(s)" in proc.stdout


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


def _module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("run_queue", QUEUE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_row_lines_run_directories_are_the_row_scripts_own(tmp_path):
    """The queue reads a line's run directories as the row script will choose them (its DRY_RUN=1
    --save-dir), and a finished run's archive sits at the same path under results/ (the archived runs)."""
    rq = _module()
    lines = rq.read_queue(REPO / "scripts" / "queues" / "converged.txt") + ["SEEDS=1,2 bash scripts/multi30k/pn.sh"]
    env = dict(os.environ, DRY_RUN="1", PATH=f"{REPO / '.venv' / 'bin'}:{os.environ['PATH']}")
    for line in lines:
        _, rels = rq.row_command(line)
        out = subprocess.run(["bash", "-c", line], cwd=REPO, env=env, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        saved = [w.split()[0] for w in out.stdout.split("--save-dir ")[1:]]
        saved = [os.path.relpath(os.path.join(REPO, s), REPO / "checkpoints") for s in saved]
        assert saved and sorted(set(saved)) == sorted(map(str, rels)), line
    for line in ("cd / && bash scripts/multi30k/pn.sh", "SAVE_DIR=$HOME/x bash scripts/multi30k/pn.sh",
                 "SAVE_DIR=/tmp/x bash scripts/multi30k/pn.sh", "SAVE_DIR=runs/x bash scripts/multi30k/pn.sh",
                 "echo scripts/multi30k/pn.sh", "true"):
        assert rq.row_command(line) is None, line
    archived = sorted((REPO / "results").glob("multi30k*/**/results.json"))
    assert len(archived) >= 20  # results/multi30k/<row>/seed<k>, results/multi30k-preln/<row>
    for path in archived:
        rel = path.parent.relative_to(REPO / "results")
        assert rq.archived(REPO / "results", rel, {}) == (path, None)
    found, why = rq.archived(REPO / "results", archived[0].parent.relative_to(REPO / "results"), {"SEED": "99"})
    assert found is None and "the line sets SEED=99" in why


FAKE_ROW = """#!/usr/bin/env bash
# A row script that trains nothing: marks that it ran and leaves a finished run, as run_row.sh would.
base=${SAVE_DIR:-checkpoints/fake/$(basename "$0" .sh)}
if [[ -n ${SEEDS:-} ]]; then dirs=(); for s in ${SEEDS//,/ }; do dirs+=("$base/seed$s"); done; else dirs=("$base"); fi
for d in "${dirs[@]}"; do mkdir -p "$d"; echo ran >> "$d/ran"; echo '{}' > "$d/results.json"; done
"""


def test_on_a_new_machine_the_queue_skips_what_is_archived_and_names_what_was_lost(tmp_path):
    # A clone stands for the new machine: no checkpoints/, its own results/ archive, fake row scripts.
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", "--shared", str(REPO), str(clone)], check=True)
    (clone / "scripts" / "run_queue.py").write_text(QUEUE.read_text())
    for row in ("row", "other"):
        (clone / "scripts" / "fake").mkdir(exist_ok=True)
        (clone / "scripts" / "fake" / f"{row}.sh").write_text(FAKE_ROW)
    git = ["git", "-C", str(clone), "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    subprocess.run(git + ["add", "scripts"], check=True)
    subprocess.run(git + ["commit", "-qm", "fake rows"], check=True)

    def archive(rel, **fields):
        (clone / "results" / rel).mkdir(parents=True)
        (clone / "results" / rel / "results.json").write_text(json.dumps(fields))

    archive("fake/row/seed1", run_dir="/old/runs/snapshots/0123456789ab/checkpoints/fake/row/seed1", seed=1)
    archive("fake/row/seed6", run_dir="checkpoints/fake/row/seed6", seed=1)  # not what the line asks for
    archive("fake/other", run_dir="checkpoints/fake/other", seed=1)
    archive("fake/multi/seed7", run_dir="checkpoints/fake/multi/seed7", seed=7)
    (clone / "checkpoints" / "fake" / "row" / "seed4").mkdir(parents=True)
    (clone / "checkpoints" / "fake" / "row" / "seed4" / "train.log").write_text("epoch 1 ...\n")
    (clone / "checkpoints" / "fake" / "row" / "seed5").mkdir(parents=True)
    (clone / "checkpoints" / "fake" / "row" / "seed5" / "checkpoint_last.pt").write_bytes(b"")
    jobs = [f"SEED={k} SAVE_DIR=checkpoints/fake/row/seed{k} bash scripts/fake/row.sh" for k in range(1, 7)]
    jobs += ["bash scripts/fake/other.sh", "SEEDS=7,8 SAVE_DIR=checkpoints/fake/multi bash scripts/fake/row.sh",
             f"echo plain > {tmp_path}/plain"]
    queue = tmp_path / "q.txt"
    queue.write_text("\n".join(jobs) + "\n")
    # what the state file beside the queue says of an earlier start (seed 3: never started)
    (tmp_path / "q.txt.state.json").write_text(json.dumps({
        jobs[1]: {"status": "running", "started": "2026-01-01 00:00:00"}, jobs[3]: {"status": "done", "rc": 0}}))

    def start(*args):
        proc = subprocess.run([sys.executable, str(clone / "scripts" / "run_queue.py"), str(queue), *args], cwd=clone,
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout

    out = start()
    ck, res = clone / "checkpoints" / "fake", clone / "results" / "fake"
    assert "run_queue: 7 of 9 job(s) to run" in out and "; 2 archived, not rerun" in out
    assert f"run_queue: archived [0] {jobs[0]}: {res}/row/seed1/results.json (no checkpoints here; not rerun)" in out
    assert (f"run_queue: lost [1] {jobs[1]}: started before (state: running, 2026-01-01 00:00:00) but {ck}/row/seed2 "
            f"has neither checkpoint_last.pt nor results.json, and {res}/row/seed2 no results.json: starting over") in out
    assert "[2]" not in out.split("job(s) to run")[1].split("run_queue: start")[0]  # new: nothing to say
    assert f"run_queue: lost [3] {jobs[3]}: started before (state: done) but {ck}/row/seed4 has a train.log but " \
        "no checkpoint (stopped in its first epoch)" in out
    assert f"run_queue: resumes [4] {jobs[4]}: from {ck}/row/seed5/checkpoint_last.pt" in out
    assert (f"run_queue: note [5] archive not used: {res}/row/seed6/results.json has seed 1, the line sets SEED=6"
            in out)
    assert f"run_queue: archived [6] {jobs[6]}: {res}/other/results.json" in out
    assert f"run_queue: warning [7] {jobs[7]}: {res}/multi/seed7 is archived but the line's other runs are not" in out
    ran = sorted(str(p.parent.relative_to(ck)) for p in ck.rglob("ran"))
    assert ran == ["multi/seed7", "multi/seed8", "row/seed2", "row/seed3", "row/seed4", "row/seed5", "row/seed6"]
    assert (tmp_path / "plain").read_text() == "plain\n"
    state = json.loads((tmp_path / "q.txt.state.json").read_text())
    assert [state[j]["status"] for j in jobs] == ["archived", "done", "done", "done", "done", "done", "archived",
                                                  "done", "done"]
    # a second start: the finished runs are done, the archived ones still skipped
    out = start()
    assert "run_queue: 0 of 9 job(s) to run" in out and "; 2 archived, not rerun" in out
    # another archive (here an empty one) holds neither: those two run
    empty = tmp_path / "empty"
    empty.mkdir()
    out = start("--archive", empty)
    assert "run_queue: 2 of 9 job(s) to run" in out and "lost" not in out
    assert (ck / "row" / "seed1" / "ran").is_file() and (ck / "other" / "ran").is_file()
    proc = subprocess.run([sys.executable, str(clone / "scripts" / "run_queue.py"), str(queue), "--archive",
                           tmp_path / "nowhere"], cwd=clone, capture_output=True, text=True)
    assert proc.returncode != 0 and proc.stderr.strip() == f"run_queue: error: --archive {tmp_path / 'nowhere'}: no such directory"


def test_language_model_results_count_as_finished_and_archived(tmp_path):
    """A finished LM run keeps checkpoint_last.pt beside results-lm.json: it is finished, not
    resumed (whatever the state file says after a refused rerun); an archived results-mlm.json
    stands for its run on a new machine, as results.json does."""
    from types import SimpleNamespace

    rq = _module()
    ck, res = tmp_path / "checkpoints", tmp_path / "results"
    done = ck / "lm-multi30k" / "postln" / "seed1"
    done.mkdir(parents=True)
    (done / "checkpoint_last.pt").write_bytes(b"")
    (done / "results-lm.json").write_text('{"kind": "lm", "seed": 1}')
    half = ck / "lm-multi30k" / "pn" / "seed1"
    half.mkdir(parents=True)
    (half / "checkpoint_last.pt").write_bytes(b"")
    (res / "bert-multi30k" / "preln-pn" / "seed1").mkdir(parents=True)
    (res / "bert-multi30k" / "preln-pn" / "seed1" / "results-mlm.json").write_text('{"kind": "mlm", "seed": 1}')
    jobs = ["SEED=1 SAVE_DIR=checkpoints/lm-multi30k/postln/seed1 bash scripts/lm-multi30k/postln.sh",
            "SEED=1 SAVE_DIR=checkpoints/lm-multi30k/pn/seed1 bash scripts/lm-multi30k/pn.sh",
            "SEED=1 SAVE_DIR=checkpoints/bert-multi30k/preln-pn/seed1 bash scripts/bert-multi30k/preln-pn.sh",
            "SEED=2 SAVE_DIR=checkpoints/bert-multi30k/preln-pn/seed2 bash scripts/bert-multi30k/preln-pn.sh"]
    state = SimpleNamespace(jobs={jobs[0]: {"status": "failed"}, jobs[1]: {"status": "running"},
                                  jobs[2]: {"status": "pending"}, jobs[3]: {"status": "pending"}})
    plan, lines = rq.survey(jobs, state, res, ck)
    assert plan == {jobs[0]: "skip", jobs[1]: "run", jobs[2]: "archived", jobs[3]: "run"}
    assert any(line.startswith("run_queue: resumes [1]") for line in lines)
    assert any(line.startswith("run_queue: archived [2]") and "results-mlm.json" in line for line in lines)
    # the archive's SEED is checked where the file records one
    path, why = rq.archived(res, "bert-multi30k/preln-pn/seed1", {"SEED": "2"})
    assert path is None and "the line sets SEED=2" in why


def test_on_a_new_machine_an_archived_in_progress_record_names_the_lost_run(tmp_path):
    """No state file (it lived in the old machine's runs/), no checkpoints: the archive's
    in-progress.json (scripts/archive_results.py) is what tells a lost run from a new one."""
    rq = _module()
    archive, checkpoints = tmp_path / "results", tmp_path / "checkpoints"
    lost = archive / "multi30k-converged" / "bn" / "seed1"
    lost.mkdir(parents=True)
    (lost / "in-progress.json").write_text(json.dumps(
        {"run_dir": "checkpoints/multi30k-converged/bn/seed1", "epoch": 17, "num_updates": 1950,
         "checkpoint_last": True, "recorded": "2026-12-07 10:16"}))
    jobs = [f"SEED=1 SAVE_DIR=checkpoints/multi30k-converged/{row}/seed1 bash scripts/multi30k-converged/{row}.sh"
            for row in ("bn", "pnv")]
    plan, lines = rq.survey(jobs, rq.State(tmp_path / "q.txt.state.json", jobs), archive, checkpoints)
    assert plan == {jobs[0]: "run", jobs[1]: "run"}
    assert lines == [f"run_queue: lost [0] {jobs[0]}: {lost / 'in-progress.json'} records it started on an earlier "
                     "machine, at epoch 17, num_updates 1950 (2026-12-07 10:16), but "
                     f"{checkpoints / 'multi30k-converged' / 'bn' / 'seed1'} has no checkpoint_last.pt (its checkpoints "
                     "went with that machine): starting over"]
    # the same run resumed on this machine is not lost
    (checkpoints / "multi30k-converged" / "bn" / "seed1").mkdir(parents=True)
    (checkpoints / "multi30k-converged" / "bn" / "seed1" / "checkpoint_last.pt").write_bytes(b"")
    plan, lines = rq.survey(jobs, rq.State(tmp_path / "q.txt.state.json", jobs), archive, checkpoints)
    assert [line.split(" [")[0] for line in lines] == ["run_queue: resumes"]
