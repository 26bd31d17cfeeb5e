"""Language-model results (results-lm.json) in pn-results, pn-plot --ppl / --valid-ppl and pn-analyze report.

Every expected number is computed here by hand from the values written into the files: means and
standard deviations (n - 1) with plain sums, Student's t quantile from a table, not from the code
under test.
"""
import json
import math

import pytest

from pn_fairseq.cli import plot
from pn_fairseq.cli import results as results_cli
from pn_fairseq.cli.analyze import main as analyze
from test_results import write_result

T_975 = {1: 12.706204736174705, 2: 4.302652729911275}  # Student's t, 0.975 quantile, by degrees of freedom


def write_lm(run_dir, row, seed, loss_nats, valid=(), paper_ppl=None, dataset="lm-multi30k", **overrides):
    """A results-lm.json as scripts/run_lm_row.sh writes it; ``valid``: [(updates, perplexity)]."""
    data = {"kind": "lm", "row": row, "dataset": dataset, "seed": seed, "test_ppl": math.exp(loss_nats),
            "test_loss_nats": loss_nats, "checkpoint": "checkpoint_last.pt", "updates": 1500, "wall_time_s": 600.0,
            "valid": {"updates": [u for u, _ in valid], "loss_nats": [math.log(p) for _, p in valid],
                      "ppl": [p for _, p in valid]},
            "paper_ppl": paper_ppl, "train_command": "fairseq-train data-bin/multi30k-lm ..."}
    data.update(overrides)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "results-lm.json").write_text(json.dumps(data))
    return run_dir / "results-lm.json"


def mean(values):
    return sum(values) / len(values)


def std(values):
    m = mean(values)
    return math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))


PRELN_PPL = [60.0, 62.0, 64.0]                 # mean 62, std 2
PN_DELTA = [-0.03, -0.01, -0.05]               # nats/token against preln, per seed: mean -0.03, std 0.02
BN_DELTA = [0.20, 0.26]                        # seeds 1, 2 only
RMS_DELTA = [0.004]                            # seed 1 only
PNV_DELTA = [0.10, 0.11, 0.12]                 # mean 0.11, std 0.01: the interval leaves out 0


def lm_tree(root):
    """<root>/lm-multi30k/<row>/seed<k>/results-lm.json for preln, pn, pnv (3 seeds), bn (2), rms (1)."""
    base = root / "lm-multi30k"
    for k, ppl in enumerate(PRELN_PPL, start=1):
        write_lm(base / "preln" / f"seed{k}", "preln", k, math.log(ppl),
                 valid=[(500, 130.0 + k), (1000, 70.0 + k), (1500, 63.0 + k)])
    for k, delta in enumerate(PN_DELTA, start=1):
        # seed 3 stopped validating early: its curve lacks update 1500
        valid = [(500, 120.0 + 2 * k), (1000, 66.0 + 2 * k)] + ([(1500, 60.0 + 2 * k)] if k < 3 else [])
        write_lm(base / "pn" / f"seed{k}", "pn", k, math.log(PRELN_PPL[k - 1]) + delta, valid=valid, paper_ppl=57.0)
    for k, delta in enumerate(BN_DELTA, start=1):
        write_lm(base / "bn" / f"seed{k}", "bn", k, math.log(PRELN_PPL[k - 1]) + delta, valid=[(1500, 80.0 + k)])
    for k, delta in enumerate(PNV_DELTA, start=1):
        write_lm(base / "pnv" / f"seed{k}", "pnv", k, math.log(PRELN_PPL[k - 1]) + delta)
    for k, delta in enumerate(RMS_DELTA, start=1):
        write_lm(base / "rms" / f"seed{k}", "rms", k, math.log(PRELN_PPL[k - 1]) + delta)
    return base


def table_row(text, row, title):
    """The cells of ``row`` in the markdown table under ``### title``."""
    section = text[text.index(f"### {title}"):]
    section = section[:section.index("\n### ")] if "\n### " in section else section
    line = next(line for line in section.splitlines() if line.startswith(f"| {row} |"))
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_perplexity_table_and_paired_comparison(tmp_path, capsys):
    lm_tree(tmp_path / "runs")
    # bn's seed 3 is training: a seed directory beside its finished ones, without results-lm.json
    (tmp_path / "runs" / "lm-multi30k" / "bn" / "seed3").mkdir()
    (tmp_path / "runs" / "lm-multi30k" / "bn" / "seed3" / "train.log").write_text("starting\n")
    out_json = tmp_path / "summary.json"
    assert results_cli.main([str(tmp_path / "runs"), "--json", str(out_json)]) == 0
    text = capsys.readouterr().out
    title = "Multi30k LM: test perplexity (lower is better)"
    assert "No results (no results.json found)" not in text and "Unfinished runs" not in text

    preln = table_row(text, "preln", title)
    assert preln[1:4] == ["3", "62.00 ± 2.00", "1: 60.00, 2: 62.00, 3: 64.00"]
    assert preln[4] == "—"  # no paper_ppl
    last = [64.0, 65.0, 66.0]  # 63 + k at update 1500
    assert preln[5] == f"{mean(last):.2f} ± {std(last):.2f} (1: 64.00 @ 1500, 2: 65.00 @ 1500, 3: 66.00 @ 1500)"

    pn_ppl = [p * math.exp(d) for p, d in zip(PRELN_PPL, PN_DELTA)]
    pn = table_row(text, "pn", title)
    assert pn[2] == f"{mean(pn_ppl):.2f} ± {std(pn_ppl):.2f}"
    assert pn[3] == ", ".join(f"{k}: {p:.2f}" for k, p in enumerate(pn_ppl, start=1))
    assert pn[4] == f"57 ({mean(pn_ppl) - 57:+.2f})"
    assert pn[5].endswith("(1: 62.00 @ 1500, 2: 64.00 @ 1500, 3: 72.00 @ 1000)")

    bn = table_row(text, "bn", title)
    assert bn[1] == "2 of 3" and bn[3].endswith("3: unfinished")
    rms = table_row(text, "rms", title)
    assert rms[1:3] == ["1 of 3", f"{PRELN_PPL[0] * math.exp(RMS_DELTA[0]):.2f}"]
    assert rms[3].endswith("2: missing, 3: missing")
    assert "- rms: no run for seed(s) 2, 3 (another row of this dataset has them, or --seeds names them)" in text

    # the comparison against preln, paired by seed
    comparison = "Multi30k LM: test loss against preln, paired by seed"
    half = T_975[2] * std(PN_DELTA) / math.sqrt(3)
    pn_row = table_row(text, "pn", comparison)
    assert pn_row[1] == "1, 2, 3 (pooled)" and pn_row[2] == f"{mean(PN_DELTA):+.4f}"  # interval holds 0: no *
    assert pn_row[3] == f"[{mean(PN_DELTA) - half:+.4f}, {mean(PN_DELTA) + half:+.4f}]"
    assert pn_row[4] == f"{math.exp(mean(PN_DELTA)):.3f} [{math.exp(mean(PN_DELTA) - half):.3f}, " \
                        f"{math.exp(mean(PN_DELTA) + half):.3f}]"
    assert pn_row[5] == "—"  # no per-block test losses in these files: no bootstrap (a note says so)
    assert pn_row[6] == "1: -0.0300; 2: -0.0100; 3: -0.0500"
    assert "- pn: seed(s) 1, 2, 3: a run without per-block test losses" in text
    bn_half = T_975[1] * std(BN_DELTA) / math.sqrt(2)
    bn_row = table_row(text, "bn", comparison)
    assert bn_row[2] == f"{mean(BN_DELTA):+.4f}"  # [-0.151, +0.611] holds 0 (test_bn_interval_by_hand): no *
    assert bn_row[3] == f"[{mean(BN_DELTA) - bn_half:+.4f}, {mean(BN_DELTA) + bn_half:+.4f}]"
    pnv_half = T_975[2] * std(PNV_DELTA) / math.sqrt(3)
    assert pnv_half == pytest.approx(4.302652729911275 * 0.01 / math.sqrt(3)) and 0.11 - pnv_half > 0
    assert table_row(text, "pnv", comparison)[2:4] == ["+0.1100*", f"[{0.11 - pnv_half:+.4f}, {0.11 + pnv_half:+.4f}]"]
    assert table_row(text, "rms", comparison)[2:4] == [f"{RMS_DELTA[0]:+.4f}", "one seed: no interval"]

    lm = json.loads(out_json.read_text())["lm"]
    rows = {r["row"]: r for r in lm["rows"]}
    assert rows["preln"]["mean_ppl"] == pytest.approx(62.0) and rows["preln"]["std_ppl"] == pytest.approx(2.0)
    assert rows["preln"]["ci95_of_mean_ppl"] == pytest.approx([62 - T_975[2] * 2 / math.sqrt(3),
                                                               62 + T_975[2] * 2 / math.sqrt(3)])
    assert rows["bn"]["unfinished"] == [str(tmp_path / "runs" / "lm-multi30k" / "bn" / "seed3")]
    assert rows["rms"]["missing_seeds"] == [2, 3]
    (report,) = lm["comparisons"]
    assert report["baseline"] == "preln" and report["unit"] == "nats/token"
    pn_cmp = report["rows"]["pn"]
    assert [p["delta"] for p in pn_cmp["pairs"]] == pytest.approx(PN_DELTA)
    assert pn_cmp["mean_delta"] == pytest.approx(-0.03) and pn_cmp["std_delta"] == pytest.approx(0.02)
    assert pn_cmp["ci95"] == pytest.approx([-0.03 - half, -0.03 + half]) and pn_cmp["df"] == 2
    assert pn_cmp["excludes_zero"] is False
    assert report["rows"]["bn"]["excludes_zero"] is (mean(BN_DELTA) - bn_half > 0)
    assert report["rows"]["rms"]["ci95"] is None and report["rows"]["rms"]["excludes_zero"] is None


def test_bn_interval_by_hand():
    """The bn numbers above: Δ 0.20, 0.26: mean 0.23, s = 0.0424, t(0.975, 1) = 12.706: half 0.381,
    so the interval [-0.151, 0.611] holds 0 and bn must not be starred."""
    half = T_975[1] * std(BN_DELTA) / math.sqrt(2)
    assert half == pytest.approx(12.706204736174705 * 0.06 / 2, rel=1e-12)  # s / sqrt(2) = |0.26 - 0.20| / 2
    assert mean(BN_DELTA) - half < 0


def test_baseline_flag_and_seed_expectations(tmp_path, capsys):
    lm_tree(tmp_path / "runs")
    assert results_cli.main([str(tmp_path / "runs"), "--baseline", "pn", "--seeds", "1,2,3,4"]) == 0
    text = capsys.readouterr().out
    row = table_row(text, "preln", "Multi30k LM: test loss against pn, paired by seed")
    assert row[2] == f"{-mean(PN_DELTA):+.4f}" and row[6] == "1: +0.0300; 2: +0.0100; 3: +0.0500"
    assert table_row(text, "preln", "Multi30k LM: test perplexity (lower is better)")[1] == "3 of 4"
    assert results_cli.main([str(tmp_path / "runs"), "--no-significance"]) == 0
    assert "paired by seed" not in capsys.readouterr().out


def test_files_given_one_by_one(tmp_path, capsys):
    """results-lm.json files named on the command line, not their directory."""
    files = [write_lm(tmp_path / f"s{k}", "preln", k, math.log(p)) for k, p in ((1, 50.0), (2, 54.0))]
    assert results_cli.main([str(f) for f in files]) == 0
    assert table_row(capsys.readouterr().out, "preln", "Multi30k LM: test perplexity (lower is better)")[2] \
        == f"52.00 ± {std([50.0, 54.0]):.2f}"


def test_mixed_directory_prints_both_kinds(tmp_path, capsys):
    write_result(tmp_path / "multi30k" / "pn", "pn", "multi30k", 35.5)
    write_lm(tmp_path / "lm" / "pn" / "seed1", "pn", 1, math.log(70.0), valid=[(100, 90.0)])
    (tmp_path / "lm" / "pn" / "seed1" / "train.log").write_text("a run with a log is not unfinished\n")
    out_json = tmp_path / "s.json"
    assert results_cli.main([str(tmp_path), "--json", str(out_json)]) == 0
    text = capsys.readouterr().out
    assert "| Transformer-PN | 35.50 |" in text
    assert table_row(text, "pn", "Multi30k LM: test perplexity (lower is better)")[2] == "70.00"
    assert "Unfinished runs" not in text and "training or stopped" not in text
    summary = json.loads(out_json.read_text())
    assert [r["row"] for r in summary["rows"]] == ["pn"] and summary["unfinished"] == []
    assert summary["lm"]["rows"][0]["mean_ppl"] == pytest.approx(70.0) and summary["lm"]["comparisons"] == []


@pytest.mark.parametrize("change, message", [
    ({"drop": "test_ppl"}, "missing key 'test_ppl'"),
    ({"drop": "valid"}, "missing key 'valid'"),
    ({"test_ppl": float("inf")}, "'test_ppl' must be a finite number, got inf"),
    ({"test_ppl": float("nan")}, "'test_ppl' must be a finite number, got nan"),
    ({"valid": {"updates": [100], "loss_nats": [float("inf")], "ppl": [float("inf")]}},
     "'valid.loss_nats' holds inf, not a finite number"),
    ({"test_loss_nats": math.log(60.0) / math.log(2)}, "is not ln('test_ppl'"),  # bits written as nats
    ({"kind": "mt"}, "'kind' is 'mt', expected 'lm'"),
])
def test_bad_results_lm_is_one_line_naming_the_file(tmp_path, capsys, change, message):
    path = write_lm(tmp_path / "pn" / "seed1", "pn", 1, math.log(60.0))
    data, change = json.loads(path.read_text()), dict(change)
    data.pop(change.pop("drop", None), None)
    data.update(change)
    path.write_text(json.dumps(data))  # inf and nan as JSON's Infinity / NaN, which json.load reads
    with pytest.raises(SystemExit) as info:
        results_cli.main([str(tmp_path)])
    error = str(info.value.code)
    assert error.startswith(f"pn-results: error: {path}: ") and message in error and "\n" not in error
    with pytest.raises(SystemExit) as info:  # pn-plot reads them the same way
        plot.main(["--ppl", str(tmp_path), "--output", str(tmp_path / "p.png")])
    assert str(info.value.code).startswith(f"pn-plot: error: {path}: ") and message in str(info.value.code)
    assert not (tmp_path / "p.png").exists()


def test_two_results_for_one_seed(tmp_path):
    write_lm(tmp_path / "a", "pn", 1, math.log(60.0))
    write_lm(tmp_path / "b", "pn", 1, math.log(61.0))
    with pytest.raises(SystemExit, match=r"a second result for row 'pn' on 'lm-multi30k' seed 1"):
        results_cli.main([str(tmp_path)])


def test_plot_ppl_per_row_and_its_numbers(tmp_path, capsys):
    lm_tree(tmp_path / "runs")
    out = tmp_path / "plots" / "ppl.png"
    assert plot.main(["--ppl", str(tmp_path / "runs"), "--output", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in out.parent.iterdir()) == ["ppl.json", "ppl.png"]  # no temp file left
    data = json.loads((tmp_path / "plots" / "ppl.json").read_text())
    assert data["lower_is_better"] is True
    rows = data["datasets"]["lm-multi30k"]
    assert [e["row"] for e in rows] == ["preln", "bn", "pnv", "pn", "rms"]  # the BLEU table's row order
    preln = rows[0]
    assert preln["ppls"] == pytest.approx(PRELN_PPL) and preln["seeds"] == [1, 2, 3]
    assert preln["mean"] == pytest.approx(62.0)
    assert preln["ci95"] == pytest.approx([62 - T_975[2] * 2 / math.sqrt(3), 62 + T_975[2] * 2 / math.sqrt(3)])
    bn_ppl = [p * math.exp(d) for p, d in zip(PRELN_PPL, BN_DELTA)]
    assert rows[1]["ppls"] == pytest.approx(bn_ppl) and rows[1]["complete"] is False
    assert rows[4]["ci95"] is None
    printed = capsys.readouterr().out
    assert f"lm-multi30k preln: 3 seed(s), mean test perplexity 62.00, 95% CI " \
           f"[{62 - T_975[2] * 2 / math.sqrt(3):.2f}, {62 + T_975[2] * 2 / math.sqrt(3):.2f}]" in printed
    assert f"lm-multi30k rms: 1 seed(s), mean test perplexity {PRELN_PPL[0] * math.exp(0.004):.2f} (partial)" in printed


def test_plot_validation_perplexity_against_updates(tmp_path):
    lm_tree(tmp_path / "runs")
    out = tmp_path / "valid.png"
    assert plot.main(["--valid-ppl", str(tmp_path / "runs"), "--output", str(out), "--title", "LM"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lines = {line["row"]: line for line in json.loads((tmp_path / "valid.json").read_text())["datasets"]["lm-multi30k"]}
    assert set(lines) == {"preln", "pn", "bn"}  # pnv and rms logged no validation: no line
    preln = lines["preln"]
    assert preln["updates"] == [500, 1000, 1500]
    assert preln["mean"] == pytest.approx([132.0, 72.0, 65.0])  # (131 + 132 + 133) / 3, ...
    assert preln["lo"] == pytest.approx([131.0, 71.0, 64.0]) and preln["hi"] == pytest.approx([133.0, 73.0, 66.0])
    pn = lines["pn"]
    # seed 3 has no validation at 1500: that point is the mean of seeds 1 and 2 only
    assert pn["n"] == [3, 3, 2]
    assert pn["mean"] == pytest.approx([124.0, 70.0, 63.0]) and pn["lo"][2] == 62.0 and pn["hi"][2] == 64.0
    assert pn["values"][2] == [126.0, 72.0, None]


def test_report_page_has_the_language_model_section(tmp_path):
    lm_tree(tmp_path / "exp")
    write_result(tmp_path / "exp" / "multi30k" / "pn", "pn", "multi30k", 35.5)
    assert analyze(["report", str(tmp_path / "exp"), "--out", str(tmp_path / "out")]) == 0
    page = (tmp_path / "out" / "report.html").read_text()
    lm = page[page.index('<h2 id="language-models">'):page.index("<h2>Loss curves</h2>")]
    assert "<h3>Multi30k LM: test perplexity (lower is better)</h3>" in lm
    assert "<h3>Multi30k LM: test loss against preln, paired by seed</h3>" in lm
    assert "<td>62.00 ± 2.00</td>" in lm and f"<td>{mean(PN_DELTA):+.4f}</td>" in lm
    assert lm.count('<img alt="validation perplexity" src="data:image/png;base64,') == 1
    data = json.loads((tmp_path / "out" / "report.json").read_text())["language_models"]
    curves = {line["row"]: line for line in data["valid_curves"]["lm-multi30k"]}
    assert curves["preln"]["mean"] == pytest.approx([132.0, 72.0, 65.0])
    assert data["comparisons"]["lm-multi30k"]["rows"]["pn"]["mean_delta"] == pytest.approx(-0.03)


def test_what_the_row_script_writes_is_read_back(tmp_path, capsys):
    """The writer scripts/run_lm_row.sh calls and these tables agree on the file: fairseq-eval-lm's
    base-2 loss becomes nats, each validation's loss in bits becomes a perplexity."""
    from pn_fairseq.evaluation import lm_results

    (tmp_path / "eval-lm.log").write_text("2026 | INFO | fairseq_cli.eval_lm | "
                                          "Loss (base 2): 5.9542, Perplexity: 62.00\n")
    (tmp_path / "train.log").write_text(
        '2026 | INFO | valid | {"epoch": 1, "valid_loss": "7", "valid_num_updates": "500"}\n'
        '2026 | INFO | valid | {"epoch": 2, "valid_loss": "6", "valid_num_updates": "1000"}\n')
    out = tmp_path / "pn" / "seed2" / "results-lm.json"
    out.parent.mkdir(parents=True)
    assert lm_results.main(["write", "--eval-log", str(tmp_path / "eval-lm.log"),
                            "--train-log", str(tmp_path / "train.log"), "--output", str(out), "--row", "pn",
                            "--dataset", "lm-multi30k", "--checkpoint", "checkpoint_last.pt",
                            "--train-command", "fairseq-train ...", "--seed", "2",
                            "--updates", "1000", "--wall-time", "60"]) == 0
    data = lm_results.load(str(out))
    assert data["test_ppl"] == 62.0 and data["test_loss_nats"] == pytest.approx(5.9542 * math.log(2))
    assert data["valid"]["ppl"] == pytest.approx([2.0 ** 7, 2.0 ** 6])
    capsys.readouterr()
    assert results_cli.main([str(tmp_path)]) == 0
    row = table_row(capsys.readouterr().out, "pn", "Multi30k LM: test perplexity (lower is better)")
    assert row[2:4] == ["62.00", "2: 62.00"] and row[5] == "64.00 (2: 64.00 @ 1000)"


def test_the_ci_bar_is_in_the_legend_when_only_a_later_row_has_seeds():
    # The live Multi30k LM set had this shape: one seed everywhere but a later row's two; the
    # legend named the error bar only when the first column had one, so it went unexplained.
    from pn_fairseq.evaluation.curves import ppl_figure

    one = {"row": "preln", "seeds": [1], "ppls": [26.5], "mean": 26.5, "std": None, "ci95": None, "complete": False}
    two = {"row": "postln", "seeds": [1, 2], "ppls": [25.3, 25.4], "mean": 25.35, "std": 0.07,
           "ci95": [24.4, 26.3], "complete": True}
    ax = ppl_figure({"lm-multi30k": [one, two]}).axes[0]
    assert "95% CI of the mean" in [t.get_text() for t in ax.get_legend().get_texts()]
    (bar,) = [c for c in ax.containers if c.get_label() == "95% CI of the mean"]
    (segment,) = bar.lines[2][0].get_segments()
    assert segment[:, 0].tolist() == [1, 1] and segment[:, 1].tolist() == pytest.approx([24.4, 26.3])
