"""Readable failures for the fairseq command-line tools.

A researcher who passes a bad flag, a truncated checkpoint or a data directory without
dictionaries should read one line that names the problem and the fix, not a 60-line
traceback through fairseq. :class:`PNUserError` marks the plugin's own configuration errors;
:func:`install_cli_excepthook` (active only inside ``fairseq-*`` commands) prints such errors,
and the usual bad-input failures that fairseq lets escape (a checkpoint ``torch.load`` cannot
read, a missing file), as one ``<tool>: error: ...`` line and exits with status 1. Any other
exception keeps Python's full traceback.
"""
import os
import pickle
import sys
import zipfile


class PNUserError(ValueError):
    """A configuration error the user can fix; its message names the flag and the fix."""


def _tool(argv) -> str:
    return os.path.basename(argv[0]) if argv else "pn_fairseq"


def _chain(exc):
    seen = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    return seen


def _torch_load_target(tb):
    """The file a failing ``torch.load`` was reading, from its frame in the traceback."""
    target = None
    while tb is not None:
        frame = tb.tb_frame
        if frame.f_code.co_name == "load" and "torch" in frame.f_code.co_filename and "f" in frame.f_locals:
            f = frame.f_locals["f"]
            target = f if isinstance(f, (str, os.PathLike)) else getattr(f, "name", target)
        tb = tb.tb_next
    return target


_CORRUPT = (pickle.UnpicklingError, EOFError, zipfile.BadZipFile)


def explain(exc) -> str:
    """One line for a known bad-input failure, or None to keep the traceback."""
    for e in _chain(exc):
        if isinstance(e, PNUserError):
            return str(e)
        text = str(e)
        if "PNUserError: " in text:  # re-raised from a spawned worker
            return text.split("PNUserError: ", 1)[1].strip().splitlines()[0]
    for e in _chain(exc):
        target = _torch_load_target(e.__traceback__)
        corrupt = isinstance(e, _CORRUPT) or (
            isinstance(e, RuntimeError) and ("PytorchStreamReader" in str(e) or "zip archive" in str(e)))
        if target is not None and corrupt:
            return (f"cannot read checkpoint {target}: it is truncated or not a PyTorch/fairseq checkpoint "
                    f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'no detail'}); "
                    "use another checkpoint (e.g. the previous checkpoint_N.pt) or retrain")
        if target is not None and isinstance(e, (KeyError, TypeError, AttributeError)):
            return (f"{target} is not a fairseq checkpoint ({type(e).__name__}: {e}); "
                    "pass a checkpoint written by fairseq-train")
    for e in _chain(exc):
        if isinstance(e, FileNotFoundError) and e.filename:
            hint = ""
            if os.path.basename(str(e.filename)).startswith("dict."):
                hint = ": the data directory has no dictionaries; pass a fairseq-preprocess output directory (data-prep/prepare-*.sh)"
            return f"no such file: {e.filename}{hint}"
    return None


def install_cli_excepthook(argv=None):
    """Inside a ``fairseq-*`` command, print known bad-input failures as one line."""
    argv = sys.argv if argv is None else argv
    if not _tool(argv).startswith("fairseq-") or getattr(sys.excepthook, "_pn_fairseq", False):
        return
    previous = sys.excepthook

    def hook(exc_type, exc, tb):
        line = explain(exc) if exc is not None else None
        if line is None:
            return previous(exc_type, exc, tb)
        sys.stderr.write(f"{_tool(argv)}: error: {line}\n")
        sys.stderr.flush()  # Python then exits with status 1, as after any uncaught exception

    hook._pn_fairseq = True
    sys.excepthook = hook
