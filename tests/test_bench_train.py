"""bench/bench_train.py's helpers: the models it trains are the row scripts' models, and
words/s comes out of fairseq's log as intended. No timing: the benchmark itself is not run."""
import importlib.util
import os
import shlex
import subprocess

import pytest

from conftest import REPO

_spec = importlib.util.spec_from_file_location("bench_train", REPO / "bench" / "bench_train.py")
bench_train = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_train)

CONFIGS = REPO / "configs" / "multi30k"

# fairseq-train --log-format json --log-interval 1 output (a synthetic-corpus run), with a
# line of another kind in between.
LOG = """\
2026-11-25 06:03:28 | INFO | train_inner | {"epoch": 1, "update": 0.012, "loss": "13.471", "wps": "0", "ups": "0", "wpb": "2272", "bsz": "224", "num_updates": "1", "wall": "4"}
2026-11-25 06:03:31 | INFO | train_inner | {"epoch": 1, "update": 0.024, "loss": "9.779", "wps": "1186.5", "ups": "0.44", "wpb": "2707", "bsz": "408", "num_updates": "2", "wall": "6"}
2026-11-25 06:03:33 | INFO | train_inner | {"epoch": 1, "update": 0.036, "loss": "10.19", "wps": "1394.4", "ups": "0.46", "wpb": "3029", "bsz": "136", "num_updates": "3", "wall": "9"}
2026-11-25 06:03:33 | INFO | fairseq.trainer | NOTE: something else
2026-11-25 06:03:34 | INFO | train_inner | {"epoch": 1, "update": 0.048, "loss": "9.555", "wps": "2047.9", "ups": "0.65", "wpb": "3174", "bsz": "192", "num_updates": "4", "wall": "10"}
2026-11-25 06:03:38 | INFO | train | {"epoch": 1, "train_loss": "10.073", "train_wps": "1582.8", "train_wpb": "2902.3", "train_num_updates": "4"}
""".splitlines()


def test_row_args_are_what_run_row_sh_passes(tmp_path):
    """The same arguments, in the same order and quoting, as scripts/run_row.sh's training command."""
    for row in ("preln", "pn", "pn-nogroup"):
        args = bench_train.row_args(CONFIGS, row)
        dry = subprocess.run(["bash", str(REPO / "scripts" / "run_row.sh"), "multi30k", row], capture_output=True,
                             text=True, env={**os.environ, "DRY_RUN": "1", "SAVE_DIR": str(tmp_path / row)}, check=True)
        train_cmd = shlex.split(dry.stdout.splitlines()[0])
        start = train_cmd.index("--arch")
        assert train_cmd[start:start + len(args)] == args, row


def test_row_args_content():
    args = bench_train.row_args(CONFIGS, "pn-nogroup")
    assert args[:2] == ["--arch", "transformer_pn"]
    i = args.index("--adam-betas")
    assert args[i + 1] == "(0.9, 0.98)"  # one argument, as bash passes it
    assert args[-2:] == ["--pn-groups", "0"]  # ROW_ARGS last


def test_unknown_row_names_the_rows():
    with pytest.raises(SystemExit, match="unknown row 'nope'.*pnv"):
        bench_train.row_args(CONFIGS, "nope")


def test_words_per_second_skips_warmup_and_weights_by_length():
    records = bench_train.train_records(LOG)
    assert [r["num_updates"] for r in records] == ["1", "2", "3", "4"]  # the epoch summary is not one
    speed, n = bench_train.words_per_second(records, skip=2)
    assert n == 2
    assert speed == pytest.approx((3029 + 3174) / (3029 / 1394.4 + 3174 / 2047.9))


def test_words_per_second_errors():
    records = bench_train.train_records(LOG)
    with pytest.raises(ValueError, match="no update after the 4 warm-up"):
        bench_train.words_per_second(records, skip=4)
    with pytest.raises(ValueError, match="wps 0"):  # the first line has no speed yet
        bench_train.words_per_second(records, skip=0)


def test_verdicts():
    assert bench_train.verdict("pn", 0.95) == ">= 0.95 PASS"
    assert bench_train.verdict("pn", 0.949) == ">= 0.95 MISS"
    assert bench_train.verdict("bn", 0.93) == ">= 0.93 PASS"
    assert bench_train.verdict("pnv", 0.9) == ">= 0.93 MISS"
    assert bench_train.verdict("pn+eager", 0.5) == ""  # compared, no target
    assert bench_train.verdict("preln", 1.0) == ""


def test_rounds_alternate_the_order():
    labels = ["preln", "bn", "pn"]
    assert bench_train.round_order(labels, 0) == labels
    assert bench_train.round_order(labels, 1) == labels[::-1]


def test_child_report():
    lines = ["x", bench_train.CHILD_REPORT + '{"cuda_max_allocated": 1234}']
    assert bench_train.child_peak_cuda(lines) == 1234
    assert bench_train.child_peak_cuda(["x"]) is None


def test_language_model_rows_are_the_lm_driver_models(tmp_path):
    """configs/lm-multi30k: the same arguments as scripts/run_lm_row.sh's training command."""
    for row in ("postln", "rms", "pn-nogroup"):
        args = bench_train.row_args(REPO / "configs" / "lm-multi30k", row)
        dry = subprocess.run(["bash", str(REPO / "scripts" / "run_lm_row.sh"), "lm-multi30k", row], capture_output=True,
                             text=True, env={**os.environ, "DRY_RUN": "1", "SAVE_DIR": str(tmp_path / row)}, check=True)
        train_cmd = shlex.split(dry.stdout.splitlines()[0])
        start = train_cmd.index("--arch")
        # run_lm_row.sh passes --arch, TRAIN_ARGS, ROW_ARGS in that order, as row_args returns them
        assert train_cmd[start:start + len(args)] == args, row


@pytest.mark.parametrize("label, ratio, expected", [
    ("rms", 0.96, ">= 0.95 PASS"), ("rms", 0.94, ">= 0.95 MISS"), ("preln-pn", 0.94, ">= 0.95 MISS"),
    ("preln-bn", 0.94, ">= 0.93 PASS"), ("pn+eager", 0.5, ""), ("postln", 1.0, ""), ("pn-nogroup", 0.5, ""),
])
def test_targets_follow_the_norm_of_a_placement_row_name(label, ratio, expected):
    assert bench_train.verdict(label, ratio) == expected
