"""Joint BPE with subword-nmt, as ``learn_bpe.py -s N < train.src+tgt`` and ``apply_bpe.py -c code``."""
import io
import os
import shutil

from subword_nmt.apply_bpe import BPE
from subword_nmt.learn_bpe import learn_bpe

from pn_common.atomic import atomic_text_file
from .textio import DataPrepError, log, map_lines, read_lines, write_lines


def learn_joint_bpe(inputs, codes_path, merges, workers=1, min_frequency=2):
    """Learn ``merges`` merge operations on the concatenation of ``inputs`` (recipe order: src then tgt).

    Returns the number of merges learned (fewer than asked when no pair occurs twice any more,
    as on tiny corpora). ``min_frequency=2`` is learn_bpe.py's default, which the recipes keep.
    """
    concat = f"{codes_path}.input.tmp{os.getpid()}"
    try:
        # learn_bpe counts the vocabulary in parallel only from a named file.
        with open(concat, "wb") as out:
            for path in inputs:
                if not os.path.exists(path):
                    raise DataPrepError(f"missing BPE training file {path}")
                with open(path, "rb") as f:
                    shutil.copyfileobj(f, out)
        log(f"learning {merges:,} BPE merges on {', '.join(map(os.path.basename, inputs))}")
        with open(concat, encoding="utf-8") as infile, atomic_text_file(codes_path) as outfile:
            learn_bpe(infile, outfile, merges, min_frequency=min_frequency, num_workers=max(1, workers))
    finally:
        if os.path.exists(concat):
            os.unlink(concat)
    return count_merges(codes_path)


def count_merges(codes_path):
    with open(codes_path, encoding="utf-8") as f:
        return sum(1 for line in f if line.strip() and not line.startswith("#version"))


def _bpe_line_fn(codes_path):
    with open(codes_path, encoding="utf-8") as f:
        bpe = BPE(io.StringIO(f.read()))
    return bpe.process_line


def apply_bpe_lines(codes_path, lines, workers=1):
    """apply_bpe.py's output for each line (default ``@@`` separator, no vocabulary filter)."""
    if not os.path.exists(codes_path):
        raise DataPrepError(f"missing BPE codes file {codes_path}")
    return map_lines(_bpe_line_fn, {"codes_path": codes_path}, lines, workers=workers)


def apply_bpe_file(codes_path, in_path, out_path, workers=1):
    return write_lines(out_path, apply_bpe_lines(codes_path, read_lines(in_path), workers),
                       label=f"apply BPE -> {os.path.basename(out_path)}")
