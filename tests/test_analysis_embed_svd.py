"""pn-analyze embed-svd: singular values of hand-built embedding matrices against numpy's SVD."""
import json

import numpy as np
import pytest
import torch

from pn_fairseq.cli.analyze import main


def matrix(rng, rows, cols, singular_values):
    """U diag(s) V^T with random orthonormal U (rows x k) and V (cols x k)."""
    k = len(singular_values)
    u, _ = np.linalg.qr(rng.standard_normal((rows, k)))
    v, _ = np.linalg.qr(rng.standard_normal((cols, k)))
    return u @ np.diag(singular_values) @ v.T


def expected_summary(w, threshold=0.1):
    s = np.linalg.svd(w, compute_uv=False)
    s = s / s[0]
    below = np.flatnonzero(s < threshold)
    return s, (int(below[0]) + 1 if below.size else None)


def test_spectra_against_numpy(tmp_path, capsys):
    rng = np.random.default_rng(0)
    slow = matrix(rng, 30, 8, [8.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0, 0.5])  # drops below 0.1 at index 8
    fast = rng.standard_normal((25, 6)) * np.array([5, 1, 0.3, 0.1, 0.05, 0.01])
    torch.save({"model": {"encoder.embed_tokens.weight": torch.tensor(slow, dtype=torch.float32),
                          "encoder.layers.0.fc1.weight": torch.zeros(2, 2)}}, tmp_path / "ln.pt")
    # no encoder embedding (e.g. a decoder-only model): the decoder's is used
    torch.save({"model": {"decoder.embed_tokens.weight": torch.tensor(fast)}}, tmp_path / "dec.pt")
    out = tmp_path / "out"
    assert main(["embed-svd", f"LN={tmp_path / 'ln.pt'}", str(tmp_path / "dec.pt"), "--out", str(out)]) == 0
    data = json.loads((out / "embed-svd.json").read_text())
    assert (out / "embed-svd.png").stat().st_size > 1000
    for label, w, key in [("LN", slow, "encoder"), ("dec.pt", fast, "decoder")]:
        entry = data["checkpoints"][label]
        s, index = expected_summary(w)
        assert entry["key"] == f"{key}.embed_tokens.weight" and entry["shape"] == list(w.shape)
        np.testing.assert_allclose(entry["normalized_singular_values"], s, rtol=1e-5, atol=1e-7)
        assert entry["first_below_threshold"] == index
        assert entry["fraction_above_threshold"] == pytest.approx((index - 1) / len(s))
    assert data["checkpoints"]["LN"]["first_below_threshold"] == 8
    assert "[embed-svd] checkpoint 2/2 dec.pt" in capsys.readouterr().err


@pytest.mark.parametrize("case, expected", [
    ("missing.pt", "missing.pt: no such file"),
    ("garbage.pt", "garbage.pt: not a loadable torch checkpoint"),
    ("noembed.pt", "noembed.pt: no embedding matrix"),
])
def test_bad_checkpoint_is_one_line(tmp_path, capsys, case, expected):
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint at all")
    torch.save({"model": {"encoder.layers.0.fc1.weight": torch.zeros(2, 2)}}, tmp_path / "noembed.pt")
    assert main(["embed-svd", str(tmp_path / case), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pn-analyze embed-svd: error: ") and expected in err[0]


def test_same_named_checkpoints_get_distinct_labels(tmp_path):
    """Two runs' checkpoint_last.pt (the usual comparison) must not collapse into one line."""
    from pn_fairseq.analysis.logs import run_labels

    paths = []
    for row in ("pn", "pn-nogroup"):
        (tmp_path / row / "seed1").mkdir(parents=True)
        paths.append(str(tmp_path / row / "seed1" / "checkpoint_last.pt"))
    assert [label for label, _ in run_labels(paths)] == ["pn/seed1/checkpoint_last.pt",
                                                         "pn-nogroup/seed1/checkpoint_last.pt"]
    dirs = [str(tmp_path / "pn" / "seed1"), str(tmp_path / "pn-nogroup" / "seed1")]
    assert [label for label, _ in run_labels(dirs)] == ["pn/seed1", "pn-nogroup/seed1"]
    logs = [d + "/train.log" for d in dirs]
    assert [label for label, _ in run_labels(logs)] == ["pn/seed1", "pn-nogroup/seed1"]
    # An unfinished run's archived log (scripts/archive_results.py) is named by its run too.
    assert [label for label, _ in run_labels([dirs[0] + "/train.partial.log", logs[1]])] == ["pn/seed1", "pn-nogroup/seed1"]
