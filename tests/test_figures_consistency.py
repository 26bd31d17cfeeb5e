"""Figures and reports agree: one colour per row in every figure, BLEU axes from 0, report.html
with pn-results' seeds and paired-bootstrap tables, results.md without empty rows or columns."""
import html.parser
import json
import os
import random
import statistics
import subprocess
import sys

import pytest
import sacrebleu
from matplotlib.collections import PathCollection
from matplotlib.colors import to_hex

from conftest import REPO
from pn_fairseq.evaluation import curves, figures, results
from pn_fairseq.analysis import output, plotting
from pn_fairseq.cli import analyze, plot
from pn_fairseq.cli import results as results_cli
from test_analysis_stats import write_log
from test_results import write_result

BLUE, RED = "#1f77b4", "#d62728"  # what preln and pn are drawn in (figures.ROW_COLORS)


# ------------------------------------------------------------------------------------------
# The palette


@pytest.mark.parametrize("label, row", [
    ("preln", "preln"), ("multi30k/pn/seed2", "pn"), ("PN", "pn"), ("checkpoints/iwslt14/pn-nogroup", "pn-nogroup"),
    ("pn-paper-group", "pn-paper-group"), ("transformer_preln_iwslt_de_en", "preln"), ("transformer_pnv", "pnv"),
    ("transformer_pn_wmt_en_de_big", "pn"), ("runs/deepnorm/mt512", "deepnorm"), ("my-run", None), ("seed1", None),
])
def test_row_of(label, row):
    assert figures.row_of(label) == row


def test_palette_is_one_colour_per_row_and_stable_for_unknown_names():
    colours = [to_hex(c) for c in figures.ROW_COLORS.values()]
    assert len(set(colours)) == len(colours) and not set(colours) & {to_hex(c) for c in figures.FALLBACK}
    assert set(figures.ROW_COLORS) >= {"preln", "postln", "bn", "pnv", "pn", "pn-paper", "pn-nogroup",
                                       "pn-paper-group", "rms", "scale", "dyt", "deepnorm"}
    assert set(results.ROWS) <= set(figures.ROW_COLORS)  # every row pn-results knows has its own colour
    # An unknown name: the same colour in another process (Python's own hash is salted per process).
    here = figures.row_color("baseline-A")
    # figures.py loaded by itself: importing the package would import fairseq, seconds for nothing.
    code = ("import importlib.util as u; s = u.spec_from_file_location('figures', %r); m = u.module_from_spec(s); "
            "s.loader.exec_module(m); print(m.row_color('baseline-A'))" % figures.__file__)
    for salt in ("1", "2"):
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                              env=dict(os.environ, PYTHONHASHSEED=salt))
        assert proc.stdout.strip() == here, proc.stderr
    assert here in figures.FALLBACK


def _lab(color):
    """CIELAB (D65) of an sRGB colour, by the CIE formulas: here, not in the product."""
    rgb = [int(color[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    lin = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb]
    xyz = [sum(m * c for m, c in zip(row, lin)) for row in
           ((0.4124, 0.3576, 0.1805), (0.2126, 0.7152, 0.0722), (0.0193, 0.1192, 0.9505))]
    f = [t ** (1 / 3) if t > 216 / 24389 else (24389 / 27 * t + 16) / 116
         for t in (xyz[0] / 0.95047, xyz[1], xyz[2] / 1.08883)]
    return 116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])


def _delta_e(a, b):  # CIE76: about 2 is the smallest difference seen; lines side by side need far more
    return sum((x - y) ** 2 for x, y in zip(_lab(a), _lab(b))) ** 0.5


def _documented_epoch_figures():
    """``pn-analyze epochs`` commands of docs/results.md that draw from results/: argument lists,
    braces expanded by bash as a reader's shell would."""
    text = (REPO / "docs" / "results.md").read_text().replace("\\\n", " ")
    commands = [line.split("#")[0] for line in text.splitlines()
                if line.startswith("pn-analyze epochs results/") and "<" not in line]
    return [subprocess.run(["bash", "-c", 'printf "%s\\n" ' + cmd[len("pn-analyze "):]], capture_output=True,
                           text=True, check=True).stdout.split() for cmd in commands]


def test_lab_conversion_matches_published_values():
    assert _lab("#ffffff") == pytest.approx((100, 0, 0), abs=0.05)
    assert _lab("#ff0000") == pytest.approx((53.24, 80.09, 67.20), abs=0.05)  # sRGB red, CIE D65


@pytest.mark.parametrize("argv", _documented_epoch_figures(), ids=lambda a: a[a.index("--out") + 1])
def test_lines_of_a_documented_figure_are_told_apart_by_colour_or_style(argv):
    # postln-fixed1e-4 was drawn in a brown 17 CIE76 units from postln-lr1e-3-warmup4k's, beside it
    # in docs/figures/preln-multi30k-fixed: two lines a reader could not tell apart.
    from pn_fairseq.analysis import epoch_figures
    from pn_fairseq.analysis.logs import run_labels
    args = analyze.build_parser().parse_args(argv)
    pairs, _ = epoch_figures.expand_row_dirs(run_labels([os.path.join(REPO, r) for r in args.runs]))
    runs = epoch_figures.group_seeds(epoch_figures.collect(pairs), args.band)
    spec = epoch_figures.panels(runs, args.layout)
    assert len(spec["panels"]) >= 2
    for panel in spec["panels"]:
        lines = [(figures.row_color(line["color_key"]), line["style"], line["label"]) for line in panel["lines"]]
        assert len(lines) >= 2
        for i, (colour, style, label) in enumerate(lines):
            for other, other_style, other_label in lines[:i]:
                assert style != other_style or _delta_e(colour, other) >= 20, (label, other_label, colour, other)


# ------------------------------------------------------------------------------------------
# Two figures of one report page


def line_colours(fig):
    """{legend label: colour} of every labelled line, errorbar and scatter of a Figure."""
    out = {}
    for ax in fig.axes:
        for line in ax.get_lines():
            if not line.get_label().startswith("_"):
                out[line.get_label()] = to_hex(line.get_color())
        for container in ax.containers:
            out[container.get_label()] = to_hex(container.lines[0].get_color())
    return out


def demo_runs(root):
    """Two run directories as make demo leaves them (results.json, train.log)."""
    for row, bleu in (("preln", 27.35), ("pn", 27.30)):
        run = root / row
        write_result(run, row, "synthetic", bleu)
        write_log(run / "train.log", [{"num_updates": u, "loss": 9.0 - u / 50} for u in (50, 100)],
                  valid=[{"epoch": 1, "valid_loss": f"{8.5 - u / 50:g}", "valid_num_updates": str(u)} for u in (50, 100)])


def test_a_row_has_one_colour_on_the_report_page(tmp_path, monkeypatch):
    """What make demo draws: pn-plot's valid_loss.png (runs given as preln, pn) and the report's
    loss curves (runs found in directory order: pn, preln). Colours by position gave preln blue in
    one and orange in the other."""
    root = tmp_path / "demo"
    demo_runs(root)
    drawn = []
    monkeypatch.setattr(curves, "_save", lambda fig, path: drawn.append(fig))
    assert plot.main(["--runs", f"preln={root / 'preln'}", f"pn={root / 'pn'}",
                      "--output", str(root / "valid_loss.png")]) == 0
    save = output.save_figure
    monkeypatch.setattr(output, "save_figure", lambda fig, path: (drawn.append(fig), save(fig, path)))
    assert analyze.main(["report", str(root), "--out", str(root)]) == 0
    valid_loss, report = (line_colours(fig) for fig in drawn)
    assert valid_loss == {"preln": BLUE, "pn": RED}
    assert report == {"pn valid": RED, "pn train": RED, "preln valid": BLUE, "preln train": BLUE}


def test_colour_follows_the_row_not_the_name_or_position(tmp_path, monkeypatch):
    # pn-plot: a run named freely takes its row from results.json; a run of an unknown row its
    # name's own colour; two seeds of one row share the colour and differ by marker.
    write_result(tmp_path / "a", "pn", "synthetic", 20.0)
    for run in ("a", "b", "pn/seed1", "pn/seed2"):
        (tmp_path / run).mkdir(parents=True, exist_ok=True)
        write_log(tmp_path / run / "train.log", [], valid=[{"valid_loss": "5", "valid_num_updates": "10"}])
    drawn = []
    monkeypatch.setattr(curves, "_save", lambda fig, path: drawn.append(fig))
    args = ["--runs", f"mine={tmp_path / 'a'}", f"other={tmp_path / 'b'}", f"s1={tmp_path / 'pn/seed1'}",
            f"s2={tmp_path / 'pn/seed2'}", "--output", str(tmp_path / "x.png")]
    assert plot.main(args) == 0
    colours = line_colours(drawn[0])
    assert colours["mine"] == colours["s1"] == colours["s2"] == RED
    assert colours["other"] == figures.row_color("other") != RED
    lines = {line.get_label(): line for line in drawn[0].axes[0].get_lines()}
    assert lines["s1"].get_marker() != lines["s2"].get_marker()


def test_every_analysis_figure_uses_the_row_palette():
    stats = {"postln": {"enc0.ffn": {"mu_dist": {"updates": [1, 2], "mean": [1.0, 2.0], "max": [2.0, 3.0]}}},
             "checkpoints/pn": {"enc0.ffn": {"mu_dist": {"updates": [1, 2], "mean": [1.0, 2.0], "max": [2.0, 3.0]}}}}
    fig = plotting.plot_norm_stats(stats, ["mu_dist"], "t")
    assert {to_hex(line.get_color()) for line in fig.axes[0].get_lines()[:2]} == {figures.ROW_COLORS["postln"]}
    assert {to_hex(line.get_color()) for line in fig.axes[0].get_lines()[2:4]} == {RED}

    stat = {"mean": [1.0, 0.5], "std": [0.1, 0.1]}
    side = {"W1": stat, "W2": stat}
    grads = {"archs": {"transformer_postln": {"encoder": side, "decoder": side},
                       "transformer_preln": {"encoder": side, "decoder": side}}}
    assert line_colours(plotting.plot_grad_norms(grads, "t")) == {
        "transformer_postln": figures.ROW_COLORS["postln"], "transformer_preln": BLUE}

    svd = {"threshold": 0.1, "checkpoints": {
        "PN": {"normalized_singular_values": [1.0, 0.05], "first_below_threshold": 2},
        "BN": {"normalized_singular_values": [1.0, 0.2], "first_below_threshold": None}}}
    colours = line_colours(plotting.plot_embed_svd(svd, "t"))
    assert colours["PN (< 0.1 from index 2)"] == RED and colours["BN (never < 0.1)"] == figures.ROW_COLORS["bn"]

    sweep = {"total_tokens": 4096, "rows": {"pn": [{"micro_tokens": 512, "bleu": 30.0}, {"micro_tokens": 4096, "bleu": 31.0}],
                                            "preln": [{"micro_tokens": 512, "bleu": 29.0}, {"micro_tokens": 4096, "bleu": 31.5}]}}
    fig = plotting.plot_batch_sweep(sweep, "t")
    assert line_colours(fig) == {"pn": RED, "preln": BLUE}
    assert fig.axes[0].get_ylim()[0] == 0  # BLEU from 0, although every value is near 30


# ------------------------------------------------------------------------------------------
# BLEU per seed: row colours, axis from 0


def test_bleu_per_seed_axis_starts_at_zero_and_points_take_row_colours(tmp_path, monkeypatch):
    for row, seeds in {"preln": {1: 31.5, 2: 32.0, 3: 31.9}, "pn": {1: 32.2, 2: 31.7}}.items():
        for seed, bleu in seeds.items():
            write_result(tmp_path / row / f"seed{seed}", row, "multi30k", bleu)
    drawn = []
    monkeypatch.setattr(curves, "_save", lambda fig, path: drawn.append(fig))
    assert plot.main(["--bleu", str(tmp_path), "--output", str(tmp_path / "bleu.png")]) == 0
    ax = drawn[0].axes[0]
    assert ax.get_ylim()[0] == 0 and ax.get_ylim()[1] > 32.2
    ticks = [t.get_text().split("\n")[0] for t in ax.get_xticklabels()]
    assert ticks == ["preln", "pn"]
    scatter = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert [to_hex(c.get_facecolor()[0]) for c in scatter] == [BLUE, RED]


def test_bleu_metric_curves_start_at_zero():
    fig = curves.runs_figure({"pn": [(100, 20.0), (200, 25.0)]}, "valid_bleu")
    assert fig.axes[0].get_ylim()[0] == 0
    fig = curves.runs_figure({"pn": [(100, 6.0), (200, 5.0)]}, "valid_loss")
    assert fig.axes[0].get_ylim()[0] > 4  # a loss axis is left to matplotlib


# ------------------------------------------------------------------------------------------
# report.html: pn-results' seeds and significance tables


class Tables(html.parser.HTMLParser):
    """{h3 title: rows of cell texts} of the tables that follow an <h3>."""

    def __init__(self, text):
        super().__init__()
        self.tables, self.title, self.cell, self.tag = {}, None, None, None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tag = tag
        if tag == "tr" and self.title is not None:
            self.tables.setdefault(self.title, []).append([])
        elif tag in ("td", "th"):
            self.cell = ""

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self.title is not None:
            self.tables[self.title][-1].append(self.cell)
            self.cell = None
        elif tag == "table":
            self.title = None
        self.tag = None

    def handle_data(self, data):
        if self.tag == "h3":
            self.title = data
        elif self.cell is not None:
            self.cell += data


VOCAB = [f"w{i}" for i in range(30)]


def texts(seed, n=60):
    rng = random.Random(seed)
    return [" ".join(rng.choice(VOCAB) for _ in range(rng.randint(5, 12))) for _ in range(n)]


def noisy(refs, p, seed):
    rng = random.Random(seed)
    return [" ".join(w if rng.random() > p else rng.choice(VOCAB) for w in line.split()) for line in refs]


def bleu(hyps, refs):
    return sacrebleu.BLEU(tokenize="none", force=True).corpus_score(hyps, [refs]).score


def seeded_runs(root):
    """preln and pn on multi30k, seeds 1-3, with the texts they were scored on; pn seed 3 is
    still training. Returns {row: {seed: hypotheses}} and the references."""
    refs = texts(0)
    hyps = {"preln": {k: noisy(refs, 0.35, k) for k in (1, 2, 3)}, "pn": {k: noisy(refs, 0.25, 10 + k) for k in (1, 2)}}
    for row, seeds in hyps.items():
        for seed, lines in seeds.items():
            run = root / row / f"seed{seed}"
            score = bleu(lines, refs)
            write_result(run, row, "multi30k", score, texts=["test.hyp.txt", "test.ref.txt"])
            (run / "test.hyp.txt").write_text("".join(line + "\n" for line in lines))
            (run / "test.ref.txt").write_text("".join(line + "\n" for line in refs))
    (root / "pn" / "seed3").mkdir()
    (root / "pn" / "seed3" / "train.log").write_text("")
    return hyps, refs


def test_report_has_the_seeds_and_significance_tables(tmp_path, capsys):
    hyps, refs = seeded_runs(tmp_path / "runs")
    assert analyze.main(["report", str(tmp_path / "runs"), "--out", str(tmp_path / "out")]) == 0
    page = (tmp_path / "out" / "report.html").read_text()
    tables = Tables(page).tables

    seeds = {row[0]: row for row in tables["Multi30k: seeds"][1:]}
    preln = [bleu(hyps["preln"][k], refs) for k in (1, 2, 3)]
    pn = [bleu(hyps["pn"][k], refs) for k in (1, 2)]
    assert seeds["preln"][1:3] == ["3", f"{statistics.fmean(preln):.2f} ± {statistics.stdev(preln):.2f}"]
    assert seeds["pn"][1:3] == ["2 of 3", f"{statistics.fmean(pn):.2f} ± {statistics.stdev(pn):.2f}"]
    assert seeds["pn"][4].endswith("3: unfinished")

    title = "Multi30k: paired bootstrap against preln (tokenized BLEU (sacrebleu tokenize=none))"
    (row,) = tables[title][1:]
    # pooled over the seed pairs 1 and 2: the mean of the two pairs' BLEU differences
    pooled = statistics.fmean(bleu(hyps["pn"][k], refs) - bleu(hyps["preln"][k], refs) for k in (1, 2))
    significant = float(row[4]) < 0.05
    assert row[:3] == ["pn", "1, 2 (pooled)", f"{pooled:+.2f}" + ("*" if significant else "")]
    assert row[5].startswith(f"1: {bleu(hyps['pn'][1], refs) - preln[0]:+.2f}")

    # the same cells pn-results prints
    capsys.readouterr()
    assert results_cli.main([str(tmp_path / "runs")]) == 0
    markdown = capsys.readouterr().out
    for cells in tables["Multi30k: seeds"][1:] + tables[title][1:]:
        assert "| " + " | ".join(cells) + " |" in markdown
    data = json.loads((tmp_path / "out" / "report.json").read_text())
    assert data["significance"]["multi30k"]["definitions"]["tokenized"]["rows"]["pn"]["seeds"] == [1, 2]


def test_report_without_seeds_or_baseline_says_so(tmp_path):
    write_result(tmp_path / "runs" / "pn", "pn", "synthetic", 20.0)
    assert analyze.main(["report", str(tmp_path / "runs"), "--out", str(tmp_path / "out")]) == 0
    page = (tmp_path / "out" / "report.html").read_text()
    assert "Seeds and significance</h2>" in page and "No row with several (or lacking) seeds" in page
    assert not Tables(page).tables


# ------------------------------------------------------------------------------------------
# results.md: only rows and datasets with results


def main_table(text):
    lines = text.splitlines()
    table = lines[:lines.index("")]
    return [[c.strip() for c in line.strip("|").split("|")] for line in table if not line.startswith("|---")]


def test_results_md_has_no_empty_row_or_column(tmp_path, capsys):
    write_result(tmp_path / "preln", "preln", "synthetic", 27.35)
    write_result(tmp_path / "pn", "pn", "synthetic", 27.30)
    write_result(tmp_path / "bn", "bn", "iwslt14", 34.0)
    out = tmp_path / "results.md"
    assert results_cli.main([str(tmp_path), "--output", str(out), "--no-significance"]) == 0
    header, *rows = main_table(out.read_text())
    assert header == ["Model", "IWSLT14", "synthetic"]
    assert [r[0] for r in rows] == [results.ROWS["preln"], results.ROWS["bn"], results.ROWS["pn"]]
    measured = [[not cell.startswith(results.MISSING) for cell in r[1:]] for r in rows]
    assert all(any(r) for r in measured)  # no row without a result
    assert all(any(col) for col in zip(*measured))  # no column without one
    # the cell of a row on a shown dataset it was not run on still gives the paper's number
    assert rows[0][1] == "— (35.5)"


def test_results_md_without_results(tmp_path, capsys):
    assert results_cli.main([str(tmp_path), "--no-significance"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "No results (no results.json found).\n" and "no results.json" in captured.err
