"""DeepNorm (Wang, Ma, Dong, Huang, Zhang & Wei, 2022, "DeepNet: Scaling Transformers to
1,000 Layers", arXiv:2203.00555): post-norm residuals with an up-weighted skip connection and
down-scaled sub-layer initialisation.

* Residual: ``x_{l+1} = Norm(alpha * x_l + G(x_l))`` (every sub-layer: self-attention,
  cross-attention, FFN). ``Norm`` is whatever ``--norm-type`` / ``--decoder-norm-type`` build
  (LayerNorm in the paper; RMSNorm, PN, ... are legitimate experiments).
* Initialisation (the paper's Figure 2 pseudo-code): ``xavier_normal_(w, gain=beta)`` for the
  FFN (``fc1``, ``fc2``), the value projection ``v_proj`` and the output projection
  ``out_proj`` of every attention (in the decoder self- and cross-attention), and
  ``xavier_normal_(w, gain=1)`` for ``q_proj`` and ``k_proj``. The biases of the beta-scaled
  layers keep fairseq's initialisation multiplied by ``beta`` (torchscale divides every
  parameter of those layers, biases included, by ``1/beta``).
* Constants for an encoder-decoder with N encoder and M decoder layers (the paper's Table 1):
  encoder ``alpha = 0.81 (N^4 M)^(1/16)``, ``beta = 0.87 (N^4 M)^(-1/16)``;
  decoder ``alpha = (3M)^(1/4)``, ``beta = (12M)^(-1/4)``.

Cross-check against microsoft/torchscale (``torchscale/architecture/encoder.py`` and
``decoder.py``, the authors' implementation, read at commit 0cb9695 in a code index; the
package itself is not installed here):

* ``EncoderLayer.__init__``: ``alpha = (N^4 M)^0.0625 * 0.81`` when ``is_encoder_decoder``;
  ``DecoderLayer.__init__``: ``alpha = (3 M)^0.25``; both layers'
  ``residual_connection(x, residual) = residual * alpha + x``. Same as here.
* ``Decoder.__init__``: every parameter whose name contains ``fc1``, ``fc2``, ``out_proj`` or
  ``v_proj`` (self- and cross-attention) is divided by ``init_scale = (12 M)^0.25``, i.e.
  multiplied by ``beta = (12M)^(-1/4)``. Same set and constant as here.
* ``Encoder.__init__``: the same parameters (``fc1``, ``fc2``, ``out_proj``, ``v_proj``) are
  divided by ``init_scale = (N^4 M)^0.0625 / 1.15``, i.e. multiplied by
  ``1.15 (N^4 M)^(-1/16)``, whereas Table 1 gives ``0.87 (N^4 M)^(-1/16)`` (0.87 = 1/1.15).
  The two differ by a factor 1.15^2 = 1.32; this module follows the paper
  (``ENCODER_BETA_COEF``); torchscale's constant is ``TORCHSCALE_ENCODER_BETA_COEF``.
* torchscale scales the parameters after its own initialisation (xavier_uniform, gain
  1/sqrt(2) for q/k/v) rather than re-drawing them with ``xavier_normal_(gain=beta)`` as the
  paper's pseudo-code does; this module re-draws, as the paper says. q_proj/k_proj are left
  alone by torchscale and re-drawn with gain 1 here (paper).

Everything here is a no-op unless ``--deepnorm`` is set (the ``transformer_deepnorm*``
architectures set it). DeepNorm is defined for post-norm only: with ``--encoder-normalize-before``
or ``--decoder-normalize-before`` the model is not built.
"""
import math
from typing import NamedTuple

import torch
import torch.nn as nn

from ..hooks.errors import PNUserError

ENCODER_ALPHA_COEF = 0.81
ENCODER_BETA_COEF = 0.87
TORCHSCALE_ENCODER_BETA_COEF = 1.15


class DeepNormConstants(NamedTuple):
    encoder_alpha: float
    encoder_beta: float
    decoder_alpha: float
    decoder_beta: float


def deepnorm_constants(encoder_layers: int, decoder_layers: int) -> DeepNormConstants:
    """The paper's Table 1 (encoder-decoder) constants for N encoder and M decoder layers."""
    n, m = int(encoder_layers), int(decoder_layers)
    if n < 1 or m < 1:
        raise PNUserError(f"DeepNorm needs at least one encoder and one decoder layer; got {n} and {m}")
    nm = float(n) ** 4 * m
    return DeepNormConstants(
        encoder_alpha=ENCODER_ALPHA_COEF * nm ** (1 / 16),
        encoder_beta=ENCODER_BETA_COEF * nm ** (-1 / 16),
        decoder_alpha=(3.0 * m) ** 0.25,
        decoder_beta=(12.0 * m) ** -0.25,
    )


def add_deepnorm_args(group):
    group.add_argument("--deepnorm", action="store_true", default=None,
                       help="DeepNorm (DeepNet, Wang et al. 2022): post-norm residuals x = Norm(alpha * x + G(x)) "
                            "and v_proj/out_proj/fc1/fc2 initialised with xavier_normal_(gain=beta), alpha and beta "
                            "from the paper's Table 1 (set by the transformer_deepnorm* architectures; combines with "
                            "--norm-type/--decoder-norm-type)")


def _xavier_normal_(linear: nn.Module, gain: float, bias_scale: float = 1.0):
    nn.init.xavier_normal_(linear.weight, gain=gain)
    if getattr(linear, "bias", None) is not None and bias_scale != 1.0:
        with torch.no_grad():
            linear.bias.mul_(bias_scale)


class DeepNormResidual:
    """Mixin for fairseq's encoder/decoder layers: ``residual_connection`` scales the skip
    branch by ``residual_alpha`` (1.0, i.e. fairseq's ``residual + x``, unless DeepNorm is on)."""

    residual_alpha = 1.0

    def residual_connection(self, x, residual):
        if self.residual_alpha == 1.0:
            return residual + x
        return residual * self.residual_alpha + x

    def setup_deepnorm(self, cfg, side: str):
        """Set alpha and re-initialise the sub-layers when ``cfg.deepnorm`` is on; call at the
        end of the layer's ``__init__`` (its modules exist)."""
        if not getattr(cfg, "deepnorm", False):
            return
        if self.normalize_before:
            flag = "--encoder-normalize-before" if side == "encoder" else "--decoder-normalize-before"
            raise PNUserError(f"--deepnorm is a post-norm scheme (x = Norm(alpha * x + G(x))) but {flag} is set: "
                              "drop it (the transformer_deepnorm* architectures are post-norm)")
        c = deepnorm_constants(cfg.encoder.layers, cfg.decoder.layers)
        alpha, beta = (c.encoder_alpha, c.encoder_beta) if side == "encoder" else (c.decoder_alpha, c.decoder_beta)
        self.residual_alpha = alpha
        self.deepnorm_beta = beta
        attns = [self.self_attn]
        if side == "decoder" and getattr(self, "encoder_attn", None) is not None:
            attns.append(self.encoder_attn)
        for attn in attns:
            _xavier_normal_(attn.q_proj, 1.0)
            _xavier_normal_(attn.k_proj, 1.0)
            _xavier_normal_(attn.v_proj, beta, beta)
            _xavier_normal_(attn.out_proj, beta, beta)
        _xavier_normal_(self.fc1, beta, beta)
        _xavier_normal_(self.fc2, beta, beta)


def xavier_normal_std(fan_in: int, fan_out: int, gain: float = 1.0) -> float:
    """The standard deviation ``xavier_normal_`` draws with."""
    return gain * math.sqrt(2.0 / (fan_in + fan_out))
