"""The papers' evidence as analyses, run by ``pn-analyze`` (:mod:`pn_fairseq.cli.analyze`).

One module per analysis computes the numbers and imports no plotting code:

| module | subcommand | evidence |
|---|---|---|
| :mod:`.norm_stats` | ``stats`` | PowerNorm Fig. 2-4: batch vs running statistics, backward statistics |
| :mod:`.grad_norms` | ``grad-norms`` | Pre-LN paper Fig. 3: FFN gradient norms at initialization |
| :mod:`.embed_svd` | ``embed-svd`` | PowerNorm Fig. 6: singular values of the embedding matrix |
| :mod:`.batch_sweep` | ``batch-sweep`` | PowerNorm Fig. 5: BLEU against the micro-batch size |
| :mod:`.report` | ``report`` | one self-contained HTML page per experiment |

:mod:`.plotting` draws what they return (matplotlib, no display needed); :mod:`.output`
writes figures and JSON atomically and reports progress; :mod:`.logs` reads fairseq-train logs.
"""


class AnalysisError(Exception):
    """Bad input (a missing run, log, checkpoint or data directory, an unknown name).

    The message is one line meant for the user; ``pn-analyze`` prints it without a traceback.
    """
