"""``make gpu-check``: one command that proves a GPU install (docs/gpus-and-scale.md "GPU check").

Stages, in order, stopping at the first failure with one line:

a. environment: GPU, torch / CUDA / fairseq versions, the data;
b. the CUDA tests (``pytest -m cuda tests/test_cuda.py``);
c. mixed precision end to end: ``fairseq-train --fp16`` and ``--amp`` for the Multi30k preln, bn,
   pnv and pn rows with a forced early overflow; finite losses, norms' counters equal to the
   applied updates (:mod:`.checks`);
d. speed: each norm's forward+backward against ``F.layer_norm`` (CUDA events) and training
   words/s of pn against preln (:mod:`.speed`);
e. a Multi30k table: preln, bn, pnv, pn x 3 seeds trained side by side, then ``pn-results``.

``GPU_CHECK_SMOKE=1`` (or ``--smoke``) runs the same stages on the CPU with tiny sizes.
Everything goes to one folder (``--out``, default ``gpu-check-out/``).
"""
