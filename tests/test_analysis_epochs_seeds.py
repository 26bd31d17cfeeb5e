"""pn-analyze epochs with several seeds of a row: their mean per epoch and a band (min-max or +- std),
read back from the JSON written beside the PNG and compared with values computed here by hand."""
import json
import math
import subprocess

import pytest

from conftest import BIN

# epoch -> value per seed; seed 3 stopped after epoch 3 (epoch 4 missing).
BLEU = {1: [10, 20, 30, 34], 2: [12, 19, 33, 35], 3: [8, 24, 27]}
LOSS = {1: [6.0, 5.0, 4.5, 4.2], 2: [5.8, 5.1, 4.4, 4.1], 3: [6.3, 4.9, 4.6]}
# By hand: epoch 1: 10, 12, 8; epoch 2: 20, 19, 24; epoch 3: 30, 33, 27; epoch 4: 34, 35.
BLEU_MEAN = [10, 21, 30, 34.5]
BLEU_MIN, BLEU_MAX = [8, 19, 27, 34], [12, 24, 33, 35]
BLEU_STD = [2, math.sqrt(7), 3, math.sqrt(0.5)]  # squared deviations (4+0+4)/2, (1+4+9)/2, (0+9+9)/2, (.25+.25)/1
LOSS_MEAN = [(6.0 + 5.8 + 6.3) / 3, 5.0, (4.5 + 4.4 + 4.6) / 3, 4.15]


def seed_runs(root, bleu=BLEU, loss=LOSS):
    """<root>/<seed k>/train.log with one validation line per epoch, as fairseq logs them."""
    dirs = []
    for seed, bleus in bleu.items():
        run = root / f"seed{seed}"
        run.mkdir(parents=True)
        lines = [f'2026-01-01 | INFO | valid | {{"epoch": {e}, "valid_loss": "{l}", "valid_bleu": "{b}", '
                 f'"valid_num_updates": "{121 * e}"}}' for e, (b, l) in enumerate(zip(bleus, loss[seed]), 1)]
        (run / "train.log").write_text("\n".join(lines) + "\n")
        dirs.append(run)
    return dirs


def analyze(*args):
    proc = subprocess.run([str(BIN / "pn-analyze"), "epochs", *map(str, args)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return proc


def test_a_row_directory_is_drawn_as_the_mean_of_its_seeds_with_a_min_max_band(tmp_path):
    row = tmp_path / "multi30k-converged" / "pn"
    seed_runs(row)
    out = tmp_path / "out"
    proc = analyze(row, "--out", out)
    spec = json.loads((out / "epochs.json").read_text())
    bleu, loss = (panel["lines"] for panel in spec["panels"])
    assert len(bleu) == len(loss) == 1  # one line for the row, not one per seed
    line = bleu[0]
    assert line["label"] == "pn" and line["seeds"] == ["pn/seed1", "pn/seed2", "pn/seed3"]
    assert line["epochs"] == [1, 2, 3, 4]
    assert line["values"] == pytest.approx(BLEU_MEAN)
    assert line["band"]["kind"] == "min-max"
    assert line["band"]["lo"] == pytest.approx(BLEU_MIN) and line["band"]["hi"] == pytest.approx(BLEU_MAX)
    assert line["std"] == pytest.approx(BLEU_STD)
    assert loss[0]["values"] == pytest.approx(LOSS_MEAN)
    assert loss[0]["band"]["lo"] == pytest.approx([5.8, 4.9, 4.4, 4.1])
    assert loss[0]["band"]["hi"] == pytest.approx([6.3, 5.1, 4.6, 4.2])
    # seed 3 lacks epoch 4: averaged over the two seeds that have it, and said so
    assert line["n_seeds"] == [3, 3, 3, 2] and line["partial"] == [4]
    assert line["seed_values"][2] == [8, 24, 27, None]
    assert "pn: epoch 4: 2 of 3 seeds: those epochs' mean and band are over the seeds that have them" in proc.stderr
    assert spec["band"] == "min-max"
    # the printed table: epoch 4 over 2 seeds, mean and band
    assert "    4      2" in proc.stdout and "34.50 [34.00, 35.00]" in proc.stdout
    png = (out / "epochs.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_figure_draws_what_the_json_says(tmp_path):
    from matplotlib.collections import PathCollection, PolyCollection

    from pn_fairseq.analysis import epoch_figures

    seed_runs(tmp_path / "pn")
    pairs, notes = epoch_figures.expand_row_dirs([("pn", str(tmp_path / "pn"))])
    assert notes == [] and [label for label, _ in pairs] == ["pn/seed1", "pn/seed2", "pn/seed3"]
    runs = epoch_figures.group_seeds(epoch_figures.collect(pairs), "std")
    fig = epoch_figures.plot(epoch_figures.panels(runs, "runs"), "t")
    ax = fig.axes[0]  # BLEU
    (mean,) = ax.get_lines()
    assert list(mean.get_ydata()) == pytest.approx(BLEU_MEAN)
    (band,) = [c for c in ax.collections if isinstance(c, PolyCollection)]
    ys = band.get_paths()[0].vertices[:, 1]
    for epoch, (m, sd) in enumerate(zip(BLEU_MEAN, BLEU_STD), 1):
        xs = band.get_paths()[0].vertices[:, 0]
        at = sorted(y for x, y in zip(xs, ys) if x == epoch)
        assert at[0] == pytest.approx(m - sd) and at[-1] == pytest.approx(m + sd)
    (open_markers,) = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert open_markers.get_offsets().tolist() == [[4, 34.5]]  # the epoch only two seeds have
    assert "mean of 3 seeds, ± std band; open markers: epoch 4: 2 of 3 seeds" in ax.get_legend().get_texts()[0].get_text()


def test_seed_directories_given_one_by_one_with_the_std_band(tmp_path):
    pn = seed_runs(tmp_path / "pn")
    bn = seed_runs(tmp_path / "bn", {1: [5, 6], 2: [7, 9]}, {1: [7.0, 6.0], 2: [6.5, 6.1]})
    single = seed_runs(tmp_path / "preln", {1: [11, 21]}, {1: [5.5, 5.0]})  # one seed: a plain line
    out = tmp_path / "out"
    analyze(*pn, *bn, *single, "--band", "std", "--out", out)
    spec = json.loads((out / "epochs.json").read_text())
    lines = spec["panels"][0]["lines"]
    assert [line["label"] for line in lines] == ["pn", "bn", "preln/seed1"]
    assert lines[0]["band"]["lo"] == pytest.approx([m - s for m, s in zip(BLEU_MEAN, BLEU_STD)])
    assert lines[0]["band"]["hi"] == pytest.approx([m + s for m, s in zip(BLEU_MEAN, BLEU_STD)])
    # bn: epoch 1 5, 7 -> 6 +- sqrt(2); epoch 2 6, 9 -> 7.5 +- sqrt(4.5)
    assert lines[1]["values"] == pytest.approx([6, 7.5]) and lines[1]["std"] == pytest.approx([2 ** .5, 4.5 ** .5])
    assert lines[1]["partial"] == []
    assert "band" not in lines[2] and lines[2]["values"] == [11, 21]


def test_band_none_draws_every_seed_and_a_seed_without_log_is_named(tmp_path):
    seed_runs(tmp_path / "pn")
    (tmp_path / "pn" / "seed4").mkdir()  # never started (or lost with its machine)
    out = tmp_path / "out"
    proc = analyze(tmp_path / "pn", "--band", "none", "--out", out)
    assert f"{tmp_path / 'pn' / 'seed4'}: no train.log, left out of pn's seeds" in proc.stderr
    lines = json.loads((out / "epochs.json").read_text())["panels"][0]["lines"]
    assert [line["values"] for line in lines] == [BLEU[1], BLEU[2], BLEU[3]]


def test_one_std_epoch_of_a_single_seed_has_no_band(tmp_path):
    from pn_fairseq.analysis.epoch_figures import seed_stats

    scores = [[{"epoch": 1, "bleu": 3.0}, {"epoch": 2, "bleu": 5.0}], [{"epoch": 1, "bleu": 4.0}]]
    stats = seed_stats(scores, "bleu", "std")
    assert [(s["n"], s["mean"], s["lo"], s["hi"], s["std"]) for s in stats][1] == (1, 5.0, 5.0, 5.0, None)
    assert stats[0]["std"] == pytest.approx(0.5 ** .5)


def test_a_seed_given_twice_is_an_error(tmp_path):
    runs = seed_runs(tmp_path / "pn")
    proc = subprocess.run([str(BIN / "pn-analyze"), "epochs", str(runs[0]), str(runs[0]), str(runs[1]),
                           "--out", str(tmp_path / "o")], capture_output=True, text=True)
    assert proc.returncode == 2 and "given twice" in proc.stderr


def test_report_draws_a_rows_seeds_as_one_band(tmp_path, monkeypatch):
    from pn_fairseq.analysis import epoch_figures

    drawn = []
    plot = epoch_figures.plot
    monkeypatch.setattr(epoch_figures, "plot", lambda spec, title: drawn.append(spec) or plot(spec, title))
    runs = seed_runs(tmp_path / "checkpoints" / "multi30k-preln" / "postln-warmup4k")
    written = epoch_figures.report_figures([(f"s{i}", str(r / "train.log")) for i, r in enumerate(runs)],
                                           str(tmp_path / "out"))
    assert [p.rsplit("/", 1)[1] for p in written] == ["epochs-multi30k-preln-figure2.png",
                                                       "epochs-multi30k-preln-figure4.png"]
    for spec in drawn:
        (line,) = spec["panels"][0]["lines"]
        assert line["values"] == pytest.approx(BLEU_MEAN) and line["band"]["hi"] == pytest.approx(BLEU_MAX)


def test_from_epoch_draws_the_later_epochs_only_and_refuses_an_epoch_past_the_runs(tmp_path):
    row = tmp_path / "pn"
    seed_runs(row)
    out = tmp_path / "out"
    proc = analyze(row, "--band", "std", "--from-epoch", "3", "--out", out)
    assert "epochs-from3.png" in proc.stdout and (out / "epochs-from3.png").stat().st_size > 0
    assert not (out / "epochs.png").exists()
    spec = json.loads((out / "epochs-from3.json").read_text())
    assert "from epoch 3" in spec["title"] and spec["from_epoch"] == 3
    bleu, loss = (panel["lines"][0] for panel in spec["panels"])
    assert bleu["epochs"] == loss["epochs"] == [3, 4]
    assert bleu["values"] == pytest.approx(BLEU_MEAN[2:]) and bleu["std"] == pytest.approx(BLEU_STD[2:])
    assert bleu["band"]["lo"] == pytest.approx([BLEU_MEAN[2] - 3, 34.5 - math.sqrt(0.5)])
    assert loss["values"] == pytest.approx(LOSS_MEAN[2:]) and bleu["n_seeds"] == [3, 2] and bleu["partial"] == [4]
    assert bleu["seed_values"] == [[30, 34], [33, 35], [27, None]]
    # the printed tables keep every epoch
    assert "    1 " in proc.stdout
    # zoomed in: the BLEU axis is cut near the drawn values, not started at 0 as in epochs.png
    from pn_fairseq.analysis.epoch_figures import plot
    assert plot(spec, spec["title"]).axes[0].get_ylim()[0] > 20
    spec.pop("from_epoch")
    assert plot(spec, spec["title"]).axes[0].get_ylim()[0] == 0
    for bad, says in (("5", "no run logged a validation at epoch 5 or later"), ("0", "epochs count from 1")):
        failed = subprocess.run([str(BIN / "pn-analyze"), "epochs", str(row), "--from-epoch", bad, "--out",
                                 str(tmp_path / "o")], capture_output=True, text=True)
        assert failed.returncode == 2 and says in failed.stderr and "Traceback" not in failed.stderr
