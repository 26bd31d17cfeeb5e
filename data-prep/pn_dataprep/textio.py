"""Line files as the Moses perl scripts read them, parallel line maps, progress."""
import gzip
import multiprocessing
import os
import sys
import time

from pn_common.atomic import atomic_text_file

LOG_PREFIX_ENV = "PREP_LOG_PREFIX"


class DataPrepError(Exception):
    """A problem the user has to fix (missing file, bad checksum, wrong counts); the message says what."""


def log(message):
    prefix = os.environ.get(LOG_PREFIX_ENV, "[dataprep]")
    print(f"{prefix} {message}", file=sys.stderr, flush=True)


def _open_text(path, mode):
    opener = gzip.open if str(path).endswith(".gz") else open
    # newline="\n": perl splits records on "\n" only; universal newlines would also split on
    # "\r", "\x0b", "\x85", "\u2028", ... and change line counts. errors="replace": perl's :utf8
    # layer does not stop on a malformed byte either.
    return opener(path, mode, encoding="utf-8", errors="replace", newline="\n")


def read_lines(path):
    """The lines of a UTF-8 text file (gzip if it ends in .gz), without their final newline."""
    try:
        f = _open_text(path, "rt")
    except FileNotFoundError:
        raise DataPrepError(f"missing input file {path}") from None
    with f:
        for line in f:
            yield line[:-1] if line.endswith("\n") else line


def count_lines(path):
    """Number of lines, counting a last line without newline (``wc -l`` would not)."""
    n, last = 0, b"\n"
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            n += block.count(b"\n")
            last = block[-1:]
    return n + (last != b"\n")


def write_lines(path, lines, label=None):
    progress = Progress(label or os.path.basename(os.fspath(path)))
    with atomic_text_file(path) as out:
        for line in lines:
            out.write(line)
            out.write("\n")
            progress.update()
    progress.done()
    return progress.count


class Progress:
    """A line count on stderr every ``every`` seconds, and a summary at the end."""

    def __init__(self, label, every=15.0):
        self.label, self.every = label, every
        self.count = 0
        self.start = self.last = time.monotonic()

    def update(self, n=1):
        self.count += n
        if self.count % 1000 == 0:
            now = time.monotonic()
            if now - self.last >= self.every:
                self.last = now
                log(f"{self.label}: {self.count:,} lines ({self.count / (now - self.start):,.0f}/s)")

    def done(self):
        log(f"{self.label}: {self.count:,} lines in {time.monotonic() - self.start:.1f} s")


# Set in each worker by _init_worker: the per-line function built from (factory, kwargs).
_WORKER_FN = None


def _init_worker(factory, kwargs):
    global _WORKER_FN
    _WORKER_FN = factory(**kwargs)


def _apply_chunk(lines):
    return [_WORKER_FN(line) for line in lines]


def _chunks(lines, size):
    chunk = []
    for line in lines:
        chunk.append(line)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def map_lines(factory, kwargs, lines, workers=1, chunk_size=1000):
    """``factory(**kwargs)`` applied to every line, in order, on ``workers`` processes.

    The function is built once per process (sacremoses and subword-nmt objects are slow to
    construct and need not be picklable); chunks keep the inter-process overhead small.
    """
    if workers <= 1:
        fn = factory(**kwargs)
        for line in lines:
            yield fn(line)
        return
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("fork" if "fork" in methods else None)
    with ctx.Pool(workers, initializer=_init_worker, initargs=(factory, kwargs)) as pool:
        for out in pool.imap(_apply_chunk, _chunks(lines, chunk_size)):
            yield from out
