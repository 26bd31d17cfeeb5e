"""Spectrum of the learned embedding matrix (PowerNorm Fig. 6).

The singular values of a checkpoint's (shared) embedding matrix ``V x d``, divided by the
largest and sorted: a slower decay means the embeddings use more directions. PowerNorm
reports that PN's decays more slowly than LayerNorm's.
"""
import torch

from . import AnalysisError

EMBEDDING_KEYS = ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight")
THRESHOLD = 0.1


def load_embedding(path):
    """The embedding matrix ``V x d`` of a fairseq checkpoint (the encoder's, shared or not;
    the decoder's when the model has no encoder embedding), as a float64 tensor."""
    from pn_fairseq.checkpoints.files import CheckpointError, load_checkpoint

    try:
        model = load_checkpoint(path)["model"]
    except CheckpointError as err:
        raise AnalysisError(str(err)) from None
    for key in EMBEDDING_KEYS:
        weight = model.get(key)
        if isinstance(weight, torch.Tensor) and weight.dim() == 2:
            return key, weight.detach().to(torch.float64)
    raise AnalysisError(f"{path}: no embedding matrix ({' or '.join(EMBEDDING_KEYS)}): "
                        "not a translation transformer checkpoint")


def normalized_singular_values(weight):
    """Singular values of ``weight`` (``V x d``) divided by the largest, in descending order."""
    s = torch.linalg.svdvals(weight.to(torch.float64))
    return (s / s[0]).tolist()


def decay_summary(values, threshold=THRESHOLD):
    """Where ``values`` (descending, normalized) first drop below ``threshold``.

    Returns ``(index, fraction)``: the 1-based position of the first value below the
    threshold (None if none is) and the fraction of the spectrum above it.
    """
    for i, value in enumerate(values):
        if value < threshold:
            return i + 1, i / len(values)
    return None, 1.0


def analyse(checkpoints, threshold=THRESHOLD, report=None):
    """``checkpoints``: list of ``(label, path)``. Returns ``{"threshold", "checkpoints":
    {label: {"path", "key", "shape", "normalized_singular_values", "first_below_threshold",
    "fraction_above_threshold"}}}``."""
    report = report or (lambda message: None)
    result = {"threshold": threshold, "checkpoints": {}}
    for i, (label, path) in enumerate(checkpoints, 1):
        key, weight = load_embedding(path)
        values = normalized_singular_values(weight)
        index, fraction = decay_summary(values, threshold)
        result["checkpoints"][label] = {
            "path": path, "key": key, "shape": list(weight.shape), "normalized_singular_values": values,
            "first_below_threshold": index, "fraction_above_threshold": fraction,
        }
        below = f"below {threshold:g} from index {index}" if index else f"never below {threshold:g}"
        report(f"checkpoint {i}/{len(checkpoints)} {label}: {key} {tuple(weight.shape)}, {below} "
               f"({fraction:.1%} of the spectrum above)")
    return result
