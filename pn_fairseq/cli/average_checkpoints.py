"""``pn-average-checkpoints``: average the weights of several fairseq checkpoints.

Command-line compatible with fairseq's ``scripts/average_checkpoints.py`` (which the pip
package does not ship); what is averaged and what is copied: :mod:`pn_fairseq.checkpoints.files`.
"""
import argparse
import os
import sys

from pn_fairseq.checkpoints.files import CheckpointError, average_checkpoints, last_n_checkpoints, save_checkpoint
from pn_fairseq.cli import quiet_library_logging

COUNTER_NOTE = (
    "Floating tensors (parameters and running-statistics buffers) are averaged in "
    "float32/float64 and cast back to their dtype. Integer tensors (counters such as "
    "num_batches_tracked or PowerNorm's step counter) take the NEWEST checkpoint's value: "
    "an averaged counter is a count the layer never had, and the newest value keeps e.g. "
    "PowerNorm's warm-up switch consistent with the averaged running statistics, which "
    "come mostly from post-warm-up steps. The output is the newest input checkpoint with "
    "its 'model' replaced by the average."
)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="pn-average-checkpoints",
        description="Average the weights of fairseq checkpoints (compatible with fairseq's "
        "scripts/average_checkpoints.py).",
        epilog=COUNTER_NOTE,
    )
    parser.add_argument("--inputs", required=True, nargs="+", metavar="PATH",
                        help="checkpoint files, or one directory together with "
                        "--num-epoch-checkpoints / --num-update-checkpoints")
    parser.add_argument("--output", required=True, metavar="FILE",
                        help="where to write the averaged checkpoint (atomically)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--num-epoch-checkpoints", type=int, metavar="N",
                       help="average the last N checkpointEPOCH.pt files of the directory")
    group.add_argument("--num-update-checkpoints", type=int, metavar="N",
                       help="average the last N checkpoint_EPOCH_UPDATES.pt files of the directory")
    parser.add_argument("--checkpoint-upper-bound", type=int, metavar="K",
                        help="with --num-*-checkpoints: ignore checkpoints after epoch "
                        "(or update) K, e.g. N=10, K=50 averages epochs 41-50")
    return parser


def resolve_inputs(args, parser):
    """The checkpoint files ``args`` selects (newest first in directory mode)."""
    num = args.num_epoch_checkpoints if args.num_epoch_checkpoints is not None else args.num_update_checkpoints
    if num is None:
        if args.checkpoint_upper_bound is not None:
            parser.error("--checkpoint-upper-bound requires --num-epoch-checkpoints or --num-update-checkpoints")
        for path in args.inputs:
            if os.path.isdir(path):
                raise CheckpointError(
                    f"{path}: is a directory; pass --num-epoch-checkpoints or --num-update-checkpoints"
                )
        return list(args.inputs)
    if num < 1:
        parser.error("the number of checkpoints must be at least 1")
    if len(args.inputs) != 1 or not os.path.isdir(args.inputs[0]):
        parser.error("--num-epoch-checkpoints / --num-update-checkpoints need exactly one directory in --inputs")
    return last_n_checkpoints(
        args.inputs[0], num, update_based=args.num_update_checkpoints is not None,
        upper_bound=args.checkpoint_upper_bound,
    )


def main(argv=None):
    quiet_library_logging()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        paths = resolve_inputs(args, parser)
        state = average_checkpoints(paths)
    except CheckpointError as err:
        raise SystemExit(f"pn-average-checkpoints: error: {err}") from None
    save_checkpoint(state, args.output)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
