"""Fold the encoder's eval-mode BN / PN-V / PN into the linear layers they feed (``pn-fold``).

In eval mode every batch-statistics norm is a per-channel affine map after an optional
parameter-free scaling, ``y = a * s(x) + c`` (``w``, ``b``: the norm's weight and bias):

| norm                | ``s(x)``                                       | ``a``                    | ``c``          |
|---------------------|------------------------------------------------|--------------------------|----------------|
| PN (both variants)  | ``rms_scale(x, groups)``, or ``x`` (groups 0)  | ``w / sqrt(psi2 + eps)`` | ``b``          |
| PN-V                | ``x``                                          | ``w / sqrt(psi2 + eps)`` | ``b``          |
| BN paper            | ``x``                                          | ``w / sqrt(var + eps)``  | ``b - mean a`` |
| BN reference        | ``rms_scale(x, 1)``                            | ``w / sqrt(var + eps)``  | ``b - mean a`` |

A linear layer fed by the norm computes ``W (a s + c) + bias = (W diag a) s + (bias + W c)``,
so it takes ``W' = W * a[None, :]``, ``bias' = bias + W @ c`` (in float64, cast back) and
the norm shrinks to ``s`` (:class:`~pn_fairseq.norms.folded.FoldedNorm`): no per-channel
multiply-add, and no more work than a LayerNorm where ``s`` is a group scaling.

Which linear layers read which norm, in fairseq's pre-norm encoder (``normalize_before``):
each layer's ``self_attn_layer_norm`` feeds only ``self_attn.{q,k,v}_proj`` (the residual
branch keeps the un-normalized ``x``), its ``final_layer_norm`` only ``fc1``. The final
``encoder.layer_norm`` gives ``encoder_out["encoder_out"]``; on fairseq's translation path
(fairseq-generate, fairseq-validate) only ``TransformerDecoderBase.extract_features_scriptable``
reads it, handing it to every decoder layer's ``encoder_attn`` as key and value, so it folds
into each ``encoder_attn.{k,v}_proj`` (the ``SequenceGenerator`` only reorders it along the
batch; ``encoder_states`` are taken before the final norm). ``--cross-self-attention``
would also feed it to the decoder's self-attention together with decoder states: refused.

The decoder is not folded, even with ``--decoder-norm-type batch/power_v/power``: its final
norm feeds the output projection, which has no bias (``c`` has nowhere to go) and is
usually the embedding matrix itself, and one ``--decoder-norm-type`` builds all decoder
norms, so the layers cannot be folded without it. Post-norm models (incl. ``--deepnorm``)
cannot be folded at all: there the norm's output is the residual stream itself.

The folded checkpoint's model config says ``norm_type = "folded"`` and ``folded_groups =
G``, so stock ``fairseq-generate --user-dir pn_fairseq`` builds the folded model. Its
optimizer state, which refers to the unfolded parameters, is dropped: it is for decoding.
"""
import argparse
import copy
import logging
import re
from dataclasses import dataclass, field
from typing import Dict, List, Tuple

import torch

from .files import load_checkpoint, save_checkpoint
from ..hooks.errors import PNUserError
from ..models import norm_options
from ..models.norm_options import BATCH_STAT_NORMS, build_side_norm, fill_norm_defaults
from ..norms import BatchNorm, PowerNorm, PowerNormV
from ..norms.folded import FOLDED

PER_TOKEN_NORMS = ("layer", "rms", "scale", "dyt")


class FoldError(PNUserError):
    """The checkpoint cannot be folded; the message says why and what to do instead."""


@dataclass
class AffineMap:
    """An eval-mode norm as ``y = scale * s(x) + shift``; ``s`` = ``FoldedNorm(groups, eps)``.
    ``scale``, ``shift``: ``C``, float64."""

    groups: int
    eps: float
    scale: torch.Tensor
    shift: torch.Tensor


@dataclass
class FoldReport:
    norm_type: str
    variant: str
    groups: int
    norms: List[str] = field(default_factory=list)
    linears: List[str] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)

    def summary(self) -> str:
        what = self.norm_type + (f" ({self.variant})" if self.norm_type in ("batch", "power") else "")
        left = f"group RMS scaling with {self.groups} group(s)" if self.groups else "the identity"
        lines = [f"folded {len(self.norms)} encoder norm(s) [{what}] into {len(self.linears)} linear layer(s); "
                 f"each norm is now {left}"]
        return "\n".join(lines + [f"note: {note}" for note in self.notes])


def eval_affine(norm: torch.nn.Module) -> AffineMap:
    """The eval-mode map of a BN / PN-V / PN module (see the module docstring's table)."""
    with torch.no_grad():
        w, b = norm.weight.double(), norm.bias.double()
        if isinstance(norm, (PowerNorm, PowerNormV)):
            groups = norm.groups if isinstance(norm, PowerNorm) else 0
            scale = w * torch.rsqrt(norm.running_psi2.double() + norm.eps)
            return AffineMap(groups, norm.eps, scale, b)
        if isinstance(norm, BatchNorm):
            groups = 1 if norm.variant == "reference" else 0
            scale = w * torch.rsqrt(norm.running_var.double() + norm.eps)
            return AffineMap(groups, norm.eps, scale, b - norm.running_mean.double() * scale)
    raise FoldError(f"cannot fold a {type(norm).__name__}: only BN, PN-V and PN are a fixed affine map in eval mode")


def fold_linear(weight: torch.Tensor, bias: torch.Tensor, affine: AffineMap) -> Tuple[torch.Tensor, torch.Tensor]:
    """``weight: out x C``, ``bias: out`` of a linear layer reading the norm's output ->
    the pair that gives the same result when reading ``s(x)`` instead."""
    w64 = weight.detach().double()
    new_weight = w64 * affine.scale[None, :]
    new_bias = bias.detach().double() + w64 @ affine.shift
    return new_weight.to(weight.dtype), new_bias.to(bias.dtype)


def _layer_indices(model_state: Dict[str, torch.Tensor], side: str) -> List[int]:
    pattern = re.compile(rf"{side}\.layers\.(\d+)\.")
    return sorted({int(m.group(1)) for m in map(pattern.match, model_state) if m})


def encoder_targets(model_state: Dict[str, torch.Tensor]) -> List[Tuple[str, List[str]]]:
    """(norm, the linear layers that read its output) for every norm of a pre-norm encoder."""
    targets = []
    for i in _layer_indices(model_state, "encoder"):
        attn = [f"encoder.layers.{i}.self_attn.{p}_proj" for p in "qkv"]
        targets.append((f"encoder.layers.{i}.self_attn_layer_norm", attn))
        targets.append((f"encoder.layers.{i}.final_layer_norm", [f"encoder.layers.{i}.fc1"]))
    cross = [f"decoder.layers.{j}.encoder_attn.{p}_proj" for j in _layer_indices(model_state, "decoder") for p in "kv"]
    targets.append(("encoder.layer_norm", cross))
    return targets


def _filled_config(model_cfg) -> argparse.Namespace:
    """A copy of the checkpoint's model config with every norm flag set, as the model sees it."""
    args = copy.copy(model_cfg)
    log = logging.getLogger(norm_options.__name__)
    disabled, log.disabled = log.disabled, True  # its warnings are advice for training runs
    try:
        fill_norm_defaults(args)
    finally:
        log.disabled = disabled
    return args


def _check_foldable(args, source: str):
    enc, dec = args.norm_type, args.decoder_norm_type
    if FOLDED in (enc, dec):
        raise FoldError(f"{source} is already folded (norm_type {enc!r}); fold the original checkpoint instead")
    if enc not in BATCH_STAT_NORMS:
        decoder_note = ("; the decoder's are not folded because its final norm feeds the bias-free, usually "
                        "tied, output projection" if dec in BATCH_STAT_NORMS else "")
        raise FoldError(
            f"{source}: nothing to fold: the encoder's norms are {enc!r} and the decoder's {dec!r}; only the "
            f"encoder's BN/PN-V/PN fold, since per-token norms ({', '.join(PER_TOKEN_NORMS)}) take their statistics "
            f"from each token{decoder_note}; decode this checkpoint as it is")
    if not getattr(args, "encoder_normalize_before", False) or getattr(args, "deepnorm", False):
        deep = " with --deepnorm" if getattr(args, "deepnorm", False) else ""
        raise FoldError(
            f"{source} is a post-norm model{deep} (--encoder-normalize-before off): its norms produce the residual "
            "stream itself rather than feeding linear layers, so there is nothing to fold them into; "
            "decode it as it is (only pre-norm models, e.g. --arch transformer_pn*, fold)")
    if getattr(args, "cross_self_attention", False):
        raise FoldError(f"{source} uses --cross-self-attention: the encoder output then also feeds the decoder's "
                        "self-attention, mixed with decoder states, so the final encoder norm cannot be folded")


def fold_checkpoint(state: dict, source: str = "checkpoint") -> FoldReport:
    """Fold the encoder norms of a loaded fairseq checkpoint ``state`` in place.

    Raises :class:`FoldError` (naming ``source``) when there is nothing to fold or the
    model cannot be folded.
    """
    cfg = state.get("cfg") or {}
    model_cfg = cfg.get("model") if isinstance(cfg, dict) else None
    if not isinstance(model_cfg, argparse.Namespace) or getattr(model_cfg, "norm_type", None) is None:
        raise FoldError(f"{source}: no transformer_pn model config (cfg['model'] with norm_type); "
                        "pass a checkpoint written by fairseq-train --user-dir pn_fairseq --arch transformer_pn*")
    args = _filled_config(model_cfg)
    _check_foldable(args, source)
    dim, heads = args.encoder_embed_dim, args.encoder_attention_heads
    model = state["model"]
    report = FoldReport(args.norm_type, args.norm_variant, groups=-1)
    folded_args = None
    for norm_name, linears in encoder_targets(model):
        norm = _load_norm(args, model, norm_name, dim, heads, source)
        affine = eval_affine(norm)
        if folded_args is None:
            folded_args = copy.copy(args)
            folded_args.norm_type, folded_args.folded_groups = FOLDED, affine.groups
            report.groups = affine.groups
        _check_map(norm, build_side_norm(folded_args, "encoder", dim, heads), affine, norm_name)
        for linear in linears:
            weight, bias = (model.get(f"{linear}.{p}") for p in ("weight", "bias"))
            if weight is None or bias is None or weight.dim() != 2 or weight.shape[1] != dim:
                raise FoldError(f"{source}: {linear} (weight {dim} columns wide, and a bias) not found, though "
                                f"{norm_name} feeds it in fairseq's pre-norm Transformer; "
                                "is this a transformer_pn model?")
            model[f"{linear}.weight"], model[f"{linear}.bias"] = fold_linear(weight, bias, affine)
            report.linears.append(linear)
        for key in norm.state_dict():
            del model[f"{norm_name}.{key}"]
        report.norms.append(norm_name)
    for config in (model_cfg, state.get("args")):
        if isinstance(config, argparse.Namespace):
            config.norm_type, config.folded_groups = FOLDED, report.groups
    state.pop("last_optimizer_state", None)
    state["pn_fold"] = dict(norm_type=report.norm_type, norm_variant=report.variant, groups=report.groups,
                            norms=len(report.norms), linears=len(report.linears))
    report.notes.append("the optimizer state was dropped: the folded checkpoint is for decoding only")
    if args.decoder_norm_type in BATCH_STAT_NORMS:
        report.notes.append(
            f"the decoder's {args.decoder_norm_type} norms are kept: its final norm feeds the output projection, "
            "which has no bias and is usually the embedding matrix, and all decoder norms share one type")
    return report


def _load_norm(args, model, name: str, dim: int, heads: int, source: str) -> torch.nn.Module:
    """The checkpoint's norm ``name`` as a module of the config's type, in eval mode."""
    norm = build_side_norm(args, "encoder", dim, heads)
    own = {k[len(name) + 1:]: v for k, v in model.items() if k.startswith(name + ".")}
    try:
        norm.load_state_dict(own, strict=True)
    except RuntimeError as err:
        first = str(err).splitlines()[0] if own else "no entries"
        raise FoldError(f"{source}: {name} is not a {args.norm_type} norm of dimension {dim} as its config says "
                        f"({first}); pass an unmodified fairseq-train checkpoint") from err
    return norm.eval()


def _check_map(norm, folded, affine: AffineMap, name: str):
    """Guard against the table above drifting from the norms' code: on random float64 input,
    ``scale * folded(x) + shift`` must equal the norm's own eval forward."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(5, 3, affine.scale.numel(), dtype=torch.float64, generator=gen) * 2 + 0.5
    with torch.no_grad():
        expected = copy.deepcopy(norm).double()(x)
        got = affine.scale * folded.eval()(x) + affine.shift
    if not torch.allclose(got, expected, rtol=1e-9, atol=1e-9):
        err = (got - expected).abs().max().item()
        raise RuntimeError(f"pn-fold bug: the folded map of {name} differs from its eval forward by {err:.3g}")


def fold_checkpoint_file(path: str, output: str) -> FoldReport:
    """Load the checkpoint at ``path``, fold it, write it to ``output`` atomically."""
    state = load_checkpoint(path)
    report = fold_checkpoint(state, source=path)
    save_checkpoint(state, output)
    return report
