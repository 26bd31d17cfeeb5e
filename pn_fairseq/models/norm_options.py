"""Command-line flags for the norms and their translation into ``build_norm`` calls."""
import logging

from ..hooks.errors import PNUserError
from ..norms import NORM_CHOICES, build_norm
from ..norms.folded import FOLDED, FoldedNorm
from .deepnorm import add_deepnorm_args
from .fixnorm import add_fixnorm_args

logger = logging.getLogger(__name__)

VARIANTS = ("reference", "paper")

# Defaults applied when neither the command line nor the architecture sets a flag.
# pn_warmup_updates / pn_groups default to the run's --warmup-updates and the side's heads.
NORM_DEFAULTS = {
    "norm_type": "layer",
    "decoder_norm_type": "layer",
    "norm_variant": "reference",
    "pn_alpha_fwd": 0.9,
    "pn_alpha_bkw": 0.9,
    "pn_warmup_updates": None,
    "pn_groups": None,
    "norm_momentum": 0.05,
    "norm_sync_stats": False,
    "norm_impl": "fused",
    "log_norm_stats": False,
    "dyt_alpha_init": 0.5,
    "deepnorm": False,
    "fixnorm": False,
    "pn_causal": False,
}

BATCH_STAT_NORMS = ("batch", "power_v", "power")


def add_norm_args(parser):
    """Add the norm flags. No defaults here: fairseq applies the architecture's."""
    g = parser.add_argument_group("normalization (pn_fairseq)")
    g.add_argument("--norm-type", choices=NORM_CHOICES,
                   help="norm of every encoder sub-layer and of the final encoder norm (pre-norm) "
                        "(layer=LayerNorm, batch=BN, power_v=PN-V, power=PN, rms=RMSNorm, scale=ScaleNorm, "
                        "dyt=Dynamic Tanh; default: the --arch's)")
    g.add_argument("--decoder-norm-type", choices=NORM_CHOICES,
                   help="norm of the decoder (default: layer, as in the paper; the rms, scale and dyt "
                        "architectures: their own norm; batch statistics in the decoder see future tokens "
                        "in training but not in incremental decoding)")
    g.add_argument("--norm-variant", choices=VARIANTS,
                   help="batch/power: 'reference' reproduces the released code behind Table 1 "
                        "(default), 'paper' the published algorithms")
    g.add_argument("--pn-alpha-fwd", type=float, help="PN forward running-average constant (0.9)")
    g.add_argument("--pn-alpha-bkw", type=float, help="PN backward running-average constant (0.9)")
    g.add_argument("--pn-warmup-updates", type=int,
                   help="PN reference variant: inside fairseq-train, the first N optimizer updates "
                        "normalize by the batch statistic (with --update-freq U: all U micro-batches of each), "
                        "and psi2 is a cumulative average during the first N-1; a layer used alone counts training "
                        "forward calls instead (default: --warmup-updates)")
    g.add_argument("--pn-causal", action="store_true", default=None,
                   help="PN in a causal stack (language models): the forward never divides by the current batch's "
                        "statistic, also during --pn-warmup-updates (then it divides by the running average of earlier "
                        "batches), so no position's output depends on later tokens of its sequence "
                        "(docs/language-models.md)")
    g.add_argument("--pn-groups", type=int,
                   help="PN group scaling: each position's channels in this many groups divided by their RMS "
                        "first (default: the attention heads for --norm-variant reference, as the released "
                        "code; 0 for paper); 0 = no group scaling")
    g.add_argument("--norm-momentum", type=float,
                   help="momentum of BN's and PN-V's running statistics (0.05)")
    g.add_argument("--norm-sync-stats", action="store_true", default=None,
                   help="BN/PN-V/PN: all-reduce batch statistics (forward and backward) over the "
                        "data-parallel workers, so N workers compute what one worker does on their "
                        "concatenated batches (default: each worker keeps its own statistics and "
                        "rank 0's buffers are saved, as the released code did)")
    g.add_argument("--norm-impl", choices=("fused", "eager"),
                   help="BN/PN-V/PN training path: 'fused' (default) runs the one-pass CPU kernels "
                        "(pn_fairseq/norms/fused.py) where they apply, 'eager' the plain-PyTorch reference "
                        "they are tested against; 'fused' falls back to eager on CUDA, in float64, with "
                        "--norm-sync-stats over several workers, for fairseq's dummy batches and when the "
                        "kernels cannot be built (a warning says so); --log-norm-stats records the same "
                        "statistics on both paths")
    g.add_argument("--log-norm-stats", action="store_true", default=None,
                   help="BN/PN-V/PN: measure, per layer at every training step, the distance between batch and "
                        "running statistics and the norms of the backward statistics (PowerNorm Fig. 2-4), and "
                        "log their mean and max over each --log-interval as ns.<layer>.<stat>_mean/_max in "
                        "fairseq's log; plot with 'pn-analyze stats'")
    g.add_argument("--dyt-alpha-init", type=float,
                   help="dyt: initial value of DyT's learned scalar alpha in tanh(alpha * x) (0.5, the paper's default)")
    add_deepnorm_args(g)
    add_fixnorm_args(g)


def fill_norm_defaults(args, causal_stack=False):
    """Give every norm flag a value (old checkpoints and plain Namespaces lack some).
    ``causal_stack``: a language model, whose builder warns about batch statistics itself."""
    for key, value in NORM_DEFAULTS.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    if args.pn_warmup_updates is None:
        args.pn_warmup_updates = int(getattr(args, "warmup_updates", 0) or 0)
    max_update = int(getattr(args, "max_update", 0) or 0)
    uses_pn = "power" in (args.norm_type, args.decoder_norm_type) and args.norm_variant == "reference"
    if uses_pn and 0 < max_update < args.pn_warmup_updates:
        logger.warning(
            "PN warm-up (%d updates, --pn-warmup-updates or --warmup-updates) is longer than --max-update %d: "
            "PN normalizes by batch statistics for the whole run and never uses its running statistic; "
            "lower --pn-warmup-updates or raise --max-update", args.pn_warmup_updates, max_update)
    if args.decoder_norm_type in BATCH_STAT_NORMS and not causal_stack:
        logger.warning(
            "--decoder-norm-type %s: batch statistics in the decoder mix positions across time in "
            "training, which incremental decoding cannot reproduce (train/test mismatch); the "
            "paper kept LayerNorm in the decoder", args.decoder_norm_type)


def build_side_norm(cfg, side: str, embed_dim: int, heads: int, batch_first: bool = False):
    """Build the norm for ``side`` ("encoder" or "decoder") from the flat flags on ``cfg``.
    ``batch_first``: the norm takes ``B x T x C`` (an embedding norm before fairseq's transpose)."""
    name = cfg.norm_type if side == "encoder" else cfg.decoder_norm_type
    if name == FOLDED:  # only in a config rewritten by pn-fold (pn_fairseq/checkpoints/fold.py), which sets folded_groups
        return FoldedNorm(embed_dim, groups=cfg.folded_groups)
    if name == "layer":
        options = {}
    elif name == "batch":
        options = dict(variant=cfg.norm_variant, momentum=cfg.norm_momentum)
    elif name == "power_v":
        options = dict(momentum=cfg.norm_momentum)
    elif name in ("rms", "scale"):
        options = {}
    elif name == "dyt":
        options = dict(alpha_init=cfg.dyt_alpha_init)
    elif name == "power":
        options = dict(
            variant=cfg.norm_variant,
            alpha_fwd=cfg.pn_alpha_fwd,
            alpha_bkw=cfg.pn_alpha_bkw,
            warmup_updates=cfg.pn_warmup_updates,
            groups=cfg.pn_groups if cfg.pn_groups is not None else (heads if cfg.norm_variant == "reference" else 0),
        )
        if getattr(cfg, "pn_causal", False):
            options["causal"] = True
    else:
        raise PNUserError(f"unknown --{'' if side == 'encoder' else 'decoder-'}norm-type {name!r}; "
                         f"valid choices: {', '.join(NORM_CHOICES)}")
    if name in BATCH_STAT_NORMS and getattr(cfg, "norm_sync_stats", False):
        options["sync_stats"] = True
    if name in BATCH_STAT_NORMS:
        options["impl"] = getattr(cfg, "norm_impl", None) or "fused"
        if batch_first:  # the per-position norms treat every layout alike
            options["batch_first"] = True
    try:
        return build_norm(name, embed_dim, **options)
    except ValueError as e:
        flag = "--norm-type" if side == "encoder" else "--decoder-norm-type"
        raise PNUserError(f"{flag} {name} ({side}, dim {embed_dim}, {heads} heads): {e}") from e
