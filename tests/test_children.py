"""scripts/children.sh: a signal stops the script's background tools, even a tool that missed the
first TERM or was forked just before the signal."""
import os
import pathlib
import signal
import subprocess
import time

from conftest import REPO

# A tool that survives its first TERM, as one does when the TERM lands between its fork and its exec.
STUBBORN = ('trap "echo ignored >> $MARK; trap - TERM" TERM; echo $$ > $STARTED.tmp; mv $STARTED.tmp $STARTED; '
            'while :; do sleep 0.1; done')


def _gone(pid):
    """True when pid has exited (a zombie nobody reaps counts as exited)."""
    try:
        return pathlib.Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def _driver(tmp_path, body):
    script = tmp_path / "driver.sh"
    script.write_text(f'source "{REPO}/scripts/children.sh"\n'
                      "trap 'trap \"\" INT TERM; stop_children; echo stopped >&2; exit 130' INT TERM\n" + body)
    env = dict(os.environ, MARK=str(tmp_path / "mark"), STARTED=str(tmp_path / "started"))
    return subprocess.Popen(["bash", str(script)], env=env, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def _wait_for(path, proc):
    deadline = time.time() + 30
    while not path.exists():
        assert proc.poll() is None and time.time() < deadline, proc.stderr.read() if proc.poll() is not None else ""
        time.sleep(0.02)
    return int(path.read_text())


def test_ctrl_c_stops_a_tool_that_missed_the_first_term(tmp_path):
    proc = _driver(tmp_path, f"fg_child bash -c '{STUBBORN}'\necho finished >&2\n")
    try:
        pid = _wait_for(tmp_path / "started", proc)
        os.killpg(proc.pid, signal.SIGINT)  # a terminal's Ctrl-C: the tool ignores it (a background command)
        assert proc.wait(timeout=20) == 130
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.stderr.read().splitlines()[-1] == "stopped"
    assert (tmp_path / "mark").read_text() == "ignored\n"  # the first TERM did not stop it; a later one did
    deadline = time.time() + 5
    while not _gone(pid) and time.time() < deadline:
        time.sleep(0.05)
    assert _gone(pid)


def test_a_tool_forked_just_before_the_handler_ran_is_stopped(tmp_path):
    # What a trap between spawn's fork and its record sees: starting set, the tool only in $!.
    proc = _driver(tmp_path, 'starting=${!:-none}\nsleep 300 &\necho $! > "$STARTED"\nstop_children\n'
                             'echo "children: ${children[*]}" >&2\n')
    try:
        out = proc.communicate(timeout=20)[1]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    pid = int((tmp_path / "started").read_text())
    assert out.strip() == f"children: {pid}" and _gone(pid)
