"""Refuse the ``torchrun ... fairseq-train`` set-ups that silently train independent copies.

fairseq uses torchrun's environment (``RANK``, ``WORLD_SIZE``, ...) only when its own
``--distributed-world-size`` is above 1, and that defaults to the number of CUDA devices.
So on CPU, or with a world size of 1, every process torchrun starts trains its own model and
all of them write the same ``--save-dir``, with no error; and ``--distributed-world-size N
--cpu`` under torchrun dies in fairseq's CUDA-only set-up. The plugin is imported while
fairseq parses its arguments, early enough to stop both with the command that works.
"""
import os
import sys

from .errors import PNUserError

CPU_RECIPE = (
    "on CPU start one process per rank yourself: fairseq-train ... --cpu --distributed-backend gloo "
    "--ddp-backend legacy_ddp --distributed-world-size N --distributed-rank R "
    "--distributed-init-method tcp://127.0.0.1:PORT --distributed-no-spawn (or NPROC=N CPU=1 scripts/run_row.sh)"
)


def _flag_value(argv, flag):
    for i, a in enumerate(argv):
        if a == flag and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
    return None


def check_launch(argv=None, environ=None, cuda_devices=None):
    """Raise :class:`PNUserError` for a torchrun launch that fairseq would mishandle."""
    argv = sys.argv if argv is None else argv
    environ = os.environ if environ is None else environ
    if not argv or os.path.basename(argv[0]) != "fairseq-train":
        return
    if not all(k in environ for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")):
        return
    world = int(environ.get("WORLD_SIZE") or 1)
    if world <= 1:
        return
    if "--cpu" in argv:
        raise PNUserError(f"fairseq-train was started by torchrun (WORLD_SIZE={world}) with --cpu, which fairseq's "
                          f"launcher cannot run: the workers would train independent copies or fail; {CPU_RECIPE}")
    if cuda_devices is None:
        import torch

        cuda_devices = torch.cuda.device_count()
    given = _flag_value(argv, "--distributed-world-size")
    effective = int(given) if given is not None else max(1, cuda_devices)
    if effective == 1:
        raise PNUserError(f"torchrun started {world} processes but fairseq-train runs with --distributed-world-size 1 "
                          f"({cuda_devices} CUDA device(s) visible): each process would train its own copy and all "
                          f"would write the same --save-dir; pass --distributed-world-size {world}")


def check_restore_file(argv=None):
    """Refuse ``fairseq-train --restore-file PATH`` for a PATH that does not exist: fairseq logs
    "No existing checkpoint found" and silently trains from scratch (a typo costs a whole run)."""
    argv = sys.argv if argv is None else argv
    if not argv or os.path.basename(argv[0]) != "fairseq-train":
        return
    path = _flag_value(argv, "--restore-file")
    if path is None or path == "checkpoint_last.pt" or "://" in path:
        return  # the default (SAVE_DIR/checkpoint_last.pt, absent on a first run), or a remote file
    if _flag_value(argv, "--checkpoint-suffix") or _flag_value(argv, "--checkpoint-shard-count"):
        return  # fairseq rewrites the name
    if not os.path.exists(path):
        raise PNUserError(f"--restore-file {path} does not exist (fairseq-train would silently train from scratch): "
                          "pass an existing checkpoint, or leave --restore-file out to resume from "
                          "checkpoint_last.pt in --save-dir")
