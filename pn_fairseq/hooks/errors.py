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
import re
import sys
import zipfile


class PNUserError(ValueError):
    """A configuration error the user can fix; its message names the flag and the fix."""


class NormDivergence(PNUserError):
    """A norm's running statistic stopped being finite: training diverged."""


class VocabularyMismatch(PNUserError):
    """The checkpoint's embedding tables and the data's dictionaries differ in size: the
    checkpoint was trained on another data-bin. ``sizes``: ``[(side, checkpoint rows,
    dictionary entries)]`` for every side ("source", "target") that differs."""

    def __init__(self, sizes, training: bool = False):
        self.sizes, self.training = list(sizes), training
        super().__init__(self.line())

    def line(self, trained_on=None) -> str:
        if len(self.sizes) == 2 and self.sizes[0][1:] == self.sizes[1][1:]:  # a joined dictionary
            parts = (f"source and target vocabularies: {self.sizes[0][1]} entries in the checkpoint, "
                     f"{self.sizes[0][2]} in this data's dictionaries")
        else:
            parts = "; ".join(f"{side} vocabulary: {theirs} entries in the checkpoint, {mine} in this data's dictionary"
                              for side, theirs, mine in self.sizes)
        fix = "pass the data-bin the checkpoint was trained with" + (f" ({trained_on})" if trained_on else "")
        if self.training:
            fix += "; to train on this data, use a new --save-dir"
        return f"the checkpoint was trained on another dictionary ({parts}): {fix}"

    def __reduce__(self):  # pickled across processes with its sizes, not its message
        return type(self), (self.sizes, self.training)


_SIZE_MISMATCH = re.compile(r"size mismatch for (encoder|decoder)\.embed_tokens\.weight: copying a param with shape "
                            r"torch\.Size\(\[(\d+), \d+\]\) from checkpoint, the shape in current model is "
                            r"torch\.Size\(\[(\d+), \d+\]\)")


def _trained_on(tb):
    """The data directory recorded in the checkpoint fairseq was loading (its ``state`` in
    ``load_model_ensemble_and_task`` or the trainer's ``load_checkpoint``), or None."""
    state = None
    for function in ("load_model_ensemble_and_task", "load_checkpoint"):
        state = state or _frame_local(tb, function, "state")
    if not isinstance(state, dict):
        return None
    try:
        if state.get("cfg") is not None:
            return state["cfg"]["task"]["data"]
        return getattr(state.get("args"), "data", None)
    except (KeyError, TypeError, AttributeError):
        return None


def _tool(argv) -> str:
    return os.path.basename(argv[0]) if argv else "pn_fairseq"


def _chain(exc):
    seen = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    return seen


def _torch_load_target(tb):
    """The file a failing ``torch.load`` (or fairseq's ``load_checkpoint_to_cpu``, which
    upgrades what ``torch.load`` returned) was reading, from its frame in the traceback."""
    target = None
    while tb is not None:
        frame = tb.tb_frame
        code = frame.f_code
        if code.co_name == "load" and "torch" in code.co_filename and "f" in frame.f_locals:
            f = frame.f_locals["f"]
            target = f if isinstance(f, (str, os.PathLike)) else getattr(f, "name", target)
        elif code.co_name == "load_checkpoint_to_cpu" and "fairseq" in code.co_filename:
            target = frame.f_locals.get("path", target)
        tb = tb.tb_next
    return target


def _raised_inside_torch_load(tb) -> bool:
    """Whether the exception escaped from ``torch.load`` itself: random or cut bytes make its
    unpickler raise whatever the stray opcode hits (IndexError, KeyError, UnicodeDecodeError,
    not only UnpicklingError), while a readable file of the wrong content fails after it returns."""
    return any(code.co_filename.endswith(os.path.join("torch", "serialization.py")) for code in _frames(tb))


def _frames(tb):
    while tb is not None:
        yield tb.tb_frame.f_code
        tb = tb.tb_next


def summarize(e) -> str:
    """``Type: the first sentence`` of an exception (torch's messages run to a paragraph)."""
    text = str(e)
    if "WeightsUnpickler error:" in text:  # what torch's weights_only unpickler refused
        text = text.split("WeightsUnpickler error:", 1)[1].strip()
    first = text.splitlines()[0].strip() if text.strip() else "no detail"
    first = first.split(". ")[0].rstrip(".")
    return f"{type(e).__name__}: {first[:200]}"


_CORRUPT = (pickle.UnpicklingError, EOFError, zipfile.BadZipFile)


def explain(exc) -> str:
    """One line for a known bad-input failure, or None to keep the traceback."""
    for e in _chain(exc):
        if isinstance(e, VocabularyMismatch):
            return e.line(_trained_on(e.__traceback__) or _trained_on(exc.__traceback__))
        if isinstance(e, PNUserError):
            return str(e)
        text = str(e)
        if "PNUserError: " in text:  # re-raised from a spawned worker
            return text.split("PNUserError: ", 1)[1].strip().splitlines()[0]
    for e in _chain(exc):
        # A model that is not the plugin's (stock --arch transformer) meets a checkpoint of
        # another dictionary in torch's load_state_dict.
        sizes = [("source" if m.group(1) == "encoder" else "target", int(m.group(2)), int(m.group(3)))
                 for m in _SIZE_MISMATCH.finditer(str(e)) if isinstance(e, RuntimeError)]
        if sizes:
            mismatch = VocabularyMismatch(sizes, training=_tool(sys.argv) == "fairseq-train")
            return mismatch.line(_trained_on(e.__traceback__) or _trained_on(exc.__traceback__))
    for e in _chain(exc):
        target = _torch_load_target(e.__traceback__)
        corrupt = isinstance(e, _CORRUPT) or (
            isinstance(e, Exception) and not isinstance(e, MemoryError) and _raised_inside_torch_load(e.__traceback__)) or (
            isinstance(e, RuntimeError) and ("PytorchStreamReader" in str(e) or "zip archive" in str(e)))
        if target is not None and corrupt:
            return (f"cannot read checkpoint {target}: it is truncated or not a PyTorch/fairseq checkpoint "
                    f"({summarize(e)}); use another checkpoint (e.g. the previous checkpoint_N.pt; "
                    "to resume from it, --restore-file) or retrain")
        if target is not None and isinstance(e, (KeyError, TypeError, AttributeError, IndexError)):
            return (f"{target} is not a fairseq checkpoint ({summarize(e)}); "
                    "pass a checkpoint written by fairseq-train")
    for e in _chain(exc):
        # Half precision where fairseq cannot run it (docs/gpus-and-scale.md "Half precision, skipped steps, activation checkpointing").
        if isinstance(e, AttributeError) and "xla_device" in str(e):
            return ("--bf16 in fairseq means a TPU (it turns on --tpu and needs torch_xla, which is not installed): "
                    "on a GPU use --fp16 (or --amp); on CPU train in float32")
        if any(m in str(e) for m in ("Torch not compiled with CUDA", "Found no NVIDIA driver", "No CUDA GPUs")):
            if any(code.co_filename.endswith("fp16_optimizer.py") for code in _frames(e.__traceback__)):
                return ("--fp16 needs a CUDA GPU (fairseq's FP16Optimizer keeps float32 master weights on it): "
                        "on CPU drop --fp16 (float32), or use --memory-efficient-fp16 (runs on CPU, slowly)")
            return f"this needs a CUDA GPU ({summarize(e)}): on a machine without one, pass --cpu"
    prepare = "pass a fairseq-preprocess output directory (data-prep/prepare-*.sh)"
    for e in _chain(exc):
        text = str(e)
        if "Could not infer language pair" in text:  # fairseq's translation task, no *.idx found
            paths = _frame_local(e.__traceback__, "setup_task", "paths")
            where = f" in {paths[0]}" if paths else ""
            return (f"no binarized data{where} (no file like train.de-en.de.idx to read the language pair from): "
                    f"{prepare}, or give --source-lang and --target-lang")
        if isinstance(e, FileNotFoundError) and text.startswith("Dataset not found:"):
            return f"{text}: the data directory lacks this split's .bin/.idx files; {prepare}"
        if isinstance(e, OSError) and text.startswith("Model file not found:"):
            return f"no such checkpoint: {text.split(':', 1)[1].strip()}; pass a file written by fairseq-train"
    for e in _chain(exc):
        if isinstance(e, FileNotFoundError) and e.filename:
            hint = ""
            if os.path.basename(str(e.filename)).startswith("dict."):
                hint = f": the data directory has no dictionaries; {prepare}"
            return f"no such file or directory: {e.filename}{hint}"
    return None


def _frame_local(tb, function, name):
    """The local ``name`` of the innermost frame of ``function`` in a traceback, or None."""
    value = None
    while tb is not None:
        if tb.tb_frame.f_code.co_name == function:
            value = tb.tb_frame.f_locals.get(name, value)
        tb = tb.tb_next
    return value


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
