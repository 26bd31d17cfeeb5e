"""The client half of tests/forkrun (see server.py): on PYTHONPATH only inside the test suite.

Every Python process a test starts imports this module at start-up. A process that is one of
the commands in ENTRIES, started with the environment the server was started with (the
variables read at start-up only: STARTUP_PREFIXES), asks the server to run it instead: it hands over
its stdin/stdout/stderr, arguments, environment, working directory, umask and ignored signals, forwards
the signals it gets, and exits as the command did (its status, or the signal that killed it).
Anything else (no server, another command, another environment, a refused request) continues
as the ordinary process it is; this module then costs a few imports of the standard library.
"""
import os
import sys

SOCKET_VAR = "PN_TEST_FORKRUN"
# Read once, when an interpreter or torch's OpenMP runtime starts, so a forked child could not
# take them from its request: a command whose values differ runs as its own process.
STARTUP_PREFIXES = ("PYTHON", "OMP_", "MKL_", "KMP_", "GOMP_", "LD_", "MALLOC_", "TORCH_", "CUDA_", "NVIDIA_")
# console script or `-m` module -> how the server runs it ("script" / "module")
ENTRIES = {"fairseq-train": "script", "fairseq-generate": "script", "fairseq-preprocess": "script",
           "fairseq_cli.preprocess": "module", "pn_fairseq.cli.row_results": "module"}
FORWARDED = ("SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2")


def startup_state(env, ignore=()):
    """What a command must share with the server to run in it: the interpreter, and STARTUP_PREFIXES
    but ignore (what the server's own imports set, as they do in every process: torch's KMP_*)."""
    return {"executable": sys.executable, "prefix": sys.prefix,
            "env": {k: v for k, v in env.items() if k.startswith(STARTUP_PREFIXES) and k not in ignore}}


def _request():
    """(kind, target) of this process if the server may run it, else None."""
    argv = getattr(sys, "orig_argv", [])
    if len(argv) >= 3 and argv[1] == "-m" and ENTRIES.get(argv[2]) == "module":
        return "module", argv[2]
    if len(argv) >= 2 and ENTRIES.get(os.path.basename(argv[1])) == "script":
        return "script", os.path.abspath(argv[1])
    return None


def _umask():
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _run_through_server(path, kind, target):
    import json
    import signal
    import socket
    import struct

    ignored = [s.name for s in signal.Signals if s not in (signal.SIGKILL, signal.SIGSTOP)
               and signal.getsignal(s) == signal.SIG_IGN]
    header = json.dumps({"kind": kind, "target": target, "argv": sys.argv, "env": dict(os.environ),
                         "cwd": os.getcwd(), "ignored": ignored, "umask": _umask()}).encode()
    # Forwarding starts before the connection: a signal that comes before the command's pid is
    # kept and sent once it is known (or, if the server does not take the command, to this
    # process, which then continues as the command itself).
    child, pending, previous = [], [], {}

    def forward(signum, _frame):
        if not child:
            pending.append(signum)
            return
        try:
            os.kill(child[0], signum)
        except ProcessLookupError:
            pass

    for name in FORWARDED:
        sig = getattr(signal, name)
        if signal.getsignal(sig) != signal.SIG_IGN:
            previous[sig] = signal.signal(sig, forward)

    def run_here():
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for signum in pending:
            os.kill(os.getpid(), signum)

    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(path)
        socket.send_fds(conn, [struct.pack("!I", len(header)) + header], [0, 1, 2])
        reply = conn.makefile("rb")
        first = json.loads(reply.readline() or b'{"refused": "no answer"}')
    except (OSError, ValueError):
        first = {}
    if "pid" not in first:
        conn.close()
        return run_here()
    child.append(first["pid"])
    for signum in pending:
        forward(signum, None)
    while True:
        try:
            line = reply.readline()
            break
        except InterruptedError:
            continue
    status = json.loads(line)["status"] if line else -int(signal.SIGKILL)
    if status < 0:  # killed by a signal: die of it too, as the command's own process would have
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        signal.signal(-status, signal.SIG_DFL)
        os.kill(os.getpid(), -status)
    os._exit(status)


def _main():
    path = os.environ.get(SOCKET_VAR)
    if not path or not os.path.exists(path):
        return
    request = _request()
    if request is None:
        return
    try:
        with open(path + ".env") as f:
            import json
            served = json.load(f)
            if served["state"] != startup_state(os.environ, served["ignore"]):
                return
    except (OSError, ValueError, KeyError):
        return
    _run_through_server(path, *request)


_main()
