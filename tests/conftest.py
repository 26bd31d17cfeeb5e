"""Shared fixtures: seeded inputs with padding, and the repository/shared-data paths."""
import os
import pathlib

import pytest
import torch

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = pathlib.Path(os.environ.get("PN_SHARED_DIR", REPO.parent / "shared"))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def padded_batch(T=6, B=4, C=8, dtype=torch.float64, scale=1.0, lengths=(6, 4, 5, 2)):
    """x: T x B x C, pad_mask: B x T (True = pad) with right padding of the given lengths."""
    x = (torch.randn(T, B, C, dtype=torch.float64) * scale + 0.3).to(dtype)
    pad_mask = torch.arange(T)[None, :] >= torch.tensor(lengths)[:, None]
    return x, pad_mask
