"""Checkpoint files: torch >= 2.6 loads fairseq's, and fairseq's copies are written atomically.

fairseq's trainer pickles a few plain-Python objects next to the tensors (the legacy
``argparse.Namespace`` of the model config, and containers from its meters). Rather than
turning ``weights_only`` off, which would let a checkpoint run arbitrary code, we
allow-list exactly those classes. The list was read off real checkpoints written by
``fairseq-train`` with ``torch.serialization.get_unsafe_globals_in_checkpoint``.

fairseq saves the first checkpoint of a save (e.g. ``checkpoint3.pt``) atomically (a
``.tmp`` file, then a rename), but then *copies* it onto ``checkpoint_last.pt`` (and
``checkpoint_best.pt``) in place with ``shutil.copyfile``: a job killed during that copy
(SIGTERM from a scheduler, a pre-emption) leaves a truncated ``checkpoint_last.pt``, and
the next resume fails. fairseq offers no hook for its file copies, so the plugin replaces
``PathManager.copy`` for local files with copy-to-temporary-then-rename; remote (ioPath)
paths keep fairseq's own behaviour.
"""
import argparse
import shutil

import torch
from pn_common.atomic import atomic_output


def _numpy_int64_array_globals():
    # fairseq's --eval-bleu logs its n-gram counts as numpy int64 arrays, and the trainer saves its
    # meters in every checkpoint (extra_state["metrics"]): what unpickling those arrays takes.
    import numpy as np

    core = getattr(np, "_core", None) or np.core  # numpy >= 2 / < 2
    return [core.multiarray._reconstruct, np.ndarray, np.dtype, type(np.dtype(np.int64))]


# Every global a fairseq-fixed 0.12.3.1 checkpoint (legacy-arg model, Adam, inverse_sqrt,
# meters, also after averaging; --eval-bleu's numpy counts) references beyond what weights_only
# allows by default.
FAIRSEQ_CHECKPOINT_GLOBALS = [argparse.Namespace] + _numpy_int64_array_globals()


def allow_fairseq_checkpoint_globals():
    """Register the classes fairseq checkpoints contain as safe for ``torch.load``."""
    add = getattr(torch.serialization, "add_safe_globals", None)
    if add is not None:  # torch < 2.4 has no allow-list and loads everything anyway
        add(FAIRSEQ_CHECKPOINT_GLOBALS)


def atomic_copyfile(src_path: str, dst_path: str) -> str:
    """Copy ``src_path`` to ``dst_path`` so that ``dst_path`` is at every moment either its
    old content or the complete copy. The copy gets the permissions the umask gives any new
    file (fairseq's own checkpoints get them too), not the 0600 of a bare ``mkstemp``."""
    with atomic_output(dst_path) as tmp:
        shutil.copyfile(src_path, tmp)
    return dst_path


def make_fairseq_checkpoint_copies_atomic():
    """Route fairseq's local ``PathManager.copy`` through :func:`atomic_copyfile`."""
    from fairseq import file_io

    original = file_io.PathManager.copy
    if getattr(original, "_pn_atomic", False):
        return

    def copy(src_path: str, dst_path: str, overwrite: bool = False) -> bool:
        if file_io.IOPathManager:
            return original(src_path, dst_path, overwrite)
        return atomic_copyfile(src_path, dst_path)

    copy._pn_atomic = True
    file_io.PathManager.copy = staticmethod(copy)
