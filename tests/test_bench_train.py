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


BERT = REPO / "configs" / "bert-multi30k"
# The driver's environment knobs that change its command; a dry run without them is the row's default run.
DRIVER_ENV = ("MAX_UPDATE", "VALIDATE_INTERVAL", "SEED", "SEEDS", "EXTRA_ARGS", "CPU", "LOG_INTERVAL", "DATA")


def mlm_dry_run(row, save_dir):
    """The fairseq-train command `DRY_RUN=1 bash scripts/bert-multi30k/<row>.sh` prints, as words."""
    env = {k: v for k, v in os.environ.items() if k not in DRIVER_ENV}
    dry = subprocess.run(["bash", str(REPO / "scripts" / "bert-multi30k" / f"{row}.sh")], capture_output=True,
                         text=True, env={**env, "DRY_RUN": "1", "SAVE_DIR": str(save_dir)}, check=True)
    line = next(line for line in dry.stdout.splitlines() if line.startswith("fairseq-train "))
    return shlex.split(line.split(" 2>&1 | tee")[0])


@pytest.mark.parametrize("row", ["preln-pn", "preln-nowarmup", "postln-warmup"])
def test_bert_rows_are_the_mlm_driver_models(tmp_path, row):
    """configs/bert-multi30k (recipe): the arguments of scripts/run_mlm_row.sh's training command,
    from --task up to --save-dir, which the driver puts after the row's settings."""
    args = bench_train.row_args(BERT, row)
    train_cmd = mlm_dry_run(row, tmp_path / row)
    assert train_cmd[train_cmd.index("--task"):train_cmd.index("--save-dir")] == args
    # The flags a speed run depends on, against the values in configs/bert-multi30k: masked LM,
    # the model, the batch, and the full run's linear schedule (1,200 updates; postln warms up 1%).
    flags = {f: bench_train.flag_value(args, f) for f in ("--task", "--criterion", "--arch", "--max-tokens",
                                                          "--total-num-update", "--warmup-updates", "--adam-betas")}
    assert flags == {"--task": "masked_lm_pn", "--criterion": "masked_lm",
                     "--arch": "roberta_pn_small" if row.startswith("postln") else "roberta_pn_prenorm_small",
                     "--max-tokens": "4096", "--total-num-update": "1200",
                     "--warmup-updates": "12" if row == "postln-warmup" else "0", "--adam-betas": "(0.9, 0.999)"}
    assert bench_train.flag_value(args, "--norm-type") == ("power" if row == "preln-pn" else None)


def test_bench_run_keeps_the_rows_schedule_but_stops_early(tmp_path):
    """The bench's --max-update wins over the row's 1,200; --total-num-update stays the row's, so the
    LR of the measured updates is the full run's."""
    cmd = bench_train.child_args(["data", "--seed", "1"], bench_train.row_args(BERT, "preln-pn"), 13,
                                 tmp_path / "ckpt", ["--fp16"])
    assert bench_train.flag_value(cmd, "--max-update") == "13"
    assert bench_train.flag_value(cmd, "--total-num-update") == "1200"
    assert cmd[-3:] == ["--save-dir", str(tmp_path / "ckpt"), "--fp16"]  # --extra last


def test_bert_unknown_row_is_a_one_line_error():
    with pytest.raises(SystemExit) as e:
        bench_train.row_args(BERT, "preln-rms")
    message = str(e.value)
    assert "\n" not in message
    assert "unknown row 'preln-rms'" in message
    assert "preln-nowarmup preln-pn preln-pnv" in message  # the rows there, sorted


def test_a_bad_recipe_is_the_drivers_error(tmp_path):
    """recipe comes from scripts/recipe_lib.sh, as in the driver: its check of the source comment too."""
    (tmp_path / "common.conf").write_text("DEFAULT_MAX_UPDATE=10\nDEFAULT_VALIDATE_INTERVAL=5\n")
    (tmp_path / "x.conf").write_text("recipe --arch roberta_pn_small\nWARMUP_PERCENT=0\n")
    with pytest.raises(SystemExit, match=r"recipe --arch roberta_pn_small: the last argument must be its source"):
        bench_train.row_args(tmp_path, "x")
    (tmp_path / "x.conf").write_text("recipe --arch roberta_pn_small '# why'\nWARMUP_PERCENT=half\n")
    with pytest.raises(SystemExit, match=r"x.conf: WARMUP_PERCENT=half is not a whole percentage"):
        bench_train.row_args(tmp_path, "x")


def test_default_data_of_a_monolingual_set(tmp_path):
    (tmp_path / "common.conf").write_text("DATASET_DIR=no-such-data.en\nDATA_PREP=no-such\n")
    (tmp_path / "x.conf").write_text("ARCH=a\n")
    with pytest.raises(SystemExit, match=r"no binarized data at .*data-bin/no-such-data.en: run "
                                         r"`bash data-prep/prepare-no-such.sh`, or pass --data DIR"):
        bench_train.default_data(tmp_path, "x")


def test_eager_and_targets_follow_the_norm():
    assert [bench_train.norm_of(r) for r in ("preln-bn", "preln-pnv", "preln-pn", "preln-nowarmup", "pn",
                                             "pn-nogroup", "pn+eager")] == ["bn", "pnv", "pn", None, "pn", None, None]
