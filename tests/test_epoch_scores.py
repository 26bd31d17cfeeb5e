"""Per-epoch validation loss and BLEU (pn_fairseq/analysis/epoch_scores.py): what a Pre-LN row logs while
it trains equals fairseq-generate --gen-subset valid + pn-score on each epoch's checkpoint."""
import json
import os
import random
import shlex
import subprocess

import pytest

from pn_fairseq.analysis.epoch_scores import EpochScoresError, epoch_scores, format_table, require_bleu
from pn_fairseq.evaluation.scoring import score_generate_output

from conftest import BIN, REPO, run
from test_row_scripts import dry_run, flags

EPOCHS = 10
TINY = ("--encoder-layers 1 --decoder-layers 1 --encoder-embed-dim 64 --decoder-embed-dim 64 "
        "--encoder-ffn-embed-dim 128 --decoder-ffn-embed-dim 128 --max-tokens 128 --lr 3e-3 --dropout 0 "
        "--keep-last-epochs -1")  # every epoch's checkpoint kept here, to decode it independently


def _generate(argv):
    from fairseq import options
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf
    from fairseq_cli import generate

    args = options.parse_args_and_arch(options.get_generation_parser(), argv)
    generate.main(convert_namespace_to_omegaconf(args))


@pytest.fixture(scope="module")
def mapped(tmp_path_factory):
    """A word-for-word task (w3 w7 -> W3 W7, 20 types) a 1+1 layer model learns in ~200 updates,
    so that the later epochs' BLEU is far from 0 and 100. Returns the data-bin directory."""
    root = tmp_path_factory.mktemp("mapped")
    rng = random.Random(0)
    words = [f"w{i}" for i in range(20)]
    for split, n in [("train", 400), ("valid", 40), ("test", 10)]:
        src = [" ".join(rng.choice(words) for _ in range(rng.randint(3, 8))) for _ in range(n)]
        (root / f"{split}.de").write_text("\n".join(src) + "\n")
        (root / f"{split}.en").write_text("\n".join(s.upper() for s in src) + "\n")
    run("fairseq-preprocess", "--source-lang", "de", "--target-lang", "en", "--joined-dictionary",
        "--trainpref", root / "train", "--validpref", root / "valid", "--testpref", root / "test",
        "--destdir", root / "bin", "--workers", "1")
    return root / "bin"


@pytest.fixture(scope="module")
def trained(mapped, tmp_path_factory):
    """The preln-nowarmup row's own training command (its --eval-bleu flags, beam 5, lenpen 1.2),
    shrunk by EXTRA_ARGS, EPOCHS epochs. Returns (run dir, the row's commands)."""
    save = tmp_path_factory.mktemp("run")
    cmds = dry_run("preln/preln-nowarmup.sh", DATA=str(mapped), SAVE_DIR=str(save), MAX_EPOCH=str(EPOCHS),
                   CPU="1", LOG_INTERVAL="5", EXTRA_ARGS=TINY)
    env = dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}", OMP_NUM_THREADS="1")
    with open(save / "train.log", "w") as log:
        proc = subprocess.run(cmds["fairseq-train"], stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    assert proc.returncode == 0, (save / "train.log").read_text()[-3000:]
    return save, cmds


def test_one_bleu_per_epoch_equal_to_generate_and_pn_score(trained, mapped, tmp_path):
    save, cmds = trained
    scores = require_bleu(epoch_scores(save), save)
    assert [s["epoch"] for s in scores] == list(range(1, EPOCHS + 1))
    assert [s["updates"] for s in scores] == sorted({s["updates"] for s in scores})  # one per epoch, increasing
    assert max(s["bleu"] for s in scores) > 20  # the comparison covers real translations, not only 0s
    gen = flags(cmds["fairseq-generate"])
    compared = []  # the epochs whose valid_bleu was checked against fairseq's BLEU4 too
    for s in scores:
        # fairseq-generate's own main() in this process (no process start per epoch), writing
        # generate-valid.txt as the command would print it; then pn-score's scoring of that file.
        out = tmp_path / f"epoch{s['epoch']}"
        _generate([str(mapped), "--user-dir", str(REPO / "pn_fairseq"), "--path", str(save / f"checkpoint{s['epoch']}.pt"),
                   "--gen-subset", "valid", "--beam", gen["--beam"], "--lenpen", gen["--lenpen"], "--remove-bpe",
                   "--batch-size", "128", "--required-batch-size-multiple", "1", "--cpu", "--results-path", str(out)])
        scored = score_generate_output(str(out / "generate-valid.txt"), "tokenized", expected_sentences=40)
        # valid_bleu is sacrebleu tokenize=none, the smoothed BLEU pn-score reports beside fairseq's
        # unsmoothed BLEU4 (they agree when no n-gram order is empty: checked where pn-score says so).
        assert s["bleu"] == pytest.approx(scored["bleu"]["sacrebleu_tok_none"], abs=0.0051), s["epoch"]
        if scored["agree"]:
            assert s["bleu"] == pytest.approx(scored["bleu_main"], abs=0.011), s["epoch"]
            compared.append(s["epoch"])
        else:  # the one reason they may differ
            assert "some n-gram order has no match at all" in (scored["disagreement"] or ""), (s["epoch"], scored)
    assert EPOCHS in compared, compared  # at least the trained model's epoch went through the comparison
    # The last epoch through the command-line tools themselves, as a user would run them.
    text = run("fairseq-generate", mapped, "--user-dir", REPO / "pn_fairseq", "--path", save / f"checkpoint{EPOCHS}.pt",
               "--gen-subset", "valid", "--beam", gen["--beam"], "--lenpen", gen["--lenpen"], "--remove-bpe",
               "--batch-size", "128", "--required-batch-size-multiple", "1", "--cpu")
    (tmp_path / "last.txt").write_text(text)
    run("pn-score", "--gen-output", tmp_path / "last.txt", "--scheme", "tokenized", "--expected-sentences", "40",
        "--json", tmp_path / "last.json", "--allow-mismatch")
    last = json.loads((tmp_path / "last.json").read_text())
    assert scores[-1]["bleu"] == pytest.approx(last["bleu"]["sacrebleu_tok_none"], abs=0.0051)
    assert format_table(scores).splitlines()[0].split() == ["epoch", "updates", "valid_loss", "valid_bleu"]


def test_resumed_log_keeps_the_last_validation_of_each_epoch(tmp_path):
    lines = [
        '{"epoch": 1, "valid_loss": "6.5", "valid_bleu": "1.5", "valid_num_updates": "10"}',
        '{"epoch": 2, "valid_loss": "5.5", "valid_bleu": "3", "valid_num_updates": "15"}',  # mid-epoch
        '{"epoch": 2, "valid_loss": "5", "valid_bleu": "4", "valid_num_updates": "20"}',
        '{"epoch": 1, "loss": "7", "num_updates": "5"}',  # a training line
        '{"epoch": 2, "valid_loss": "4.9", "valid_bleu": "4.2", "valid_num_updates": "20"}',  # resumed: logged again
    ]
    (tmp_path / "train.log").write_text("".join(f"2026-01-01 | INFO | valid | {x}\n" for x in lines))
    got = epoch_scores(tmp_path)
    assert [(s["epoch"], s["updates"], s["loss"], s["bleu"]) for s in got] == [(1, 10, 6.5, 1.5), (2, 20, 4.9, 4.2)]


def test_errors_name_the_fix(tmp_path):
    with pytest.raises(EpochScoresError, match="no train.log"):
        epoch_scores(tmp_path)
    (tmp_path / "train.log").write_text('x | valid | {"epoch": 1, "valid_loss": "6", "valid_num_updates": "10"}\n')
    with pytest.raises(EpochScoresError, match=r"no validation BLEU logged for epoch\(s\) 1: train with --eval-bleu"):
        require_bleu(epoch_scores(tmp_path), tmp_path)
    (tmp_path / "train.log").write_text("nothing\n")
    with pytest.raises(EpochScoresError, match="no 'valid' validation lines"):
        epoch_scores(tmp_path)


def _fake_run(root, configs, row, bleus, losses):
    """A run directory as scripts/run_row.sh lays it out, its train.log with one validation per epoch."""
    run_dir = root / configs / row
    run_dir.mkdir(parents=True)
    lines = [f'2026-01-01 | INFO | valid | {{"epoch": {e}, "valid_loss": "{loss}", "valid_bleu": "{bleu}", '
             f'"valid_num_updates": "{121 * e}"}}' for e, (bleu, loss) in enumerate(zip(bleus, losses), 1)]
    (run_dir / "train.log").write_text("\n".join(lines) + "\n")
    return run_dir


FIG2 = {"postln-warmup4k": [20, 30, 34], "postln-warmup500": [10, 25, 31], "postln-nowarmup": [1, 5, 8],
        "postln-lr1e-3-warmup4k": [22, 31, 33]}
FIG4 = {"postln-warmup4k": [20, 30, 34], "preln-nowarmup": [25, 33, 35], "postln-radam": [18, 29, 33]}


def _lines_per_panel(png_json):
    return [len(p["lines"]) for p in json.loads(png_json.read_text())["panels"]]


def test_plot_command_draws_one_line_per_run(tmp_path):
    runs = [_fake_run(tmp_path, "multi30k-preln", row, b, [6 - x / 10 for x in b]) for row, b in FIG4.items()]
    out = tmp_path / "out"
    run("pn-analyze", "epochs", *runs, "--out", out)
    png = (out / "epochs.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert _lines_per_panel(out / "epochs.json") == [3, 3]  # BLEU and loss, a line per run
    from pn_fairseq.analysis import epoch_figures
    from pn_fairseq.analysis.logs import run_labels

    spec = epoch_figures.panels(epoch_figures.collect(run_labels(map(str, runs))), "runs")
    fig = epoch_figures.plot(spec, "t")
    assert [len(ax.get_lines()) for ax in fig.axes] == [3, 3]
    assert list(fig.axes[0].get_lines()[1].get_ydata()) == FIG4["preln-nowarmup"]


def test_figure2_layout_a_panel_per_optimizer_and_lr_a_line_per_warmup(tmp_path):
    runs = [_fake_run(tmp_path, "preln", row, b, [5.0, 4.5, 4.0]) for row, b in FIG2.items()]
    out = tmp_path / "out"
    run("pn-analyze", "epochs", *runs, "--layout", "figure2", "--out", out)
    spec = json.loads((out / "epochs.json").read_text())
    titles = [p["title"].split(":")[0] for p in spec["panels"]]
    assert titles == ["Post-LN, Adam, lr_max 5e-4"] * 2 + ["Post-LN, Adam, lr_max 1e-3"] * 2
    assert [[line["label"] for line in p["lines"]] for p in spec["panels"]][0] == [
        "warm-up T = 4000", "warm-up T = 500", "no warm-up (T = 1)"]
    assert _lines_per_panel(out / "epochs.json") == [3, 3, 1, 1]
    # one y range per metric across the panels, so lr_max 5e-4 and 1e-3 compare by eye
    from pn_fairseq.analysis import epoch_figures

    fig = epoch_figures.plot(spec, "t")
    bleu_5e4, loss_5e4, bleu_1e3, loss_1e3 = (fig.axes[i] for i in (0, 2, 1, 3))
    assert bleu_1e3.get_ylim() == bleu_5e4.get_ylim() and bleu_5e4.get_ylim()[1] >= 34
    assert loss_1e3.get_ylim() == loss_5e4.get_ylim()
    alone = epoch_figures.plot(dict(spec, share_y=False), "t").axes
    assert alone[1].get_ylim() != alone[0].get_ylim()  # the data alone would give them different ranges


def test_one_row_from_two_configs_directories_is_told_apart_by_dash_and_legend(tmp_path):
    """The depth test draws postln-lr1e-3-warmup500 at 3+3 (multi30k-preln) and 6+6
    (multi30k-preln-6x6): one colour (one row), so the directory must set the dash and the legend."""
    from pn_fairseq.analysis import epoch_figures
    from pn_fairseq.analysis.logs import run_labels

    runs = [_fake_run(tmp_path, d, row, [10, 20, 30], [6, 5, 4]) for d in ("multi30k-preln", "multi30k-preln-6x6")
            for row in ("postln-lr1e-3-warmup500", "postln-radam")]
    for layout in ("runs", "figure2"):
        spec = epoch_figures.panels(epoch_figures.collect(run_labels(map(str, runs))), layout)
        for panel in spec["panels"]:
            lines = {(line["row"], line["run"].split(os.sep)[-2]): line for line in panel["lines"]}
            shallow, deep = lines["postln-lr1e-3-warmup500", "multi30k-preln"], lines["postln-lr1e-3-warmup500", "multi30k-preln-6x6"]
            assert shallow["color_key"] == deep["color_key"] and (shallow["style"], deep["style"]) == ("-", "--")
            assert shallow["label"].endswith("[multi30k-preln]") and deep["label"].endswith("[multi30k-preln-6x6]")
            assert "(" not in shallow["label"].replace("(T = 1)", "")  # the directory says it; no basename too
    fig = epoch_figures.plot(spec, "t")
    assert [line.get_linestyle() for line in fig.axes[0].get_lines()] == ["-", "--"]
    # One directory: RAdam keeps its dash, the legend no directory.
    one = epoch_figures.panels(epoch_figures.collect(run_labels(map(str, runs[:2]))), "runs")["panels"][0]["lines"]
    assert [(line["style"], "[" in line["label"]) for line in one] == [("-", False), ("--", False)]


def test_layout_without_its_rows_says_which_rows(tmp_path):
    runs = [_fake_run(tmp_path, "preln", "preln-nowarmup", [1, 2], [5, 4])]
    proc = subprocess.run([str(BIN / "pn-analyze"), "epochs", str(runs[0]), "--layout", "figure2", "--out",
                           str(tmp_path / "o")], capture_output=True, text=True)
    assert proc.returncode == 2 and "no run of figure2's rows among the runs given" in proc.stderr


def test_a_run_outside_the_layout_is_named_not_dropped_silently(tmp_path):
    runs = [_fake_run(tmp_path, "multi30k-preln", row, b, [5, 4, 3.9]) for row, b in FIG4.items()]
    runs.append(_fake_run(tmp_path, "multi30k-preln", "postln-nowarmup", [1, 3, 7], [8.6, 8.0, 7.7]))
    out = tmp_path / "out"
    proc = subprocess.run([str(BIN / "pn-analyze"), "epochs", *map(str, runs), "--layout", "figure4", "--out",
                           str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "[epochs] postln-nowarmup: not one of figure4's rows, left out of the figure (--layout runs draws " \
        "every run)" in proc.stderr
    spec = json.loads((out / "epochs.json").read_text())
    assert spec["left_out"] == ["postln-nowarmup"]
    assert "postln-nowarmup" not in spec["title"] and "postln-radam" in spec["title"]  # titled by what it draws
    assert [line["row"] for line in spec["panels"][0]["lines"]] == list(FIG4)


def test_a_long_title_stays_inside_the_figure(tmp_path):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from pn_fairseq.analysis.epoch_figures import collect, panels, plot

    rows = [*FIG2, "postln-lr1e-3-warmup500", "postln-lr1e-3-nowarmup"]  # Figure 2's Adam grid, six lines
    runs = [_fake_run(tmp_path, "multi30k-preln", row, [1, 2, 3], [5, 4, 3.9]) for row in rows]
    title = "validation BLEU and loss per epoch (figure2): " + ", ".join(rows)
    fig = plot(panels(collect([(None, str(r)) for r in runs]), "figure2"), title)
    renderer = FigureCanvasAgg(fig).get_renderer()
    box, page = fig._suptitle.get_window_extent(renderer), fig.bbox
    assert page.x0 <= box.x0 and box.x1 <= page.x1, (box, page)
    assert " ".join(fig._suptitle.get_text().split()) == title  # wrapped, nothing dropped


def test_legend_gives_a_scaled_runs_own_warmup_beside_the_papers(tmp_path):
    from pn_fairseq.analysis.epoch_figures import collect, panels

    scaled = _fake_run(tmp_path / "m", "multi30k-preln", "postln-warmup4k", [1, 2, 3], [5, 4, 3.9])
    (scaled / "train.cmd").write_text("fairseq-train data --lr 5e-4 --warmup-updates 440 --max-epoch 15\n")
    short = _fake_run(tmp_path / "m", "multi30k-preln", "postln-warmup500", [1, 2, 3], [5, 4, 3.9])
    (short / "train.cmd").write_text("fairseq-train data --warmup-updates=55\n")
    paper = _fake_run(tmp_path / "i", "preln", "postln-warmup4k", [1, 2, 3], [5, 4, 3.9])
    (paper / "train.cmd").write_text("fairseq-train data --warmup-updates 4000\n")
    bare = _fake_run(tmp_path / "b", "multi30k-preln", "postln-nowarmup", [1, 2, 3], [5, 4, 3.9])  # no train.cmd
    labels = lambda runs, layout: [line["label"] for line in panels(collect(runs), layout)["panels"][0]["lines"]]
    assert labels([(None, str(scaled)), (None, str(short)), (None, str(bare))], "figure2") == [
        "warm-up T = 4000 (440 updates here)", "warm-up T = 500 (55 updates here)", "no warm-up (T = 1)"]
    assert labels([(None, str(paper))], "figure2") == ["warm-up T = 4000"]
    assert labels([(None, str(scaled))], "figure4") == ["Post-LN Adam, lr 5e-4, warm-up T = 4000 (440 updates here)"]


def test_report_includes_the_epoch_figures(tmp_path):
    for row, b in FIG2.items():
        _fake_run(tmp_path / "checkpoints", "multi30k-preln", row, b, [5.0, 4.5, 4.0])
    _fake_run(tmp_path / "checkpoints", "multi30k-preln", "preln-nowarmup", [25, 33, 35], [5, 4, 3.9])
    out = tmp_path / "report"
    run("pn-analyze", "report", tmp_path / "checkpoints", "--out", out)
    page = (out / "report.html").read_text()
    for name in ("epochs-multi30k-preln-figure2.png", "epochs-multi30k-preln-figure4.png"):
        assert (out / name).is_file() and name in page
