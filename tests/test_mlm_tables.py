"""Masked-LM results (results-mlm.json) in pn-results, pn-plot --valid-mlm and pn-analyze report: the
Pre-LN paper's Figure 5(a) comparison.

The files are written here by hand; every expected number (means, standard deviations, the
interpolated update at which a row reaches the reference's final loss) is worked out in the
comments from the values written, with losses chosen to be exact in binary so the arithmetic is
exact too.
"""
import json
import math

import pytest

from pn_fairseq.cli import plot
from pn_fairseq.cli import results as results_cli
from pn_fairseq.cli.analyze import main as analyze
from pn_fairseq.evaluation import mlm_tables

UPDATES = [100, 200, 300, 400]
CURVES = {  # (row, seed): validation losses at UPDATES (nats)
    # the reference: final losses 4.5 and 4.75 -> target 4.625 at update 400
    ("postln-warmup", 1): [7.0, 6.0, 5.0, 4.5],
    ("postln-warmup", 2): [7.25, 6.25, 5.25, 4.75],
    # seed 1: 5.0 at 200 > 4.625 >= 4.25 at 300 -> 200 + (5.0 - 4.625) / (5.0 - 4.25) * 100 = 250
    # seed 2: 6.25 at 100 > 4.625 = 4.625 at 200 -> exactly 200
    ("preln-nowarmup", 1): [6.0, 5.0, 4.25, 4.0],
    ("preln-nowarmup", 2): [6.25, 4.625, 4.25, 3.75],
    ("preln-bn", 1): [7.0, 6.5, 6.0, 5.5],      # never at or below 4.625
    ("preln-pn", 1): [4.5, 4.25, 4.0, 3.5],     # below it at the first validation: update 100
    # seed 1: 4.875 at 300 > 4.625 >= 4.5 at 400 -> 300 + 0.25 / 0.375 * 100 = 366.67; seed 2 never
    ("preln-pnv", 1): [6.0, 5.5, 4.875, 4.5],
    ("preln-pnv", 2): [6.0, 5.5, 5.0, 4.75],
}
DIVERGED = {"update": 150, "reason": "2026-12-07 | INFO | fairseq.trainer | NOTE: gradients are Nan/Inf"}
SQRT2 = math.sqrt(2)


def write_mlm(run_dir, row, seed, updates, losses, diverged=None, dataset="bert-multi30k", **overrides):
    """A results-mlm.json as scripts/run_mlm_row.sh writes it (the schema of mlm_results' docstring)."""
    finite = [v for v in losses if v is not None]
    data = {"kind": "mlm", "row": row, "dataset": dataset, "seed": seed,
            "valid": {"updates": list(updates), "loss_nats": list(losses)},
            "final_valid_loss_nats": losses[-1] if losses else None,
            "best_valid_loss_nats": min(finite) if finite else None,
            "updates": diverged["update"] if diverged else updates[-1], "max_update": 400, "wall_time_s": 321.0,
            "diverged": diverged, "train_command": "fairseq-train data-bin/multi30k-mlm.en ..."}
    data.update(overrides)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "results-mlm.json").write_text(json.dumps(data))
    return run_dir / "results-mlm.json"


def bert_tree(root, rows=None):
    base = root / "bert-multi30k"
    for (row, seed), losses in CURVES.items():
        if rows is None or row in rows:
            write_mlm(base / row / f"seed{seed}", row, seed, UPDATES, losses)
            (base / row / f"seed{seed}" / "train.log").write_text("a finished run keeps its log\n")
    if rows is None or "postln-lr3e-4" in rows:
        # reached 4.0 < 4.625 at its first validation, then diverged: the divergence is what it reports
        write_mlm(base / "postln-lr3e-4" / "seed1", "postln-lr3e-4", 1, [100, 150], [4.0, None], diverged=DIVERGED)
    return base


def table_row(text, row):
    """The cells of ``row`` in the masked-LM table."""
    section = text[text.index("### BERT at Multi30k scale: validation masked-LM loss"):]
    line = next(line for line in section.splitlines() if line.startswith(f"| {row} |"))
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def section_text(text):
    return text[text.index("### BERT at Multi30k scale: validation masked-LM loss"):]


def test_interpolated_crossing_by_hand():
    points = list(zip(UPDATES, CURVES[("preln-nowarmup", 1)]))
    assert mlm_tables.reach_update(points, 4.625) == pytest.approx(250.0)
    assert mlm_tables.reach_update(list(zip(UPDATES, CURVES[("preln-nowarmup", 2)])), 4.625) == 200.0
    assert mlm_tables.reach_update(list(zip(UPDATES, CURVES[("preln-pn", 1)])), 4.625) == 100.0
    assert mlm_tables.reach_update(list(zip(UPDATES, CURVES[("preln-bn", 1)])), 4.625) is None
    # a null (non-finite) loss between two points is skipped: bracket (100, 6.0) and (300, 4.0)
    # -> 100 + (6.0 - 5.0) / (6.0 - 4.0) * 200 = 200
    run = mlm_tables.MLMRun("x", {"valid": {"updates": [100, 200, 300], "loss_nats": [6.0, None, 4.0]}})
    assert mlm_tables.reach_update(run.points(), 5.0) == pytest.approx(200.0)


def test_pn_results_prints_the_section_and_json(tmp_path, capsys):
    bert_tree(tmp_path / "runs")
    # preln-bn's seed 2 is training: a seed directory beside its finished one, without results-mlm.json
    (tmp_path / "runs" / "bert-multi30k" / "preln-bn" / "seed2").mkdir()
    (tmp_path / "runs" / "bert-multi30k" / "preln-bn" / "seed2" / "train.log").write_text("starting\n")
    out_json = tmp_path / "summary.json"
    assert results_cli.main([str(tmp_path / "runs"), "--json", str(out_json)]) == 0
    text = capsys.readouterr().out
    header = text[text.index("| row | seeds | final valid loss"):].splitlines()[0]
    assert "updates to reach postln-warmup's final loss (4.625)" in header
    assert [line.split("|")[1].strip() for line in section_text(text).splitlines() if line.startswith("| ")][1:] == \
        ["postln-warmup", "preln-nowarmup", "postln-lr3e-4", "preln-bn", "preln-pnv", "preln-pn"]  # configs' order

    # final 4.5, 4.75: mean 4.625, std |4.75 - 4.5| / sqrt(2) = 0.1768
    ref = table_row(text, "postln-warmup")
    assert ref[1:8] == ["2", f"4.625 ± {0.25 / SQRT2:.3f}", "1: 4.500 @ 400, 2: 4.750 @ 400",
                        f"4.625 ± {0.25 / SQRT2:.3f}", "400 / 400", "no",
                        "400 (the reference: its final validation)"]
    assert ref[8] == "1 (reference)"
    # final 4.0, 3.75: mean 3.875; reaches it at 250 and 200: mean 225, std 50 / sqrt(2) = 35.36; 225 / 400 = 0.5625
    pre = table_row(text, "preln-nowarmup")
    assert pre[2:4] == [f"3.875 ± {0.25 / SQRT2:.3f}", "1: 4.000 @ 400, 2: 3.750 @ 400"]
    assert pre[7:] == [f"225 ± {50 / SQRT2:.0f} (1: 250, 2: 200)", "0.56"]
    diverged = table_row(text, "postln-lr3e-4")
    assert diverged[1:] == ["1 of 2", "—", "1: diverged, 2: missing", "—", "150 / 400",
                            "at update 150: gradients are Nan/Inf", "diverged at update 150", "—"]
    bn = table_row(text, "preln-bn")
    assert bn[1] == "1 of 2" and bn[3] == "1: 5.500 @ 400, 2: unfinished" and bn[7:] == ["not reached", "—"]
    assert table_row(text, "preln-pn")[7:] == ["100", "0.25"]  # 100 / 400
    assert table_row(text, "preln-pnv")[7:] == ["not every seed (1: 367, 2: not reached)", "—"]
    unfinished = tmp_path / "runs" / "bert-multi30k" / "preln-bn" / "seed2"
    assert f"- preln-bn seed 2: unfinished (no results-mlm.json): {unfinished}" in text
    assert "- postln-lr3e-4: no run for seed(s) 2" in text
    # finished runs keep their train.log: they are no unfinished translation runs
    assert "Unfinished runs" not in text and "training or stopped" not in text.replace(str(unfinished), "")

    summary = json.loads(out_json.read_text())
    assert summary["rows"] == [] and summary["lm"]["rows"] == []
    (reach,) = summary["mlm"]["reach"]
    assert reach["reference"] == "postln-warmup" and reach["target_loss_nats"] == 4.625
    assert reach["reference_updates"] == 400 and reach["reference_seeds"] == [1, 2]
    row = reach["rows"]["preln-nowarmup"]
    assert [s["update"] for s in row["seeds"]] == pytest.approx([250.0, 200.0])
    assert row["mean_update"] == pytest.approx(225.0) and row["ratio"] == pytest.approx(0.5625)
    assert row["std_update"] == pytest.approx(50 / SQRT2)
    assert reach["rows"]["postln-lr3e-4"]["seeds"] == [{"seed": 1, "status": "diverged", "update": 150,
                                                         "reason": DIVERGED["reason"]}]
    assert reach["rows"]["preln-pnv"]["status"] == "mixed" and reach["rows"]["preln-bn"]["status"] == "not reached"
    rows = {r["row"]: r for r in summary["mlm"]["rows"]}
    assert rows["preln-nowarmup"]["mean_final_valid_loss_nats"] == pytest.approx(3.875)
    assert rows["preln-nowarmup"]["std_final_valid_loss_nats"] == pytest.approx(0.25 / SQRT2)
    assert rows["postln-lr3e-4"]["mean_final_valid_loss_nats"] is None
    assert rows["postln-lr3e-4"]["seeds"][0]["diverged"] == DIVERGED
    assert rows["preln-bn"]["unfinished"] == [str(unfinished)] and rows["preln-bn"]["complete"] is False


def test_other_reference_row(tmp_path, capsys):
    bert_tree(tmp_path / "runs")
    assert results_cli.main([str(tmp_path / "runs"), "--mlm-reference", "preln-nowarmup"]) == 0
    text = capsys.readouterr().out
    assert "updates to reach preln-nowarmup's final loss (3.875)" in text
    # postln-warmup never gets to 3.875; preln-pn: 4.0 at 300 > 3.875 >= 3.5 at 400 -> 300 + 0.125 / 0.5 * 100 = 325
    assert table_row(text, "postln-warmup")[7:] == ["not reached", "—"]
    assert table_row(text, "preln-pn")[7:] == ["325", f"{325 / 400:.2f}"]
    out = tmp_path / "v.png"  # pn-plot takes the same flag
    assert plot.main(["--valid-mlm", str(tmp_path / "runs"), "--output", str(out), "--mlm-reference",
                      "preln-nowarmup"]) == 0
    entry = json.loads((tmp_path / "v.json").read_text())["datasets"]["bert-multi30k"]
    assert entry["reference"] == "preln-nowarmup" and entry["target_loss_nats"] == 3.875
    assert {line["row"]: line["reached_at"] for line in entry["lines"]}["preln-pn"] == pytest.approx(325.0)


def test_missing_reference_row(tmp_path, capsys):
    bert_tree(tmp_path / "runs", rows={"preln-nowarmup", "preln-bn"})
    assert results_cli.main([str(tmp_path / "runs")]) == 0
    text = capsys.readouterr().out
    assert table_row(text, "preln-nowarmup")[7:] == ["no target", "—"]
    assert "- no finished 'postln-warmup' run on bert-multi30k: no updates-to-reach (choose another reference " \
           "row with --mlm-reference ROW)" in text
    # naming a reference no run has is an error, in one line
    with pytest.raises(SystemExit) as info:
        results_cli.main([str(tmp_path / "runs"), "--mlm-reference", "postln-warmup"])
    error = str(info.value.code)
    assert error == (f"pn-results: error: --mlm-reference: no results-mlm.json of row 'postln-warmup' under "
                     f"{tmp_path / 'runs'} (masked-LM rows there: preln-bn, preln-nowarmup)")


def test_a_diverged_reference_gives_no_target(tmp_path, capsys):
    write_mlm(tmp_path / "a", "postln-warmup", 1, [100], [None], diverged=DIVERGED)
    write_mlm(tmp_path / "b", "preln-nowarmup", 1, UPDATES, CURVES[("preln-nowarmup", 1)])
    assert results_cli.main([str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert table_row(text, "postln-warmup")[6:] == ["at update 150: gradients are Nan/Inf", "no target", "—"]
    assert "'postln-warmup' on bert-multi30k has no seed that ended on a finite validation loss" in text


@pytest.mark.parametrize("change, message", [
    ({"drop": "valid"}, "missing key 'valid'"),
    ({"kind": "lm"}, "'kind' is 'lm', expected 'mlm'"),
    ({"valid": {"updates": [200, 100], "loss_nats": [5.0, 4.0]}}, "'valid.updates' must increase"),
    ({"valid": {"updates": [100], "loss_nats": ["5.0"]}}, "'valid.loss_nats' must hold numbers or null"),
    ({"diverged": "yes"}, "'diverged' must be null or"),
    ({"text": "{not json"}, "not valid JSON"),
])
def test_bad_results_mlm_is_one_line_naming_the_file(tmp_path, change, message):
    path = write_mlm(tmp_path / "pn" / "seed1", "preln-pn", 1, UPDATES, CURVES[("preln-pn", 1)])
    data, change = json.loads(path.read_text()), dict(change)
    data.pop(change.pop("drop", None), None)
    text = change.pop("text", None)
    data.update(change)
    path.write_text(text if text is not None else json.dumps(data))
    with pytest.raises(SystemExit) as info:
        results_cli.main([str(tmp_path)])
    error = str(info.value.code)
    assert error.startswith(f"pn-results: error: {path}: ") and message in error and "\n" not in error
    with pytest.raises(SystemExit) as info:  # pn-plot reads them the same way
        plot.main(["--valid-mlm", str(tmp_path), "--output", str(tmp_path / "p.png")])
    error = str(info.value.code)
    assert error.startswith(f"pn-plot: error: {path}: ") and message in error and "\n" not in error
    assert not (tmp_path / "p.png").exists() and not (tmp_path / "p.json").exists()


def test_files_given_one_by_one(tmp_path, capsys):
    files = [write_mlm(tmp_path / f"s{k}", "postln-warmup", k, UPDATES, CURVES[("postln-warmup", k)])
             for k in (1, 2)]
    assert results_cli.main([str(f) for f in files]) == 0
    assert table_row(capsys.readouterr().out, "postln-warmup")[2] == f"4.625 ± {0.25 / SQRT2:.3f}"


def test_plot_valid_mlm_and_its_numbers(tmp_path, capsys):
    bert_tree(tmp_path / "runs")
    out = tmp_path / "figs" / "valid-mlm.png"
    assert plot.main(["--valid-mlm", str(tmp_path / "runs"), "--output", str(out), "--title", "Figure 5(a)"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in out.parent.iterdir()) == ["valid-mlm.json", "valid-mlm.png"]  # no temp file left
    data = json.loads((tmp_path / "figs" / "valid-mlm.json").read_text())
    assert data["reference"] == "postln-warmup" and data["lower_is_better"] is True
    entry = data["datasets"]["bert-multi30k"]
    assert entry["target_loss_nats"] == 4.625 and entry["reference_updates"] == 400
    lines = {line["row"]: line for line in entry["lines"]}
    assert list(lines) == ["postln-warmup", "preln-nowarmup", "postln-lr3e-4", "preln-bn", "preln-pnv", "preln-pn"]
    for row in ("postln-warmup", "preln-nowarmup", "preln-pnv"):
        assert lines[row]["updates"] == UPDATES and lines[row]["seeds"] == [1, 2]
        assert lines[row]["values"] == [CURVES[(row, 1)], CURVES[(row, 2)]]  # the numbers written, as written
    assert lines["postln-warmup"]["loss"] == pytest.approx([7.125, 6.125, 5.125, 4.625])  # (7 + 7.25) / 2, ...
    assert lines["postln-warmup"]["min"] == CURVES[("postln-warmup", 1)]
    assert lines["postln-warmup"]["max"] == CURVES[("postln-warmup", 2)]
    assert lines["preln-nowarmup"]["reached_at"] == pytest.approx(225.0)
    assert lines["preln-pn"]["reached_at"] == 100.0 and lines["preln-bn"]["reached_at"] is None
    # the diverged row: its finite point only, and where it diverged
    assert lines["postln-lr3e-4"]["updates"] == [100] and lines["postln-lr3e-4"]["values"] == [[4.0]]
    assert lines["postln-lr3e-4"]["diverged_at"] == [150] and lines["postln-lr3e-4"]["reached_at"] is None
    printed = capsys.readouterr().out
    assert "bert-multi30k preln-nowarmup: 2 seed(s), 4 validations, last mean validation loss 3.875 at update 400, " \
           "reaches postln-warmup's final loss at update 225" in printed


def test_plot_without_results_is_an_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit) as info:
        plot.main(["--valid-mlm", str(tmp_path / "empty"), "--output", str(tmp_path / "p.png")])
    assert str(info.value.code) == "pn-plot: error: no validation loss to plot (no results-mlm.json with a finite " \
                                   "validation loss)"


def test_report_page_has_the_masked_lm_section(tmp_path):
    bert_tree(tmp_path / "exp")
    assert analyze(["report", str(tmp_path / "exp"), "--out", str(tmp_path / "out")]) == 0
    page = (tmp_path / "out" / "report.html").read_text()
    mlm = page[page.index('<h2 id="masked-language-models">'):page.index("<h2>Loss curves</h2>")]
    assert "<h3>BERT at Multi30k scale: validation masked-LM loss (nats; lower is better)</h3>" in mlm
    assert f"<td>225 ± {50 / SQRT2:.0f} (1: 250, 2: 200)</td>" in mlm
    assert mlm.count('<img alt="validation masked-LM loss" src="data:image/png;base64,') == 1
    data = json.loads((tmp_path / "out" / "report.json").read_text())["masked_language_models"]
    assert data["reach"]["bert-multi30k"]["rows"]["preln-nowarmup"]["mean_update"] == pytest.approx(225.0)
