#!/usr/bin/env python3
"""Run a queue of row commands in the background, N at a time, from a fixed code snapshot.

Usage: python scripts/run_queue.py QUEUE [--lanes 2] [--threads 1] [--snapshot REV]

QUEUE is a text file with one shell command per line, run from the snapshot's root, e.g.
``SEED=2 bash scripts/multi30k/bn.sh`` ('#' starts a comment). The first start exports REV
(default HEAD) with ``git archive`` into ``runs/snapshots/<sha>/`` and records it beside the
queue (``QUEUE.snapshot``), so that editing the code while the runs go on changes none of them,
and a later start (after a session stop) continues with the same code. The snapshot shares this
checkout's ``.venv``, ``data-bin/`` and ``checkpoints/`` (links), and imports its own
packages (PYTHONPATH: the snapshot's root and ``data-prep/``, where setup.py finds them; the
venv's editable install would otherwise hand every job this checkout's ``pn_dataprep``). Every job runs with one thread (``OMP_NUM_THREADS=1``; ``--threads N`` gives each N, for a
lane alone on the machine: two threads train a Multi30k LM row about 1.6x as fast as one), ``nice``
and ``CPU=1`` (started with ``setsid``, the queue's session group is niced too: under
Linux's autogroup scheduling a plain ``nice`` job in its own session takes half the CPU from
the user's shell); row scripts resume an interrupted run from ``checkpoint_last.pt`` and skip a
finished one, so rerunning the queue is always safe. Progress: one line per start and end;
``QUEUE.state.json`` holds each job's status, exit code and wall time; logs in
``queue/<queue name>/`` beside QUEUE (``runs/queue/table1/`` for ``runs/table1.txt``). Pause all jobs (to benchmark): ``kill -STOP -<pgid>``, resume with
``-CONT``; the pgid is printed at start.

What survives a machine: checkpoints live in the ignored ``checkpoints/`` and go with the
machine; ``scripts/archive_results.py checkpoints/X results/X`` keeps each finished run's
results.json (and log records) in the repository, at the same path under ``results/`` as its
run directory under ``checkpoints/``. Each start therefore looks up every row command's run
directories (``[VAR=value ...] [bash] scripts/<dataset>/<row>.sh``: SAVE_DIR, else the row
scripts' ``checkpoints/<dataset>/<row>``; SEEDS=1,2 adds ``seed<k>/``) and says, before running:

* archived: ``results/<run dir>/results.json`` exists (for the same run directory and the seed,
  MAX_EPOCH, MAX_UPDATE, UPDATE_FREQ, EXTRA_ARGS the line sets) and the run has no checkpoints
  here: skipped, since the row script would train it again from update 0 (``--archive DIR``
  names another archive; a line whose runs are only partly archived runs, with a warning);
* resumes: ``checkpoint_last.pt`` exists (the row script continues from it);
* lost, starting over: the state file says the job was started (or done) before, but it has
  neither checkpoint_last.pt nor results.json here nor in the archive (a run stopped before its
  first checkpoint). A job the state file calls done is run again then. On a new machine the
  state file (in the ignored ``runs/``) is gone too: there the archive's ``in-progress.json``
  (``archive_results.py`` writes one for each started, unfinished run) says how far an earlier
  machine had taken the run.
"""
import argparse
import json
import os
import pathlib
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_PATHS = (".venv", "data-bin", "checkpoints")
RESULT_FILES = ("results.json", "results-lm.json", "results-mlm.json")  # scripts/run_row.sh, run_lm_row.sh, run_mlm_row.sh
PROGRESS = "in-progress.json"  # scripts/archive_results.py: a started run that had not finished
SOURCE_ROOTS = (".", "data-prep")  # setup.py's package directories, relative to the repository


def die(msg):
    sys.exit(f"run_queue: error: {msg}")


_ASSIGNMENT = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=(.*)", re.S)
_ROW_SCRIPT = re.compile(r"(?:\./)?scripts/([A-Za-z0-9_.-]+)/([A-Za-z0-9_.-]+)\.sh")
# results.json keys of the settings a queue line may set (pn_fairseq/cli/row_results.py writes them).
_RECORDED = {"SEED": "seed", "MAX_EPOCH": "max_epoch", "MAX_UPDATE": "max_update", "UPDATE_FREQ": "update_freq",
             "EXTRA_ARGS": "extra_args"}


def row_command(cmd):
    """``(env, [run dir relative to checkpoints/])`` of a queue line that runs one row script, or
    None: not a row command, or one whose run directories a plain reading cannot tell (shell
    expansions, several commands, a SAVE_DIR outside checkpoints/)."""
    if any(c in cmd for c in "$`;&|<>(){}*?~\n"):
        return None
    try:
        words = shlex.split(cmd)
    except ValueError:
        return None
    env = {}
    while words and _ASSIGNMENT.fullmatch(words[0]):
        name, value = _ASSIGNMENT.fullmatch(words.pop(0)).groups()
        env[name] = value
    if words[:1] == ["bash"]:
        words.pop(0)
    match = _ROW_SCRIPT.fullmatch(words[0]) if words else None
    if match is None:
        return None
    dataset, row = match.groups()
    base = env.get("SAVE_DIR") or f"checkpoints/{dataset}/{row}"  # scripts/run_row.sh's default
    if os.path.isabs(base):
        return None  # absolute: not the snapshot's checkpoints/ link
    parts = pathlib.PurePosixPath(os.path.normpath(base)).parts
    if len(parts) < 2 or parts[0] != "checkpoints":
        return None
    rel = pathlib.PurePosixPath(*parts[1:])
    seeds = [s for s in env.get("SEEDS", "").split(",") if s]
    return env, [rel / f"seed{s}" for s in seeds] if seeds else [rel]


def result_file(run_dir: pathlib.Path):
    """The finished run's result in ``run_dir`` (a translation, language-model or masked-LM row's), or None."""
    return next((run_dir / name for name in RESULT_FILES if (run_dir / name).is_file()), None)


def archived(archive: pathlib.Path, rel, env):
    """``(result path, None)`` if the archive holds this run's result, ``(None, why not)``
    if it holds one of other settings, ``(None, None)`` if none."""
    path = result_file(archive / rel)
    if path is None:
        return None, None
    try:
        result = json.loads(path.read_text())
    except ValueError:
        return None, f"{path} is not JSON"
    # results.json names its run directory; the LM files do not (the archive path is theirs).
    run_dir = os.path.normpath(str(result.get("run_dir", f"checkpoints/{rel}")))
    if run_dir != f"checkpoints/{rel}" and not run_dir.endswith(f"/checkpoints/{rel}"):
        return None, f"{path} is of {run_dir}, not checkpoints/{rel}"
    for var, key in _RECORDED.items():
        if var in env and key in result and str(result.get(key)) != env[var]:
            return None, f"{path} has {key} {result.get(key)!r}, the line sets {var}={env[var]}"
    return path, None


def progress(path: pathlib.Path):
    """What an archived in-progress.json says of an unfinished run, as a phrase."""
    try:
        rec = json.loads(path.read_text())
    except ValueError:
        return f"{path} (not JSON) records it as started"
    at = ", ".join(f"{k} {rec[k]}" for k in ("epoch", "num_updates") if rec.get(k) is not None)
    return (f"{path} records it started on an earlier machine" + (f", at {at}" if at else "")
            + (f" ({rec['recorded']})" if rec.get("recorded") else ""))


def survey(jobs, state, archive: pathlib.Path, checkpoints: pathlib.Path):
    """What each job's runs left here and in the archive: ``{cmd: "archived" | "run"}``, and one
    line per job worth saying (archived, resumes, lost, settings differ)."""
    plan, lines = {}, []
    for i, cmd in enumerate(jobs):
        old = state.jobs[cmd]
        started = old.get("status") in ("running", "done", "failed")  # by an earlier start of this queue
        parsed = row_command(cmd)
        if parsed is None:
            plan[cmd] = "skip" if old.get("status") == "done" else "run"
            continue
        env, rels = parsed
        kinds, found, notes = [], [], []
        for rel in rels:
            here = checkpoints / rel
            path, why = archived(archive, rel, env)
            if why:
                notes.append(f"run_queue: note [{i}] archive not used: {why}")
            if result_file(here) is not None:
                kinds.append("finished")
            elif (here / "checkpoint_last.pt").is_file():
                kinds.append("resumes")
            elif path is not None:
                kinds.append("archived")
                found.append(path)
            elif started or (archive / rel / PROGRESS).is_file():  # the latter: on an earlier machine
                kinds.append("lost")
            else:
                kinds.append("new")
        lines += notes
        if all(k == "archived" for k in kinds):
            plan[cmd] = "archived"
            lines.append(f"run_queue: archived [{i}] {cmd}: {', '.join(map(str, found))} (no checkpoints here; "
                         "not rerun)")
            continue
        # Finished here: the row script would only print the result again (a job that failed after
        # its result was written, e.g. refused on a rerun, counts too).
        plan[cmd] = "skip" if all(k == "finished" for k in kinds) else "run"
        for rel, kind in zip(rels, kinds):
            where = checkpoints / rel
            if kind == "resumes":
                lines.append(f"run_queue: resumes [{i}] {cmd}: from {where / 'checkpoint_last.pt'}")
            elif kind == "lost" and not started:
                lines.append(f"run_queue: lost [{i}] {cmd}: {progress(archive / rel / PROGRESS)}, but {where} has "
                             "no checkpoint_last.pt (its checkpoints went with that machine): starting over")
            elif kind == "lost":
                had = ("has a train.log but no checkpoint (stopped in its first epoch)" if (where / "train.log").is_file()
                       else "has neither checkpoint_last.pt nor results.json")
                lines.append(f"run_queue: lost [{i}] {cmd}: started before (state: {old.get('status')}"
                             f"{', ' + old['started'] if old.get('started') else ''}) but {where} {had}, and "
                             f"{archive / rel} no results.json: starting over")
            elif kind == "archived":
                lines.append(f"run_queue: warning [{i}] {cmd}: {archive / rel} is archived but the line's other "
                             "runs are not: the row script trains it again (one line per seed keeps it)")
    return plan, lines


def read_queue(path: pathlib.Path):
    jobs = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            jobs.append(line)
    if not jobs:
        die(f"{path} holds no command (one shell command per line)")
    return jobs


def snapshot(rev_file: pathlib.Path, rev: str) -> pathlib.Path:
    """The snapshot directory for the queue, exported on first use."""
    if rev_file.exists():
        sha = rev_file.read_text().strip()
    else:
        proc = subprocess.run(["git", "rev-parse", "--verify", f"{rev}^{{commit}}"], cwd=REPO, capture_output=True, text=True)
        if proc.returncode != 0:
            die(f"--snapshot {rev}: not a commit of this repository")
        sha = proc.stdout.strip()
    target = REPO / "runs" / "snapshots" / sha[:12]
    if not (target / "scripts" / "run_row.sh").exists():
        # A private directory per start, renamed into place: two queues started together on
        # the same commit once shared one ".tmp" and one deleted the other's half-made copy.
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = pathlib.Path(tempfile.mkdtemp(prefix=target.name + ".", suffix=".tmp", dir=target.parent))
        try:
            archive = subprocess.Popen(["git", "archive", sha], cwd=REPO, stdout=subprocess.PIPE)
            untar = subprocess.run(["tar", "-x", "-C", str(tmp)], stdin=archive.stdout)
            if archive.wait() != 0 or untar.returncode != 0:
                die(f"exporting {sha[:12]} into {tmp} failed (git archive | tar): see the lines above")
            for name in SHARED_PATHS:
                (REPO / name).mkdir(exist_ok=True)
                (tmp / name).symlink_to(REPO / name)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)  # no half-made snapshot left behind
            raise
        try:
            tmp.rename(target)
        except OSError:  # another start got there first; its copy is the same commit
            shutil.rmtree(tmp)
            if not (target / "scripts" / "run_row.sh").exists():
                die(f"{target} exists but is not a snapshot (no scripts/run_row.sh): remove it and start again")
    if not rev_file.exists():
        rev_file.write_text(sha + "\n")
    return target


class State:
    """QUEUE.state.json, rewritten atomically after every change."""

    def __init__(self, path: pathlib.Path, jobs):
        self.path, self.lock = path, threading.Lock()
        old = json.loads(path.read_text()) if path.exists() else {}
        self.jobs = {cmd: old.get(cmd, {"status": "pending"}) for cmd in jobs}

    def update(self, cmd, **fields):
        with self.lock:
            self.jobs[cmd].update(fields)
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp.write_text(json.dumps(self.jobs, indent=1) + "\n")
            tmp.replace(self.path)


def lower_session_priority(nice: int):
    """Linux schedules by session first (autogroup): a `nice` job in its own session, as
    `setsid` starts the queue, still takes an equal share against the user's shell, so the
    session's group gets the nice value too. Only when the queue leads its own session: the
    user's terminal session is not touched."""
    group = pathlib.Path("/proc/self/autogroup")
    if os.getsid(0) != os.getpid() or not group.exists():
        return
    try:
        group.write_text(f"{nice}\n")
    except OSError as e:
        print(f"run_queue: could not lower the session's priority ({e}); jobs run at nice +{nice} only", flush=True)


def slug(i, cmd):
    return f"{i:02d}-" + re.sub(r"[^A-Za-z0-9=.,-]+", "_", cmd)[:80]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("queue", type=pathlib.Path)
    ap.add_argument("--lanes", type=int, default=2, help="jobs at a time (default 2)")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads per job (OMP_NUM_THREADS, MKL_NUM_THREADS; "
                    "default 1)")
    ap.add_argument("--snapshot", default="HEAD", help="the commit to run (first start only; default HEAD)")
    ap.add_argument("--nice", type=int, default=10, help="added to the niceness the queue starts at (nice -n), "
                    "and the niceness of its session's scheduling group when it leads its own session")
    ap.add_argument("--archive", type=pathlib.Path, help="where finished runs are archived, at their path under "
                    "checkpoints/ (default: this checkout's results/, as scripts/archive_results.py writes it)")
    args = ap.parse_args()
    if args.archive is not None and not args.archive.is_dir():
        die(f"--archive {args.archive}: no such directory")
    if not args.queue.is_file():
        die(f"no queue file {args.queue}")
    if args.lanes < 1:
        die("--lanes must be at least 1")
    if args.threads < 1:
        die("--threads must be at least 1")
    jobs = read_queue(args.queue)
    snap = snapshot(args.queue.with_name(args.queue.name + ".snapshot"), args.snapshot)
    state = State(args.queue.with_name(args.queue.name + ".state.json"), jobs)
    logs = args.queue.parent / "queue" / args.queue.stem
    logs.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads), CPU="1",
               PYTHONPATH=os.pathsep.join(str((snap / d).resolve()) for d in SOURCE_ROOTS),
               PATH=f"{REPO / '.venv' / 'bin'}:{os.environ.get('PATH', '')}")
    lower_session_priority(args.nice)
    plan, notes = survey(jobs, state, args.archive or REPO / "results", REPO / "checkpoints")
    for cmd, what in plan.items():
        if what == "archived" and state.jobs[cmd].get("status") != "archived":
            state.update(cmd, status="archived")
        elif what == "skip" and state.jobs[cmd].get("status") not in ("done", None):
            state.update(cmd, status="done")  # its result is here: whatever failed after it, it is finished
    todo = [(i, c) for i, c in enumerate(jobs) if plan[c] == "run"]
    skipped = sum(what == "archived" for what in plan.values())
    print(f"run_queue: {len(todo)} of {len(jobs)} job(s) to run, {args.lanes} at a time, "
          f"{args.threads} thread{'s' if args.threads > 1 else ''} each, code {snap.name} "
          f"(pgid {os.getpgid(0)}); logs in {logs}" + (f"; {skipped} archived, not rerun" if skipped else ""),
          flush=True)
    for line in notes:
        print(line, flush=True)
    cpus = len(os.sched_getaffinity(0))
    if args.lanes * args.threads > cpus:
        print(f"run_queue: warning: {args.lanes} lane(s) x {args.threads} thread(s) is more than this machine's {cpus} "
              "CPU(s): the jobs will slow each other down (lower --lanes or --threads)", flush=True)
    lock = threading.Lock()
    failed = []

    def lane():
        while True:
            with lock:
                if not todo:
                    return
                i, cmd = todo.pop(0)
            log = logs / (slug(i, cmd) + ".log")
            start = time.time()
            state.update(cmd, status="running", started=time.strftime("%Y-%m-%d %H:%M:%S"), log=str(log))
            print(f"run_queue: start [{i}] {cmd}", flush=True)
            with open(log, "a") as out:
                rc = subprocess.call(["nice", "-n", str(args.nice), "bash", "-c", cmd], cwd=snap, env=env,
                                     stdout=out, stderr=subprocess.STDOUT)
            wall = round(time.time() - start)
            state.update(cmd, status="done" if rc == 0 else "failed", rc=rc, wall_s=wall)
            print(f"run_queue: {'done' if rc == 0 else f'FAILED (exit {rc})'} [{i}] {cmd} in {wall / 3600:.2f} h"
                  f"{'' if rc == 0 else f' (log: {log})'}", flush=True)
            if rc != 0:
                failed.append(cmd)

    threads = [threading.Thread(target=lane) for _ in range(args.lanes)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(f"run_queue: finished, {len(failed)} failed", flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
