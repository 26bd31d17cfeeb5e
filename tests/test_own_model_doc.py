"""docs/own-model.md: every Python block runs as written, in a fresh interpreter, without
importing fairseq, and the example trains: a finite loss, PN's counters as the page says."""
import os
import re
import subprocess
import sys

import pytest

from conftest import REPO

PAGE = REPO / "docs" / "own-model.md"
BLOCKS = re.findall(r"^```python\n(.*?)^```", PAGE.read_text(), flags=re.S | re.M)
CHECK = "\nimport sys\nassert 'fairseq' not in sys.modules, 'the library path imported fairseq'\n"


def test_the_page_has_the_example():
    assert len(BLOCKS) >= 2 and "replace_norms(" in BLOCKS[-1] and "GradScaler" in BLOCKS[-1]


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_block_runs_as_written(index, tmp_path):
    proc = subprocess.run([sys.executable, "-c", BLOCKS[index] + CHECK], cwd=tmp_path, capture_output=True,
                          text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    if index == len(BLOCKS) - 1:
        m = re.search(r"loss (\S+); (\d+) batches in psi2, (\d+) non-finite updates skipped", proc.stdout)
        assert m, proc.stdout
        loss, batches, skipped = float(m.group(1)), int(m.group(2)), int(m.group(3))
        assert loss == loss and loss < 4.6  # finite, below ln(100) = 4.61 of a uniform guess
        assert (batches, skipped) == (30, 0)  # one batch per step, nothing skipped in fp32
        assert "replaced: ['encoder.layers.0.norm1'" in proc.stdout
