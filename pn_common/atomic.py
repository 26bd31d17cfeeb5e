"""Atomic file output: a killed or failing writer never leaves a finished-looking file.

One implementation for the whole project: the data-prep helpers (``pn_dataprep``) write their
text files through it, and so do the console tools of ``pn_fairseq`` (checkpoints, JSON,
markdown, PNG).
"""
import contextlib
import os
import tempfile


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


@contextlib.contextmanager
def atomic_text_file(path):
    """A UTF-8 text file open for writing that appears at ``path`` only when the block succeeds.

    Lines end in ``"\\n"`` on every platform (as the Moses perl scripts write them).
    """
    with atomic_output(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            yield f


def write_text_atomic(path, text):
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_text_file(path) as f:
        f.write(text)
