"""The C kernels of the fused norms (``norm_kernels.c``), built on first use with the system
C compiler and loaded with ctypes.

No torch headers are involved, so a build takes about a second (a torch C++ extension
takes a minute) and is cached per source, compiler flags and CPU in
``$PN_FAIRSEQ_KERNEL_CACHE`` (default ``~/.cache/pn_fairseq/kernels``). Where no compiler
works, :func:`load` returns None and says why once; the norms then run their eager path.
ctypes releases the GIL during a call, and the kernels parallelize over rows with OpenMP
using ``torch.get_num_threads()`` threads.
"""
import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Optional

import torch

logger = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("norm_kernels.c")
# Tried in order: the fastest flags first, then without OpenMP or -march=native (some
# compilers lack one of them), so that a working compiler always yields some build.
FLAG_SETS = (
    ["-O3", "-march=native", "-fopenmp"],
    ["-O3", "-fopenmp"],
    ["-O3", "-march=native"],
    ["-O3"],
)
BASE_FLAGS = ["-std=gnu99", "-shared", "-fPIC"]

_lock = threading.Lock()
_lib = None
_error: Optional[str] = None
_P = ctypes.c_void_p


def cache_dir() -> Path:
    """``$PN_FAIRSEQ_KERNEL_CACHE``, else ``~/.cache/pn_fairseq/kernels`` when it can be
    written, else a per-user folder in the temporary directory (a read-only home)."""
    env = os.environ.get("PN_FAIRSEQ_KERNEL_CACHE")
    if env:
        return Path(env)
    home = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "pn_fairseq" / "kernels"
    try:
        home.mkdir(parents=True, exist_ok=True)
        if os.access(home, os.W_OK):
            return home
    except OSError:
        pass
    return Path(tempfile.gettempdir()) / f"pn_fairseq-kernels-{os.getuid()}"


def _cpu_tag() -> str:
    """-march=native builds are only valid on the CPU they were built on (a shared home
    directory may serve several machines)."""
    flags = ""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith(("flags", "Features"))), "")
    except OSError:
        pass
    return platform.machine() + flags


def _compile(cc: str, flags, out: Path):
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=out.parent)
    os.close(fd)
    try:
        subprocess.run([cc, *BASE_FLAGS, *flags, str(SOURCE), "-o", tmp, "-lm"],
                       check=True, capture_output=True, text=True)
        os.replace(tmp, out)  # atomic: a concurrent process sees the old file or the new one
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _build() -> ctypes.CDLL:
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if not cc:
        raise RuntimeError("no C compiler found (install gcc, or set CC)")
    source = SOURCE.read_bytes()
    errors = []
    for flags in FLAG_SETS:
        key = hashlib.sha256(source + " ".join([cc, *flags]).encode() + _cpu_tag().encode()).hexdigest()[:16]
        path = cache_dir() / f"norm_kernels-{key}.so"
        try:
            t0 = time.perf_counter()
            cached = path.exists()
            if not cached:
                _compile(cc, flags, path)
            lib = ctypes.CDLL(str(path))
        except (OSError, subprocess.CalledProcessError) as e:
            detail = getattr(e, "stderr", "") or str(e)
            errors.append(f"{cc} {' '.join(flags)}: {detail.strip().splitlines()[-1] if detail.strip() else e}")
            continue
        _declare(lib)
        lib.pn_flags = " ".join(flags)
        lib.pn_build = "cached" if cached else f"built in {time.perf_counter() - t0:.1f} s"
        return lib
    raise RuntimeError("building pn_fairseq/norms/kernels/norm_kernels.c failed: " + "; ".join(errors))


def _declare(lib):
    i64, f32, i32 = ctypes.c_int64, ctypes.c_float, ctypes.c_int
    lib.pn_forward.argtypes = [_P, i64, i64, i64, f32, _P, i32, _P, _P, _P, _P, _P, _P, _P, _P, _P, i32]
    lib.pn_forward.restype = i32
    lib.pn_backward.argtypes = [_P, _P, i64, i64, i64, f32, _P, _P, _P, _P, _P, _P, _P, _P, _P, _P, i32, _P, i32]
    lib.pn_backward.restype = i32


def load():
    """The loaded library, or None when it cannot be built (the reason: :func:`unavailable_reason`)."""
    global _lib, _error
    if _lib is not None or _error is not None:
        return _lib
    with _lock:
        if _lib is None and _error is None:
            try:
                _lib = _build()
            except Exception as e:  # any failure means: run the eager path
                _error = str(e)
                logger.warning("pn_fairseq fused norms unavailable, using the eager path: %s", _error)
    return _lib


def unavailable_reason() -> Optional[str]:
    load()
    return _error


def _ptr(t: Optional[torch.Tensor]):
    return None if t is None else ctypes.c_void_p(t.data_ptr())


def _check(t: Optional[torch.Tensor], name: str, dtype=torch.float32):
    if t is not None and (t.dtype != dtype or not t.is_contiguous() or t.device.type != "cpu"):
        raise ValueError(f"{name}: expected a contiguous {dtype} CPU tensor, got {t.dtype} on {t.device}")


def _sums(c: int, wanted):
    return [torch.empty(c, dtype=torch.float64) if w else None for w in wanted]


def forward(x, groups, eps, w_rows=None, shift=None, stats=(False, False, False), a=None, b=None, pad_value=None,
            r=None):
    """One pass over ``x: N x C`` (float32, contiguous). ``stats`` selects the sums
    (``sum_real (xs - shift)``, ``sum_real (xs - shift)^2``, ``sum_all xs^2``; float64 ``C``);
    ``a``/``b`` given: also ``y = xs * a + b`` (``pad_value`` at padding rows if given).
    ``r``: the group factors (``N x G``) from an earlier pass; without it they are computed.
    Returns ``(y or None, s1_keep, s2_keep, s2_all, r)`` (``r`` None without groups)."""
    lib = load()
    for t, name in ((x, "x"), (w_rows, "w_rows"), (shift, "shift"), (a, "a"), (b, "b"), (pad_value, "pad_value"), (r, "r")):
        _check(t, name)
    n, c = x.shape
    s1, s2, sa = _sums(c, stats)
    y = torch.empty_like(x) if a is not None else None
    given = r is not None
    if groups and r is None:
        r = torch.empty(n, groups, dtype=torch.float32)
    rc = lib.pn_forward(_ptr(x), n, c, groups, eps, _ptr(r), int(given), _ptr(w_rows), _ptr(shift), _ptr(s1),
                        _ptr(s2), _ptr(sa), _ptr(a), _ptr(b), _ptr(pad_value), _ptr(y), torch.get_num_threads())
    if rc:
        raise MemoryError("pn_forward kernel: out of memory")
    return y, s1, s2, sa, r


def backward(dy, x, groups, eps, w_rows=None, shift=None, sums=(False, False, False, False),
             c1=None, c2=None, c3=None, pad_mode=0, r=None):
    """One pass over ``dy, x: N x C``. ``sums`` selects ``sum_real dy``, ``sum_all dy``,
    ``sum_real dy * (xs - shift)``, ``sum_all dy * xs`` (float64 ``C``); ``c1``/``c2`` given:
    also ``dx`` from ``dxs = dy * c1 - xs * c2 + c3`` (see norm_kernels.c). ``r``: the
    forward's group factors (``N x G``), or None to recompute them.
    Returns ``(dx or None, sdy_keep, sdy_all, sdyx_keep, sdyx_all)``."""
    lib = load()
    for t, name in ((dy, "dy"), (x, "x"), (w_rows, "w_rows"), (shift, "shift"), (c1, "c1"), (c2, "c2"), (c3, "c3"), (r, "r")):
        _check(t, name)
    n, c = x.shape
    outs = _sums(c, sums)
    dx = torch.empty_like(x) if c1 is not None else None
    rc = lib.pn_backward(_ptr(dy), _ptr(x), n, c, groups, eps, _ptr(r), _ptr(w_rows), _ptr(shift), *map(_ptr, outs),
                         _ptr(c1), _ptr(c2), _ptr(c3), pad_mode, _ptr(dx), torch.get_num_threads())
    if rc:
        raise MemoryError("pn_backward kernel: out of memory")
    return (dx, *outs)
