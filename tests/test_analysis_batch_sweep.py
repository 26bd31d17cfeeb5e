"""pn-analyze batch-sweep: the row-driver commands (DRY_RUN=1) and the BLEU plot from results.json."""
import json
import shlex

import pytest

from pn_fairseq.cli.analyze import main
from pn_fairseq.norms import PowerNorm
from test_analysis_stats import write_log


@pytest.fixture
def pn_counts_updates(monkeypatch):
    """PN's warm-up counts optimizer updates (the layer has set_num_updates), whatever this checkout's PN does."""
    monkeypatch.setattr(PowerNorm, "set_num_updates", lambda self, n: None, raising=False)


def train_commands(stdout):
    return [shlex.split(line.split(" 2>&1 | tee")[0]) for line in stdout.splitlines()
            if line.startswith("fairseq-train ")]


def last_value(argv, flag):
    return argv[len(argv) - 1 - argv[::-1].index(flag) + 1]


def test_dry_run_prints_every_command(tmp_path, monkeypatch, capsys, pn_counts_updates):
    monkeypatch.setenv("DRY_RUN", "1")
    monkeypatch.setenv("EXTRA_ARGS", "--fp16")  # the user's own extra flags survive
    out = tmp_path / "sweep"
    assert main(["batch-sweep", "--dataset", "synthetic", "--rows", "preln,pn", "--out", str(out),
                 "--micro-tokens", "512,1024,2048", "--total-tokens", "2048"]) == 0
    captured = capsys.readouterr()
    commands = train_commands(captured.out)
    assert len(commands) == 6
    seen = set()
    for argv in commands:
        save_dir = last_value(argv, "--save-dir")
        row, micro = save_dir.split("/")[-2], int(save_dir.split("/")[-1][2:])
        assert save_dir == str(out / "runs" / row / f"mt{micro}")
        # the micro-batch comes last, so it overrides the config's --max-tokens 2048
        assert argv.count("--max-tokens") == 2 and last_value(argv, "--max-tokens") == str(micro)
        assert last_value(argv, "--update-freq") == str(2048 // micro)
        assert "--fp16" in argv
        seen.add((row, micro))
    assert seen == {(r, m) for r in ("preln", "pn") for m in (512, 1024, 2048)}
    assert captured.out.count("--update-freq 4") >= 2  # also in the "# run i/n" headers
    assert "ran none" in captured.err
    assert not out.exists()  # nothing trained, nothing written


def test_pn_with_accumulation_refused_without_update_counting(tmp_path, monkeypatch, capsys):
    monkeypatch.delattr(PowerNorm, "set_num_updates", raising=False)
    monkeypatch.setenv("DRY_RUN", "1")
    args = ["batch-sweep", "--dataset", "synthetic", "--out", str(tmp_path)]
    assert main(args + ["--rows", "preln,pn"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("pn-analyze batch-sweep: error: row 'pn' at 512 tokens needs --update-freq 8")
    assert "set_num_updates" in err[-1]
    # without accumulation PN is fine, and other rows are never refused
    assert main(args + ["--rows", "pn", "--micro-tokens", "4096"]) == 0
    assert main(args + ["--rows", "preln,bn,pnv"]) == 0


def result(row, bleu):
    return {"row": row, "dataset": "synthetic", "bleu_main": bleu,
            "bleu": {"fairseq": bleu, "sacrebleu_tok_none": bleu, "compound_split": None, "sacrebleu_detok": None},
            "sacrebleu_signature": None, "paper_bleu": None, "updates": 300, "wall_time_s": 60.0,
            "checkpoint": "checkpoint_last.pt", "run_dir": "x"}


def test_collect_plots_bleu_per_row(tmp_path, capsys, pn_counts_updates):
    bleu = {("preln", 512): 20.5, ("preln", 4096): 25.0, ("pn", 512): 22.25, ("pn", 4096): 24.0}
    # the validation loss at the run's last update (300), where its train.log has one; a later
    # line for the same update wins (a resumed run), and other updates are not taken
    loss = {("preln", 512): 4.25, ("pn", 512): 4.5, ("pn", 4096): 4.125}
    for (row, micro), value in bleu.items():
        run = tmp_path / "runs" / row / f"mt{micro}"
        run.mkdir(parents=True)
        (run / "results.json").write_text(json.dumps(result(row, value)))
        if (row, micro) in loss:
            write_log(run / "train.log", [], valid=[{"valid_loss": "9.0", "valid_num_updates": "300"},
                                                   {"valid_loss": "5.0", "valid_num_updates": "250"},
                                                   {"valid_loss": str(loss[(row, micro)]), "valid_num_updates": "300"}])
    assert main(["batch-sweep", "--dataset", "synthetic", "--rows", "preln,pn", "--out", str(tmp_path),
                 "--micro-tokens", "512,1024,4096", "--collect-only"]) == 0
    data = json.loads((tmp_path / "batch-sweep.json").read_text())
    assert (tmp_path / "batch-sweep.png").stat().st_size > 1000
    for row in ("preln", "pn"):
        points = {p["micro_tokens"]: (p["bleu"], p["update_freq"], p["valid_loss"]) for p in data["rows"][row]}
        assert points == {512: (bleu[(row, 512)], 8, loss.get((row, 512))), 1024: (None, 4, None),
                          4096: (bleu[(row, 4096)], 1, loss.get((row, 4096)))}
        # relative to the JSON's directory: the sweep can be moved (results/ is committed)
        assert [p["run_dir"] for p in data["rows"][row]] == [f"runs/{row}/mt{m}" for m in (512, 1024, 4096)]
    captured = capsys.readouterr()
    assert captured.err.count("no results.json yet") == 2
    assert "| pn | 512 | 8 | 22.25 | 4.500 |" in captured.out and "| preln | 4096 | 1 | 25.00 | — |" in captured.out
    assert "| pn | 1024 | 4 | — | — |" in captured.out


def test_sweep_figure_has_a_loss_panel_where_runs_logged_one(pn_counts_updates):
    from pn_fairseq.analysis.plotting import plot_batch_sweep

    rows = {"pn": [{"micro_tokens": 512, "bleu": 30.0, "valid_loss": 4.5},
                   {"micro_tokens": 4096, "bleu": 31.0, "valid_loss": 4.7}],
            "preln": [{"micro_tokens": 512, "bleu": 29.0, "valid_loss": None},
                      {"micro_tokens": 4096, "bleu": 31.5, "valid_loss": 4.6}]}
    fig = plot_batch_sweep({"total_tokens": 4096, "rows": rows}, "t")
    bleu_ax, loss_ax = fig.axes
    assert bleu_ax.get_ylim()[0] == 0 and loss_ax.get_ylim()[0] > 4  # the loss axis is not pinned to 0
    drawn = {line.get_label(): list(zip(line.get_xdata(), line.get_ydata())) for line in loss_ax.get_lines()}
    assert drawn == {"pn": [(512, 4.5), (4096, 4.7)], "preln": [(4096, 4.6)]}
    no_loss = {row: [dict(p, valid_loss=None) for p in entry] for row, entry in rows.items()}
    assert len(plot_batch_sweep({"total_tokens": 4096, "rows": no_loss}, "t").axes) == 1


@pytest.mark.parametrize("args, expected", [
    (["--dataset", "nope", "--rows", "pn"], "unknown dataset 'nope'"),
    (["--dataset", "synthetic", "--rows", "preln,ln"], "unknown row 'ln' for synthetic"),
    (["--dataset", "synthetic", "--rows", "preln", "--micro-tokens", "3000"], "does not divide"),
])
def test_bad_input_is_one_line(tmp_path, capsys, args, expected):
    assert main(["batch-sweep", *args, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pn-analyze batch-sweep: error: ") and expected in err[0]


def test_runs_go_through_the_driver_and_resume(tmp_path, monkeypatch, capsys, pn_counts_updates):
    """A stand-in row driver records its environment and writes results.json (BLEU = 20 + UPDATE_FREQ);
    a second sweep finds every run finished, as the real driver reports."""
    from pn_fairseq.analysis import batch_sweep

    driver = tmp_path / "driver.sh"
    driver.write_text(
        '#!/usr/bin/env bash\nset -e\n'
        'echo "$1 $2 $UPDATE_FREQ $EXTRA_ARGS" >> "$CALLS"\n'
        '[[ -f $SAVE_DIR/results.json ]] && exit 0\n'
        'mkdir -p "$SAVE_DIR"\n'
        'printf \'{"row": "%s", "dataset": "synthetic", "bleu_main": %s, "bleu": {"fairseq": null, '
        '"sacrebleu_tok_none": null, "compound_split": null, "sacrebleu_detok": null}, "sacrebleu_signature": null, '
        '"paper_bleu": null, "updates": 3, "wall_time_s": 1.0, "checkpoint": "c.pt", "run_dir": "r"}\' '
        '"$2" $((20 + UPDATE_FREQ)) > "$SAVE_DIR/results.json"\n')
    monkeypatch.setattr(batch_sweep, "DRIVER", str(driver))
    monkeypatch.setenv("CALLS", str(tmp_path / "calls"))
    monkeypatch.delenv("DRY_RUN", raising=False)
    args = ["batch-sweep", "--dataset", "synthetic", "--rows", "bn,pn", "--out", str(tmp_path / "out"),
            "--micro-tokens", "1024,2048", "--total-tokens", "2048"]
    for _ in range(2):
        assert main(args) == 0
    calls = (tmp_path / "calls").read_text().splitlines()
    assert calls[:4] == ["synthetic bn 2 --max-tokens 1024", "synthetic bn 1 --max-tokens 2048",
                         "synthetic pn 2 --max-tokens 1024", "synthetic pn 1 --max-tokens 2048"]
    assert calls[4:] == calls[:4]
    data = json.loads((tmp_path / "out" / "batch-sweep.json").read_text())
    assert [(p["micro_tokens"], p["bleu"]) for p in data["rows"]["pn"]] == [(1024, 22), (2048, 21)]
    assert "[batch-sweep] run 4/4: pn, micro-batch 2048 tokens, --update-freq 1" in capsys.readouterr().err


def test_failed_run_is_one_line(tmp_path, monkeypatch, capsys, pn_counts_updates):
    from pn_fairseq.analysis import batch_sweep

    driver = tmp_path / "driver.sh"
    driver.write_text("#!/usr/bin/env bash\nexit 3\n")
    monkeypatch.setattr(batch_sweep, "DRIVER", str(driver))
    monkeypatch.delenv("DRY_RUN", raising=False)
    assert main(["batch-sweep", "--dataset", "synthetic", "--rows", "preln", "--out", str(tmp_path / "o"),
                 "--micro-tokens", "4096"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("pn-analyze batch-sweep: error: run 1/1: preln, micro-batch 4096 tokens")
    assert "failed (exit 3)" in err[-1]
