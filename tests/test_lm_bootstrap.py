"""Per-block test losses of language-model rows: read from fairseq-eval-lm --output-word-probs,
checked against its closing line, and the paired bootstrap over test blocks in pn-results."""
import json
import math

import numpy as np
import pytest

from pn_fairseq.cli import results as results_cli
from pn_fairseq.evaluation import lm_bootstrap, lm_results
from test_results_lm import table_row, write_lm

COMPARISON = "Multi30k LM: test loss against preln, paired by seed"


def eval_log(blocks, style="fairseq"):
    """A fairseq-eval-lm log with --output-word-probs lines for ``blocks`` ({id: [(word, ln p)]},
    written out of order as batches finish) and the closing line it would print."""
    prefix = "2026-12-06 10:00:00 | INFO | fairseq_cli.eval_lm | " if style == "fairseq" else "INFO:fairseq_cli.eval_lm:"
    lines = [prefix + "num. model params: 1,234"]
    for block in sorted(blocks, reverse=True):
        lines.append(prefix + f"{block} " + "\t".join(f"{w} [{lp:2f}]" for w, lp in blocks[block]))
    scores = [lp for words in blocks.values() for _, lp in words]
    loss2 = -sum(scores) / len(scores) / math.log(2)
    lines.append(prefix + f"Evaluated {len(scores):,} tokens in 1.0s (10.00 tokens/s)")
    lines.append(prefix + f"Loss (base 2): {loss2:.4f}, Perplexity: {2 ** loss2:.2f}")
    return "\n".join(lines) + "\n"


BLOCKS = {0: [("a", -1.5), ("dog", -4.25), ("[", -2.0)], 1: [("runs", -3.0), (".", -0.5)],
          2: [("</s>", -0.001), ("3", -7.25), ("men", -1.125), ("cook", -6.5)]}


@pytest.mark.parametrize("style", ["fairseq", "python"])
def test_block_losses_from_eval_lm_log(tmp_path, style):
    log = tmp_path / "eval-lm.log"
    log.write_text(eval_log(BLOCKS, style))
    blocks = lm_results.read_block_losses(str(log))
    # by hand: 1.5 + 4.25 + 2 = 7.75; 3 + 0.5 = 3.5; 0.001 + 7.25 + 1.125 + 6.5 = 14.876
    assert blocks["loss_nats"] == pytest.approx([7.75, 3.5, 14.876])
    assert blocks["tokens"] == [3, 2, 4]


def test_block_losses_that_do_not_add_up_are_refused(tmp_path):
    text = eval_log(BLOCKS).replace("Loss (base 2): ", "Loss (base 2): 1").replace("Perplexity: ", "Perplexity: 1")
    (tmp_path / "eval-lm.log").write_text(text)
    (tmp_path / "train.log").write_text("")
    with pytest.raises(lm_results.LMResultsError, match="the test blocks' losses give .* closing line"):
        lm_results.build(_write_args(tmp_path))


def test_a_missing_block_is_refused(tmp_path):
    (tmp_path / "eval-lm.log").write_text(eval_log({0: BLOCKS[0], 2: BLOCKS[2]}))
    with pytest.raises(lm_results.LMResultsError, match=r"lack \[1\]"):
        lm_results.read_block_losses(str(tmp_path / "eval-lm.log"))


def _write_args(tmp_path):
    import argparse
    return argparse.Namespace(eval_log=str(tmp_path / "eval-lm.log"), train_log=str(tmp_path / "train.log"),
                              row="pn", dataset="lm-multi30k", seed=1, checkpoint="checkpoint_last.pt",
                              updates=10, wall_time=1.0, paper="", train_command="fairseq-train ...")


def test_written_results_carry_the_blocks(tmp_path):
    (tmp_path / "eval-lm.log").write_text(eval_log(BLOCKS))
    (tmp_path / "train.log").write_text("")
    out = tmp_path / "results-lm.json"
    argv = ["write", "--eval-log", str(tmp_path / "eval-lm.log"), "--train-log", str(tmp_path / "train.log"),
            "--output", str(out), "--row", "pn", "--dataset", "lm-multi30k", "--checkpoint", "checkpoint_last.pt",
            "--train-command", "fairseq-train ...", "--seed", "1", "--updates", "10"]
    assert lm_results.main(argv) == 0
    data = lm_results.load(str(out))
    assert data["test_blocks"]["tokens"] == [3, 2, 4]
    assert sum(data["test_blocks"]["loss_nats"]) / 9 == pytest.approx(data["test_loss_nats"], abs=1e-4)


def _blocks(rng, n=60):
    tokens = rng.integers(20, 33, size=n)
    return tokens, rng.gamma(4.0, 1.2, size=n) * tokens  # about 4.8 nats per token


def _bootstrap_by_hand(pairs, n_samples=1000, seed=12345):
    """The documented test written out: numpy's default_rng(12345).choice(n, (1000, n)) draws, the
    pairs' differences of sum(loss)/sum(tokens) averaged, 25th and 975th sorted values."""
    n = len(pairs[0][0][1])
    draws = np.random.default_rng(seed).choice(n, size=(n_samples, n), replace=True)
    diffs = []
    for d in draws:
        diffs.append(np.mean([s[d].sum() / t[d].sum() - b[d].sum() / t[d].sum() for (t, b), s in pairs]))
    diffs = np.sort(diffs)
    observed = np.mean([s.sum() / t.sum() - b.sum() / t.sum() for (t, b), s in pairs])
    return observed, [diffs[25], diffs[974]]


def test_bootstrap_equals_the_procedure_by_hand():
    rng = np.random.default_rng(7)
    tokens, base1 = _blocks(rng)
    _, base2 = _blocks(rng)
    sys1 = base1 - 0.02 * tokens + rng.normal(0, 3, size=len(tokens))
    sys2 = base2 - 0.05 * tokens + rng.normal(0, 3, size=len(tokens))
    as_json = lambda loss: {"loss_nats": loss.tolist(), "tokens": tokens.tolist()}  # noqa: E731
    got = lm_bootstrap.pooled_block_bootstrap([(as_json(base1), as_json(sys1)), (as_json(base2), as_json(sys2))])
    observed, ci = _bootstrap_by_hand([((tokens, base1), sys1), ((tokens, base2), sys2)])
    assert got["delta"] == pytest.approx(observed, abs=1e-12)
    assert got["ci95"] == pytest.approx(ci, abs=1e-12)
    assert got["ci95"][0] < got["delta"] < got["ci95"][1] and got["n_blocks"] == 60


def test_a_constant_shift_per_token_is_certain():
    """The system's loss is the baseline's plus 0.1 nats on every token: every resample's difference
    is exactly 0.1, so the interval is [0.1, 0.1] and p the smallest the test can give, 2/1001."""
    tokens, base = _blocks(np.random.default_rng(3))
    got = lm_bootstrap.paired_block_bootstrap({"loss_nats": base.tolist(), "tokens": tokens.tolist()},
                                              {"loss_nats": (base + 0.1 * tokens).tolist(), "tokens": tokens.tolist()})
    assert got["delta"] == pytest.approx(0.1) and got["ci95"] == pytest.approx([0.1, 0.1])
    assert got["p_value"] == pytest.approx(2 / 1001)


def test_different_blocks_are_not_compared():
    a = {"loss_nats": [3.0, 4.0], "tokens": [1, 1]}
    b = {"loss_nats": [3.0, 4.0, 5.0], "tokens": [1, 1, 1]}
    with pytest.raises(lm_bootstrap.BlockMismatch, match="different test blocks"):
        lm_bootstrap.paired_block_bootstrap(a, b)


def test_pn_results_shows_the_block_bootstrap(tmp_path, capsys):
    rng = np.random.default_rng(11)
    tokens, base = _blocks(rng)
    system = base + 0.03 * tokens  # +0.03 nats on every token: certain
    runs = tmp_path / "runs" / "lm-multi30k"
    for row, loss in (("preln", base), ("pn", system)):
        per_token = loss.sum() / tokens.sum()
        write_lm(runs / row / "seed1", row, 1, per_token,
                 test_blocks={"loss_nats": loss.tolist(), "tokens": tokens.tolist()})
    # a second row whose file predates per-block losses
    write_lm(runs / "bn" / "seed1", "bn", 1, base.sum() / tokens.sum() + 0.2)
    out_json = tmp_path / "summary.json"
    assert results_cli.main([str(tmp_path / "runs"), "--json", str(out_json)]) == 0
    text = capsys.readouterr().out
    pn = table_row(text, "pn", COMPARISON)
    assert pn[2] == "+0.0300" and pn[3] == "one seed: no interval"
    assert pn[5] == "[+0.0300, +0.0300]*, p = 0.002"
    assert pn[6] == "1: +0.0300 [+0.0300, +0.0300]*"
    assert table_row(text, "bn", COMPARISON)[5] == "—"
    assert "- bn: seed(s) 1: a run without per-block test losses" in text
    (report,) = json.loads(out_json.read_text())["lm"]["comparisons"]
    assert report["rows"]["pn"]["block_bootstrap"]["ci95"] == pytest.approx([0.03, 0.03])
    assert report["rows"]["pn"]["pairs"][0]["block_bootstrap"]["p_value"] == pytest.approx(2 / 1001)
    assert "blocks" not in report["rows"]["pn"]["pairs"][0]
