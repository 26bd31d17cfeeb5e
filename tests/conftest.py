"""Shared fixtures: seeded inputs with padding, and the repository/shared-data paths."""
import os
import pathlib
import signal
import subprocess
import sys

import pytest

# One thread per process unless the caller chose: the suite runs two workers on two cores, each
# mostly waiting on a fairseq subprocess, and torch's default (a thread per core in every
# process) oversubscribes them (measured on 2 cores, four of the heaviest modules: 285 s
# without, 209 s with, 29% less CPU). Set before torch is imported, so that this process's
# thread pool and every subprocess the tests start inherit it; tests that need several threads
# set them themselves (tests/test_fused_norms.py, the NPROC tests of tests/test_scale_cli.py).
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import torch  # noqa: E402

# A suite started as a background job (`make test &`, a CI step under nohup) inherits SIGINT
# ignored, and passes that on to every command; bash cannot trap a signal that was ignored when it
# started, so the Ctrl-C tests (tests/test_children.py, tests/test_row_reuse.py) would see a script
# that never stops. Commands started from here get SIGINT's default, as from a terminal.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

REPO = pathlib.Path(__file__).resolve().parents[1]
BIN = pathlib.Path(sys.executable).parent
SHARED = pathlib.Path(os.environ.get("PN_SHARED_DIR", REPO.parent / "shared"))


FORKRUN = pathlib.Path(__file__).resolve().parent / "forkrun"
_forkrun_server = None


def pytest_configure(config):
    config.addinivalue_line("markers", "cuda: needs a CUDA GPU; skipped where torch.cuda.is_available() is false "
                            "(tests/test_cuda.py, make gpu-check stage b)")
    # The fairseq commands the tests start run forked from a process that has imported fairseq
    # (tests/forkrun/server.py says how and what differs); not in xdist's controller, which runs
    # no test. PN_TEST_REAL_PROCESSES=1: every command as its own process.
    global _forkrun_server
    controller = getattr(config.option, "numprocesses", None) and not hasattr(config, "workerinput")
    if controller or os.environ.get("PN_TEST_REAL_PROCESSES", "") not in ("", "0"):
        return
    if os.environ.get("PN_TEST_FORKRUN"):
        return  # a suite inside the suite (gpu-check's stage b): its commands use the outer server
    import tempfile

    sock = os.path.join(tempfile.mkdtemp(prefix="pn-forkrun-"), "socket")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(FORKRUN), os.environ.get("PYTHONPATH")]))
    os.environ["PN_TEST_FORKRUN"] = sock
    # Until the server has imported fairseq (~5 s) commands run as their own processes.
    with open(sock + ".stderr", "w") as err:  # the server holds its own copy
        _forkrun_server = subprocess.Popen([sys.executable, str(FORKRUN / "server.py"), sock],
                                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)


def pytest_unconfigure(config):
    if _forkrun_server is None:
        return
    died = _forkrun_server.poll()
    _forkrun_server.terminate()
    _forkrun_server.wait(timeout=30)
    sock = os.environ["PN_TEST_FORKRUN"]
    if died:
        # Commands fell back to real processes after this; say why rather than lose it.
        sys.stderr.write(f"forkrun server exited {died} during the run:\n{open(sock + '.stderr').read()[-3000:]}")
    import shutil

    shutil.rmtree(os.path.dirname(sock), ignore_errors=True)


@pytest.fixture(autouse=True)
def _startup_environment():
    """Undo what a test's in-process code put into the start-up variables (fairseq's iterators set
    PYTHONWARNINGS in os.environ): every later command would differ from the fork server's, and
    run as a process of its own."""
    from forkrun.sitecustomize import STARTUP_PREFIXES

    before = {k: v for k, v in os.environ.items() if k.startswith(STARTUP_PREFIXES)}
    yield
    for key in [k for k in os.environ if k.startswith(STARTUP_PREFIXES) and k not in before]:
        del os.environ[key]
    os.environ.update(before)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def padded_batch(T=6, B=4, C=8, dtype=torch.float64, scale=1.0, lengths=(6, 4, 5, 2)):
    """x: T x B x C, pad_mask: B x T (True = pad) with right padding of the given lengths."""
    x = (torch.randn(T, B, C, dtype=torch.float64) * scale + 0.3).to(dtype)
    pad_mask = torch.arange(T)[None, :] >= torch.tensor(lengths)[:, None]
    return x, pad_mask


def run(tool, *args, env=None):
    """Run a console script of this venv from the repository root; fail with its output."""
    proc = subprocess.run([str(BIN / tool), *map(str, args)], cwd=REPO, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, f"{tool} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout + proc.stderr


@pytest.fixture(scope="session")
def data_bin(tmp_path_factory):
    """A reversal task over 40 word types, binarized with a joined dictionary: learnable in
    a few updates, with real padding (the same toy data gpu-check's smoke run trains on).
    Returns the data-bin directory."""
    from pn_fairseq.gpucheck.stages import smoke_data

    return smoke_data(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="session")
def multi30k_prepared(tmp_path_factory):
    """Multi30k De-En prepared from the raw files in ../shared/data/multi30k by
    data-prep/prepare-multi30k.sh, once per test session (xdist's workers share the build):
    (data-bin directory, the run's work dir, the run as a CompletedProcess). Skips where the raw
    files are absent."""
    from conftest_dataprep import MULTI30K_RAW, MULTI30K_RAW_FILES, describe, prepare_multi30k_once

    missing = [f for f in MULTI30K_RAW_FILES if not (MULTI30K_RAW / f).exists()]
    if missing:
        pytest.skip(f"Multi30k raw files not found in {MULTI30K_RAW}: {', '.join(missing)}")
    base = tmp_path_factory.getbasetemp()
    # An xdist worker's base is <session>/<worker id>: the session's folder is shared by its workers.
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    dest, work, proc = prepare_multi30k_once(shared / "multi30k-prepared")
    assert proc.returncode == 0, describe(proc)
    return dest, work, proc
