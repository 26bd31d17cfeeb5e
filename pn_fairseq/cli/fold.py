"""``pn-fold CKPT --output CKPT2``: fold the encoder's eval-mode BN / PN-V / PN into the
linear layers they feed, for faster decoding with the same hypotheses.

What is folded and why the rest is not: :mod:`pn_fairseq.checkpoints.fold`.
"""
import argparse
import os
import sys

from pn_fairseq.checkpoints.files import CheckpointError
from pn_fairseq.cli import quiet_library_logging
from pn_fairseq.checkpoints.fold import FoldError, fold_checkpoint_file


def build_parser():
    parser = argparse.ArgumentParser(
        prog="pn-fold",
        description="Fold the eval-mode affine map of a pre-norm transformer_pn checkpoint's encoder norms "
        "(BN, PN-V, PN) into the linear layers they feed; the result decodes with stock fairseq-generate "
        "--user-dir pn_fairseq and gives the same hypotheses.",
    )
    parser.add_argument("checkpoint", metavar="CKPT", help="a checkpoint written by fairseq-train (not changed)")
    parser.add_argument("--output", required=True, metavar="FILE",
                        help="where to write the folded checkpoint (atomically)")
    parser.add_argument("--force", action="store_true", help="replace --output if it exists")
    return parser


def main(argv=None):
    quiet_library_logging()
    args = build_parser().parse_args(argv)
    try:
        if os.path.exists(args.output):
            if os.path.exists(args.checkpoint) and os.path.samefile(args.output, args.checkpoint):
                raise FoldError(f"--output {args.output} is the checkpoint to fold; write the folded one elsewhere")
            if not args.force:
                raise FoldError(f"--output {args.output} exists; pass --force to replace it, or choose another file")
        report = fold_checkpoint_file(args.checkpoint, args.output)
    except (CheckpointError, FoldError) as err:
        raise SystemExit(f"pn-fold: error: {err}") from None
    print(report.summary())
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
