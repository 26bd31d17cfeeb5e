"""Console tools (``pn-average-checkpoints``, ``pn-score``, ``pn-results``, ``pn-plot``).

Every tool writes its output through :func:`atomic_output`, so an interrupted run
never leaves a truncated checkpoint, JSON or PNG where a later step would pick it up.
"""
import contextlib
import logging
import os
import tempfile


def quiet_library_logging():
    """Undo the DEBUG root logger that importing fairseq's models leaves behind.

    ``fairseq/models/wav2vec/wav2vec2_classification.py`` calls
    ``logging.basicConfig(level=DEBUG)`` at import time (pn_fairseq imports fairseq's
    models), after which matplotlib and others flood stderr. These tools report with
    print(), so warnings are all they need from the logging system.
    """
    root = logging.getLogger()
    if root.level < logging.WARNING:
        root.setLevel(logging.WARNING)


@contextlib.contextmanager
def atomic_output(path):
    """Yield a temporary path next to ``path``; move it onto ``path`` on success.

    The temporary file lives in the destination directory because ``os.replace`` is
    only atomic within one file system. On an exception it is removed and ``path``
    is left untouched.
    """
    path = os.path.abspath(path)
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    os.close(fd)
    # mkstemp creates the file 0600; give the result the permissions a plain open() would.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def write_text_atomic(path, text):
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_output(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
