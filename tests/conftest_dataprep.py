"""Helpers for the data-prep tests (imported by tests/test_dataprep_*.py; not a pytest conftest).

Runs the data-prep/*.sh scripts the way a user would: bash, from an unrelated directory, with
the virtualenv's python and fairseq-preprocess on PATH, offline.
"""
import contextlib
import fcntl
import functools
import http.server
import json
import os
import pathlib
import subprocess
import sys
import tarfile
import threading

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = pathlib.Path(os.environ.get("PN_SHARED_DIR", REPO.parent / "shared"))
DATA_PREP = REPO / "data-prep"
VENV_BIN = pathlib.Path(sys.executable).parent
MULTI30K_RAW = SHARED / "data" / "multi30k"
MULTI30K_RAW_FILES = [f"{split}.{lang}.gz" for split in ("train", "val", "test_2016_flickr") for lang in ("de", "en")]


def script_env(**extra):
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHON"] = sys.executable
    env["WORKERS"] = "2"
    for key in ("RAW_DIR", "DEST", "WORK_DIR", "MIRROR", "BPE_MERGES", "CHECK_SIZES", "KEEP_WORK"):
        env.pop(key, None)
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run_script(name, cwd, timeout=600, **env):
    """Run data-prep/<name> with the given environment; returns the CompletedProcess."""
    return subprocess.run(["bash", str(DATA_PREP / name)], cwd=cwd, env=script_env(**env),
                          capture_output=True, text=True, timeout=timeout)


def describe(proc):
    return f"exit {proc.returncode}\n--- stderr (tail) ---\n{proc.stderr[-4000:]}"


def read(path):
    return pathlib.Path(path).read_text(encoding="utf-8").split("\n")[:-1]


def prep_json(dest):
    return json.loads((pathlib.Path(dest) / "prep.json").read_text(encoding="utf-8"))


def make_tgz(path, members):
    """A .tgz holding ``{member name: text}`` (UTF-8), like the recipes' archives."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.parent / (path.name + ".d")
    with tarfile.open(path, "w:gz") as tar:
        for name, text in members.items():
            file = staging / name
            file.parent.mkdir(parents=True, exist_ok=True)
            file.write_text(text, encoding="utf-8")
            tar.add(file, arcname=name)
    return path


def failing_preprocess_dir(tmp):
    """A directory with a ``fairseq-preprocess`` that fails, to put first on PATH."""
    bindir = pathlib.Path(tmp) / "failing-bin"
    bindir.mkdir(parents=True, exist_ok=True)
    fake = bindir / "fairseq-preprocess"
    fake.write_text("#!/bin/sh\necho 'simulated fairseq-preprocess crash' >&2\nexit 3\n")
    fake.chmod(0o755)
    return bindir


@contextlib.contextmanager
def http_server(directory):
    """Serve ``directory`` on 127.0.0.1 (a local MIRROR: the download branch, offline)."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def load_fairseq_split(dest, split, src, tgt):
    """The split through fairseq's own loader, as fairseq-train would read it."""
    from fairseq.data import Dictionary
    from fairseq.tasks.translation import load_langpair_dataset

    src_dict = Dictionary.load(str(pathlib.Path(dest) / f"dict.{src}.txt"))
    tgt_dict = Dictionary.load(str(pathlib.Path(dest) / f"dict.{tgt}.txt"))
    dataset = load_langpair_dataset(
        str(dest), split, src, src_dict, tgt, tgt_dict, combine=False, dataset_impl=None,
        upsample_primary=1, left_pad_source=True, left_pad_target=False,
        max_source_positions=1024, max_target_positions=1024)
    return dataset, src_dict, tgt_dict


def prepare_multi30k_once(root):
    """data-bin/multi30k.de-en built under ``root`` by prepare-multi30k.sh from MULTI30K_RAW, by
    whichever process asks first; a second one (another xdist worker: ``--dist loadfile`` may put
    the modules that use it on both) waits on the lock and reuses it rather than build it again.
    Returns (dest, work dir, the building run as a CompletedProcess)."""
    root = pathlib.Path(root)
    root.mkdir(parents=True, exist_ok=True)
    dest, work, record = root / "data-bin" / "multi30k.de-en", root / "work", root / "build.json"
    with open(root / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not record.exists():
            proc = run_script("prepare-multi30k.sh", cwd=root, RAW_DIR=MULTI30K_RAW, DEST=dest, WORK_DIR=work)
            tmp = record.with_suffix(".tmp")
            tmp.write_text(json.dumps({"args": proc.args, "returncode": proc.returncode, "stdout": proc.stdout,
                                       "stderr": proc.stderr}), encoding="utf-8")
            tmp.replace(record)
    built = json.loads(record.read_text(encoding="utf-8"))
    return dest, work, subprocess.CompletedProcess(built["args"], built["returncode"], built["stdout"], built["stderr"])
