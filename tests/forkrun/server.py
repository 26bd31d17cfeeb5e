"""Run the suite's fairseq commands in processes forked from one that has imported fairseq.

Importing torch and fairseq costs every fairseq-train / fairseq-generate process about 4.5 s
of CPU before its first step, and the suite starts more than 160 of them (many through the
row driver's bash scripts). conftest.py starts this server once per pytest worker and puts
``tests/forkrun`` on PYTHONPATH; a process that is one of sitecustomize.ENTRIES connects, and the
server forks a child that becomes that process: its stdin/stdout/stderr, arguments,
environment, working directory and ignored signals; the script or module then
runs as ``__main__``, the way the interpreter runs it. The client waits, forwards signals, and
exits with the child's status; if the client dies, the server kills the child, and if the
server dies, the kernel does (PR_SET_PDEATHSIG). The child stays in the server's process group:
a signal sent to the caller's group reaches the client, which forwards it once (in the caller's
group the child would get it twice).

Why forking is safe here: the server only imports (no torch op runs, so no OpenMP pool or other
thread exists: checked before serving), and nothing from the forking survives in a child but
the imported modules. What differs from a process of its own, and how it is handled:
- the root logger: fairseq's import configures it (DEBUG, a stderr handler); fairseq-train
  configures it before importing fairseq. Each entry starts from the state its real process
  has at that point (LOGGING_AT_START); the INFO lines fairseq logs while being imported are
  not repeated (the server writes them to SOCKET.log.json; tests/test_forkrun.py compares
  each entry's output with a process of its own).
- start-up-only settings (interpreter, PYTHON*, OMP_* ...): a command whose values differ from
  the server's runs as its own process (sitecustomize.startup_state).
- the random state of numpy (Python's own ``random`` reseeds itself in a forked child).
- a warning whose stacklevel reaches past the script's first frame is attributed to the
  server's frame below it (``<frozen runpy>:88``) instead of ``sys:1``.

PN_TEST_REAL_PROCESSES=1 turns the server off: every command then runs as its own process.
Usage: python server.py SOCKET (the socket appears once the imports are done; stop with SIGTERM).
"""
import ctypes
import importlib
import json
import logging
import os
import select
import signal
import socket
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sitecustomize  # noqa: E402
from sitecustomize import startup_state  # noqa: E402

FORWARDED = {getattr(signal, name) for name in sitecustomize.FORWARDED}  # what the client forwards

PRELOAD = ("torch", "numpy", "fairseq")
# Where the root logger stands when the entry's own code starts, in its real process:
# "pristine" (nothing configured yet: fairseq_cli.train calls basicConfig before it imports
# fairseq) or "imported" (as fairseq's import leaves it: generate and preprocess import fairseq
# first, so their basicConfig is a no-op, as it is here).
LOGGING_AT_START = {"fairseq-train": "pristine", "fairseq-generate": "imported", "fairseq-preprocess": "imported",
                    "fairseq_cli.preprocess": "imported", "pn_fairseq.cli.row_results": "pristine"}


def _root_state():
    root = logging.getLogger()
    return root.level, list(root.handlers)


def _set_root(state):
    root = logging.getLogger()
    root.setLevel(state[0])
    root.handlers[:] = state[1]


def preload():
    """Import PRELOAD; returns (root logger before, after, the INFO-and-above messages logged meanwhile)."""
    pristine = _root_state()
    lines = []
    handle = logging.Logger.handle

    def collect(logger, record):
        lines.append(record.getMessage())
        return handle(logger, record)

    # INFO reaches Logger.handle only if the root allows it; a level is not a handler, so
    # fairseq's basicConfig during the imports still configures the root as it would.
    logging.getLogger().setLevel(logging.INFO)
    logging.Logger.handle = collect
    try:
        for name in PRELOAD:
            importlib.import_module(name)
    finally:
        logging.Logger.handle = handle
    return pristine, _root_state(), lines


def _recv_request(conn):
    data, fds, _flags, _addr = socket.recv_fds(conn, 1 << 16, 3)
    if len(data) < 4 or len(fds) != 3:
        raise ValueError("malformed request")
    size = struct.unpack("!I", data[:4])[0]
    data = data[4:]
    while len(data) < size:
        more = conn.recv(size - len(data))
        if not more:
            raise ValueError("truncated request")
        data += more
    return json.loads(data), fds


def _become(request, fds, logging_states, import_env):
    """In the forked child: turn into the requested process and run it; never returns."""
    for sig in FORWARDED | {signal.SIGCHLD}:
        signal.signal(sig, signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL)
    for name in request["ignored"]:
        signal.signal(getattr(signal, name), signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED)  # blocked by the server across the fork
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request["cwd"])
    os.umask(request["umask"])
    os.environ.clear()
    os.environ.update(request["env"])
    for key, value in import_env.items():
        os.environ.setdefault(key, value)
    import numpy
    numpy.random.seed()
    sys.argv = list(request["argv"])
    key = request["target"] if request["kind"] == "module" else os.path.basename(request["target"])
    _set_root(logging_states[LOGGING_AT_START[key]])
    import runpy
    status = 0
    try:
        if request["kind"] == "script":
            sys.path[0] = os.path.dirname(request["target"])
            runpy.run_path(request["target"], run_name="__main__")
        else:
            sys.path[0] = request["cwd"]
            runpy.run_module(request["target"], run_name="__main__", alter_sys=True)
    except SystemExit as e:
        if e.code is None:
            status = 0
        elif isinstance(e.code, int):
            status = e.code
        else:
            print(e.code, file=sys.stderr)
            status = 1
    except KeyboardInterrupt:
        sys.excepthook(*sys.exc_info())
        status = -int(signal.SIGINT)
    except BaseException:
        sys.excepthook(*sys.exc_info())
        status = 1
    import atexit
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    if status < 0:
        signal.signal(-status, signal.SIG_DFL)
        os.kill(os.getpid(), -status)
    os._exit(status & 0xFF)


def serve(path):
    state = startup_state(os.environ)
    environ = dict(os.environ)
    pristine, imported, import_log = preload()
    # what the imports put into the environment (torch: KMP_DUPLICATE_LIB_OK, KMP_INIT_AT_FORK),
    # as they do in every real process that imports them
    added = {k: v for k, v in os.environ.items() if k not in environ}
    threads = os.listdir("/proc/self/task") if os.path.isdir("/proc/self/task") else ["?"]
    if len(threads) != 1:
        print(f"forkrun: {len(threads)} threads after the imports; not serving (forking would be unsafe)",
              file=sys.stderr)
        return 1
    states = {"pristine": pristine, "imported": imported}
    parent = os.getppid()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path + ".tmp")
    listener.listen(16)
    with open(path + ".env.tmp", "w") as f:
        json.dump({"state": state, "ignore": sorted(added)}, f)
    with open(path + ".log.json", "w") as f:
        json.dump({"import_log": import_log}, f)
    os.rename(path + ".env.tmp", path + ".env")
    os.rename(path + ".tmp", path)  # clients connect only once this exists

    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    server = os.getpid()
    children = {}  # pid -> the client's connection; None once the client has gone

    def send(conn, message):
        try:
            conn.sendall(json.dumps(message).encode() + b"\n")
            return True
        except OSError:
            return False

    def client_gone(pid):
        """The client died (its command with it, as a process of its own would have)."""
        conn, children[pid] = children[pid], None
        if conn is not None:
            conn.close()
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    while not stop and os.getppid() == parent:
        conns = {conn: pid for pid, conn in children.items() if conn is not None}
        try:
            ready, _, _ = select.select([listener, wake_r, *conns], [], [], 1.0)
        except InterruptedError:
            ready = []
        for sock in ready:
            if sock is wake_r:
                os.read(wake_r, 4096)
            elif sock is listener:
                try:
                    conn, _ = listener.accept()
                    request, fds = _recv_request(conn)
                except (OSError, ValueError) as e:
                    send(conn, {"refused": str(e)})
                    conn.close()
                    continue
                sys.stdout.flush()
                sys.stderr.flush()
                # Blocked across the fork: a signal the client forwards at once would otherwise
                # meet the server's own handlers in the child, before _become resets them.
                signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED)
                pid = os.fork()
                if pid != 0:
                    signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED)
                if pid == 0:
                    try:
                        signal.set_wakeup_fd(-1)
                        # if the server dies, so does the command (its client then reads no status)
                        ctypes.CDLL(None).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
                        if os.getppid() != server:
                            os._exit(70)
                        listener.close()
                        conn.close()
                        for other in conns:
                            other.close()
                        os.close(wake_r)
                        os.close(wake_w)
                        _become(request, fds, states, added)
                    finally:
                        os._exit(70)  # only if becoming the command failed before it ran
                for fd in fds:
                    os.close(fd)
                with open(path + ".log", "a") as log:  # what ran here: tests/test_forkrun.py reads it
                    log.write(json.dumps({"pid": pid, "argv": request["argv"]}) + "\n")
                children[pid] = conn
                if not send(conn, {"pid": pid}):
                    client_gone(pid)
            else:  # a client's connection is readable only when the client has gone
                try:
                    gone = not sock.recv(1)
                except OSError:
                    gone = True
                if gone:
                    client_gone(conns[sock])
        while children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            conn = children.pop(pid, None)
            if conn is not None:
                send(conn, {"status": os.waitstatus_to_exitcode(status)})
                conn.close()
    for pid in children:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for suffix in ("", ".env", ".log.json", ".log"):
        try:
            os.unlink(path + suffix)
        except FileNotFoundError:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(serve(sys.argv[1]))
