"""Is a perplexity difference a difference? Paired bootstrap over test blocks for language models.

The perplexity counterpart of :mod:`pn_fairseq.evaluation.significance` (BLEU). Inputs are the
``test_blocks`` of two results-lm.json (:mod:`pn_fairseq.evaluation.lm_results`): per test block
``b``, the summed loss ``L_b`` (nats) and token count ``n_b``; two runs are comparable when they
scored the same blocks (equal token counts, block by block).

The test loss of a set of blocks is ``sum L_b / sum n_b`` (nats per token; ``exp`` of it is the
perplexity). For each run pair the observed ``delta`` is the system's test loss minus the
baseline's on all blocks; each of :data:`N_SAMPLES` resamples draws the blocks with replacement
(the same draw for both runs: paired) and recomputes the difference of the two ratios. Resamples,
95% interval and two-sided p follow the BLEU test exactly (same generator and seed, sacrebleu's
percentile convention, p = twice the share of resampled differences on the other side of zero,
+1 smoothed), so the two kinds of rows read alike.

Pooled over seed pairs (:func:`pooled_block_bootstrap`): every resample draws the blocks once and
averages the pairs' differences, as the BLEU rows' pooled test does; its interval covers the
test-set sampling of the mean over seeds, not seed-to-seed variation (the Student t interval over
seed pairs in :mod:`pn_fairseq.evaluation.lm_tables` is that one).

Blocks are contiguous 32-token windows of one text stream, so neighbouring blocks are not
independent; the interval assumes they are and is therefore somewhat narrow.
"""
import numpy as np

from pn_fairseq.evaluation.significance import (N_SAMPLES, SEED, _percentile_interval, _resample_indices,
                                                _two_sided_p)


class BlockMismatch(ValueError):
    """Two runs did not score the same test blocks."""


def _arrays(blocks):
    return np.asarray(blocks["loss_nats"], dtype=np.float64), np.asarray(blocks["tokens"], dtype=np.float64)


def _check_same(base_blocks, system_blocks):
    if list(base_blocks["tokens"]) != list(system_blocks["tokens"]):
        raise BlockMismatch(f"the runs scored different test blocks ({len(base_blocks['tokens'])} and "
                            f"{len(system_blocks['tokens'])} blocks, or other token counts): evaluate both "
                            "with the same --tokens-per-sample and --context-window")


def _deltas(pairs, idxs):
    """(observed mean delta, resampled mean deltas) over ``pairs`` of (baseline, system) blocks."""
    observed, resampled = 0.0, np.zeros(len(idxs))
    for base_blocks, system_blocks in pairs:
        _check_same(base_blocks, system_blocks)
        base_loss, tokens = _arrays(base_blocks)
        system_loss, _ = _arrays(system_blocks)
        observed += system_loss.sum() / tokens.sum() - base_loss.sum() / tokens.sum()
        n = tokens[idxs].sum(1)
        resampled += system_loss[idxs].sum(1) / n - base_loss[idxs].sum(1) / n
    return observed / len(pairs), resampled / len(pairs)


def pooled_block_bootstrap(pairs, n_samples=N_SAMPLES, seed=SEED):
    """Paired bootstrap of the mean over ``pairs`` ([(baseline test_blocks, system test_blocks)],
    one per seed pair, all on the same blocks) of the system's test loss minus the baseline's.

    Returns ``{"delta", "ci95": [low, high], "p_value", "n_blocks", "n_samples", "seed"}``
    (nats per token; negative: the system's perplexity is lower)."""
    if not pairs:
        raise ValueError("no run pairs to compare")
    n_blocks = len(pairs[0][0]["tokens"])
    for base_blocks, _ in pairs[1:]:
        _check_same(pairs[0][0], base_blocks)
    idxs = _resample_indices(n_blocks, n_samples, seed)
    observed, resampled = _deltas(pairs, idxs)
    low, high = _percentile_interval(resampled)
    return {"delta": float(observed), "ci95": [low, high], "p_value": _two_sided_p(resampled, observed),
            "n_blocks": n_blocks, "n_samples": n_samples, "seed": seed}


def paired_block_bootstrap(base_blocks, system_blocks, n_samples=N_SAMPLES, seed=SEED):
    """:func:`pooled_block_bootstrap` of one run pair."""
    return pooled_block_bootstrap([(base_blocks, system_blocks)], n_samples, seed)
