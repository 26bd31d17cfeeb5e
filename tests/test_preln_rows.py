"""The Pre-LN paper's rows (configs/preln, configs/multi30k-preln, configs/wmt14-preln): DRY_RUN
prints the paper's schedule; the schedules give the paper's learning rates update by update."""
import json
import math
import re

import pytest
import torch
from omegaconf import OmegaConf

from fairseq import options
from fairseq.dataclass.utils import convert_namespace_to_omegaconf
from fairseq.optim import build_optimizer
from fairseq.optim.lr_scheduler import build_lr_scheduler

import pn_fairseq  # noqa: F401  (registers radam, warmup_rsqrt, epoch_rsqrt)
from pn_fairseq.optim.preln_schedules import EpochRsqrtConfig, EpochRsqrtSchedule
from pn_fairseq.evaluation.results import ROWS as RESULT_ROWS

from conftest import REPO, run
from test_row_scripts import dry_run, flags

ADAM, SGD, RADAM = "adam", "sgd", "radam"
# row -> (Pre-LN?, optimizer, lr_max, scheduler, warm-up T at IWSLT14 scale or None, paper BLEU)
# (Sec. 3.2, 3.4, 4.1 and App. H of arXiv 2002.04745; docs/preln.md).
IWSLT_ROWS = {
    "postln-warmup4k": (False, ADAM, "5e-4", "warmup_rsqrt", 4000, "34.0"),
    "postln-warmup500": (False, ADAM, "5e-4", "warmup_rsqrt", 500, "31.16"),
    "postln-nowarmup": (False, ADAM, "5e-4", "warmup_rsqrt", 1, ""),
    "postln-lr1e-3-warmup4k": (False, ADAM, "1e-3", "warmup_rsqrt", 4000, "34.0"),
    "postln-lr1e-3-warmup500": (False, ADAM, "1e-3", "warmup_rsqrt", 500, "2.77"),
    "postln-lr1e-3-nowarmup": (False, ADAM, "1e-3", "warmup_rsqrt", 1, "8.45"),
    "postln-sgd-lr5e-3-warmup4k": (False, SGD, "5e-3", "warmup_rsqrt", 4000, ""),
    "postln-sgd-lr5e-3-nowarmup": (False, SGD, "5e-3", "warmup_rsqrt", 1, ""),
    "postln-sgd-lr1e-3-warmup4k": (False, SGD, "1e-3", "warmup_rsqrt", 4000, ""),
    "postln-sgd-lr1e-3-nowarmup": (False, SGD, "1e-3", "warmup_rsqrt", 1, ""),
    "postln-fixed1e-4": (False, ADAM, "1e-4", "fixed", None, ""),
    "preln-nowarmup": (True, ADAM, "5e-4", "epoch_step", None, "34.0"),
    "preln-warmup4k": (True, ADAM, "5e-4", "warmup_rsqrt", 4000, ""),
    "postln-radam": (False, RADAM, "5e-4", "polynomial_decay", None, ""),
    "preln-radam": (True, RADAM, "5e-4", "polynomial_decay", None, ""),
}
WMT_ROWS = {
    "preln-lr7e-4-nowarmup": (True, "7e-4", "epoch_rsqrt"),
    "preln-lr1.5e-3-nowarmup": (True, "1.5e-3", "epoch_rsqrt"),
    "postln-lr7e-4-warmup4k": (False, "7e-4", "warmup_rsqrt"),
    "postln-lr1.5e-3-warmup4k": (False, "1.5e-3", "warmup_rsqrt"),
}
MULTI30K_EPOCH = 121  # updates an epoch, Multi30k at 4,096 tokens (test_multi30k_epoch_size measures it)
IWSLT_EPOCH = 1100


def rows_of(configs):
    return sorted(p.stem for p in (REPO / "configs" / configs).glob("*.conf") if p.stem != "common")


def test_every_row_is_tested_and_has_a_script():
    assert rows_of("preln") == sorted(IWSLT_ROWS)
    assert rows_of("multi30k-preln") == sorted(IWSLT_ROWS)
    assert rows_of("wmt14-preln") == sorted(WMT_ROWS)
    for configs, rows in (("preln", IWSLT_ROWS), ("multi30k-preln", IWSLT_ROWS), ("wmt14-preln", WMT_ROWS)):
        for row in rows:
            assert (REPO / "scripts" / configs / f"{row}.sh").is_file(), f"scripts/{configs}/{row}.sh"
            assert row in RESULT_ROWS  # results.json accepts the row


@pytest.mark.parametrize("configs", ["preln", "multi30k-preln"])
@pytest.mark.parametrize("row", list(IWSLT_ROWS))
def test_dry_run_prints_the_papers_schedule(configs, row):
    pre, optimizer, lr, scheduler, T, paper = IWSLT_ROWS[row]
    cmds = dry_run(f"{configs}/{row}.sh")
    train = flags(cmds["fairseq-train"])
    argv = cmds["fairseq-train"]
    multi30k = configs == "multi30k-preln"
    norm = "preln" if pre else "postln"
    assert train["--arch"] == (f"transformer_{norm}" if multi30k else f"transformer_{norm}_iwslt_de_en")
    assert (train["--optimizer"], train["--lr"], train["--lr-scheduler"]) == (optimizer, lr, scheduler)
    if T is None:
        assert "--warmup-updates" not in train
    else:  # the paper's T, scaled by the ratio of epoch sizes at Multi30k (at least 1)
        expected = max(1, round(T * MULTI30K_EPOCH / IWSLT_EPOCH)) if multi30k else T
        assert train["--warmup-updates"] == str(expected)
    # Adam's and RAdam's betas (0.9, 0.98); the SGD rows carry no Adam flag and no momentum.
    if optimizer == SGD:
        assert not any(a.startswith("--adam") for a in argv) and train["--momentum"] == "0.0"
    else:
        assert train["--adam-betas"] == "(0.9, 0.98)"
    if scheduler == "epoch_step":
        assert (train["--lr-decay-epochs"], train["--lr-decay-factor"]) == ("8", "0.1")
    if scheduler == "polynomial_decay":  # linear decay to 0 over the run's epochs
        epochs, per_epoch = (20, MULTI30K_EPOCH) if multi30k else (30, IWSLT_EPOCH)
        assert (train["--power"], train["--end-learning-rate"], train["--total-num-update"]) == (
            "1", "0.0", str(epochs * per_epoch))
        assert train["--max-epoch"] == str(epochs)
    for flag, value in {"--dropout": "0.1", "--label-smoothing": "0.1", "--max-tokens": "4096",
                        "--required-batch-size-multiple": "1"}.items():
        assert train[flag] == value, flag
    # Validation BLEU every epoch with the row's decoding settings (App. A.1; Multi30k's own).
    beam, lenpen = ("5", "1.0") if multi30k else ("5", "1.2")
    cap = {"max_len_b": 60} if multi30k else {}  # Multi30k: no sentence is longer than 50 tokens
    assert json.loads(train["--eval-bleu-args"]) == {"beam": int(beam), "lenpen": float(lenpen), **cap}
    assert train["--eval-bleu"] is True and train["--eval-tokenized-bleu"] is True
    gen = flags(cmds["fairseq-generate"])
    assert (gen["--beam"], gen["--lenpen"]) == (beam, lenpen)
    if multi30k:
        assert (train["--encoder-layers"], train["--decoder-layers"], train["--encoder-embed-dim"]) == ("3", "3", "256")
    assert flags(cmds["pn_fairseq.cli.row_results"]).get("--paper", "") == paper
    conf = (REPO / "configs" / "preln" / f"{row}.conf").read_text()
    assert "Sec." in conf or "App." in conf  # the source of the values


def test_multi30k_depth_override():
    train = flags(dry_run("multi30k-preln/postln-nowarmup.sh", PRELN_LAYERS="6")["fairseq-train"])
    assert (train["--encoder-layers"], train["--decoder-layers"]) == ("6", "6")


@pytest.mark.parametrize("row", list(WMT_ROWS))
def test_wmt14_rows(row):
    pre, lr, scheduler = WMT_ROWS[row]
    cmds = dry_run(f"wmt14-preln/{row}.sh")
    train = flags(cmds["fairseq-train"])
    assert train["--arch"] == ("transformer_preln" if pre else "transformer_postln")  # Transformer base
    assert (train["--optimizer"], train["--adam-betas"], train["--lr"], train["--lr-scheduler"]) == (
        "adam", "(0.9, 0.98)", lr, scheduler)
    if pre:
        assert (train["--lr-decay-epoch"], "--warmup-updates" in train) == ("6", False)
    else:
        assert train["--warmup-updates"] == "4000"
    assert (train["--max-tokens"], train["--label-smoothing"]) == ("8192", "0.1")
    assert flags(cmds["pn-score"])["--scheme"] == "wmt"


def _conf_value(configs, name):
    """The one ``NAME=<integer>`` line of configs/<configs>/common.conf."""
    values = re.findall(rf"^{name}=(\d+)\b", (REPO / "configs" / configs / "common.conf").read_text(), flags=re.M)
    assert len(values) == 1, f"configs/{configs}/common.conf: {name}= {values}"
    return int(values[0])


def test_multi30k_epoch_size(multi30k_prepared, tmp_path):
    """EPOCH_UPDATES of the Multi30k modes: fairseq's batches of the training set that
    conftest.py prepares from the raw files, with a Multi30k row's own training command
    (4,096 tokens, --required-batch-size-multiple 1), batched as fairseq-train does."""
    from fairseq import tasks, utils

    data, _, _ = multi30k_prepared
    argv = dry_run("multi30k-preln/preln-nowarmup.sh", DATA=str(data), SAVE_DIR=str(tmp_path))["fairseq-train"]
    args = options.parse_args_and_arch(options.get_training_parser(), argv[1:] + ["--cpu"])
    assert (args.max_tokens, args.required_batch_size_multiple) == (4096, 1)
    task = tasks.setup_task(args)
    task.load_dataset("train")
    assert len(task.dataset("train")) == 29000
    # fairseq_cli/train.py: the task's and the model's limits
    max_positions = utils.resolve_max_positions(task.max_positions(), task.build_model(args).max_positions())
    itr = task.get_batch_iterator(task.dataset("train"), max_tokens=args.max_tokens, max_positions=max_positions,
                                  required_batch_size_multiple=args.required_batch_size_multiple, seed=args.seed)
    assert len(itr) == MULTI30K_EPOCH
    assert _conf_value("multi30k-preln", "EPOCH_UPDATES") == MULTI30K_EPOCH
    assert _conf_value("multi30k-converged", "EPOCH_UPDATES") == MULTI30K_EPOCH


def _lrs_of_first_updates(train_argv, n):
    """The lr of updates 1..n as fairseq's trainer sets them: the scheduler built from the row's
    own flags, then (fairseq/trainer.py, checkpoint_utils.load_checkpoint) lr_step(epoch 1) and
    begin_epoch(1) before update 1, step_update(t) after update t."""
    args = options.parse_args_and_arch(options.get_training_parser(), train_argv[1:])
    cfg = convert_namespace_to_omegaconf(args)
    optimizer = build_optimizer(cfg.optimizer, [torch.zeros(2, requires_grad=True)])
    scheduler = build_lr_scheduler(cfg.lr_scheduler, optimizer)
    scheduler.step(1)
    scheduler.step_update(0)
    scheduler.step_begin_epoch(1)
    scheduler.step_update(0)
    lrs = []
    for t in range(1, n + 1):
        lrs.append(optimizer.get_lr())
        scheduler.step_update(t)
    return lrs


@pytest.mark.parametrize("row", ["postln-nowarmup", "postln-lr1e-3-nowarmup", "postln-sgd-lr5e-3-nowarmup"])
def test_no_warmup_rows_run_at_lr_max_over_sqrt_t(row):
    """Sec. 3.2 with T = 1: lr(t) = lr_max / sqrt(t) from the first update."""
    argv = dry_run(f"preln/{row}.sh")["fairseq-train"]
    lr_max = float(flags(argv)["--lr"])
    expected = [lr_max / math.sqrt(t) for t in range(1, 6)]
    assert _lrs_of_first_updates(argv, 5) == pytest.approx(expected, rel=1e-12)


def test_warmup_rows_rise_linearly_then_decay():
    argv = dry_run("preln/postln-warmup500.sh")["fairseq-train"]
    lrs = _lrs_of_first_updates(argv, 502)
    assert lrs[:3] == pytest.approx([5e-4 * t / 500 for t in (1, 2, 3)], rel=1e-12)
    assert lrs[499] == pytest.approx(5e-4) and lrs[501] == pytest.approx(5e-4 * math.sqrt(500 / 502))


def test_fairseq_inverse_sqrt_is_one_update_late():
    """Why the rows use warmup_rsqrt: fairseq's inverse_sqrt with --warmup-updates 1 runs update 1
    at --warmup-init-lr (default 0) and update t at lr_max / sqrt(t - 1)."""
    argv = dry_run("preln/postln-nowarmup.sh")["fairseq-train"]
    i = argv.index("warmup_rsqrt")
    lrs = _lrs_of_first_updates(argv[:i] + ["inverse_sqrt"] + argv[i + 1:], 5)
    assert lrs == pytest.approx([0.0] + [5e-4 / math.sqrt(t - 1) for t in range(2, 6)], rel=1e-12)


def test_t1_row_in_a_real_run(data_bin, tmp_path):
    """fairseq-train with the T = 1 row's optimizer and schedule flags, 5 updates on the tiny
    data: the JSON log's lr at num_updates n (the lr set for update n + 1) is lr_max / sqrt(n + 1)."""
    argv = dry_run("preln/postln-lr1e-3-nowarmup.sh")["fairseq-train"]
    keep = ("--optimizer", "--adam-betas", "--lr", "--lr-scheduler", "--warmup-updates")
    train = flags(argv)
    row_flags = [x for k in keep for x in (k, train[k])]
    out = run("fairseq-train", data_bin, "--user-dir", REPO / "pn_fairseq", "--task", "translation_pn",
              "--arch", "transformer_postln", "--encoder-layers", "1", "--decoder-layers", "1",
              "--encoder-embed-dim", "16", "--decoder-embed-dim", "16", "--encoder-ffn-embed-dim", "32",
              "--decoder-ffn-embed-dim", "32", "--encoder-attention-heads", "2", "--decoder-attention-heads", "2",
              *row_flags, "--max-tokens", "200", "--max-update", "5", "--save-dir", tmp_path, "--no-save", "--cpu",
              "--log-format", "json", "--log-interval", "1", "--no-progress-bar", "--seed", "1")
    logged = {}
    for line in out.splitlines():
        if "train_inner" in line:
            record = json.loads(line[line.index("{"):])
            logged[int(record["num_updates"])] = float(record["lr"])
    assert sorted(logged) == [1, 2, 3, 4, 5]
    for n, lr in logged.items():
        assert lr == pytest.approx(1e-3 / math.sqrt(n + 1), rel=1e-5), n  # the log rounds to 6 digits


def _epoch_rsqrt(**kw):
    from test_epoch_step_lr import _Opt  # the recording optimizer of the epoch_step tests

    opt = _Opt()
    return EpochRsqrtSchedule(OmegaConf.structured(EpochRsqrtConfig(lr=[7e-4], **kw)), opt), opt


def _epochs(sched, opt, epochs, per_epoch, start_update=0):
    """lr of every update of ``epochs`` (a range), ``per_epoch`` updates each, as the trainer calls it."""
    lrs, t = {}, start_update
    for epoch in epochs:
        sched.step_begin_epoch(epoch)
        sched.step_update(t)
        for _ in range(per_epoch):
            lrs[t + 1] = opt.get_lr()
            t += 1
            sched.step_update(t)
        sched.step(epoch)
        sched.step_update(t)
    return lrs


def test_epoch_rsqrt_constant_then_inverse_sqrt_from_epoch_e():
    """WMT14 (Sec. 4.1): lr_max until epoch 6, then lr_max * factor * sqrt(t6 / t), t6 the index
    of epoch 6's first update (51 with 10 updates an epoch)."""
    sched, opt = _epoch_rsqrt(lr_decay_epoch=6, lr_decay_factor=0.1)
    lrs = _epochs(sched, opt, range(1, 9), 10)
    assert all(lrs[t] == 7e-4 for t in range(1, 51))
    for t in range(51, 81):
        assert lrs[t] == pytest.approx(7e-4 * 0.1 * math.sqrt(51 / t), rel=1e-12), t
    # A run resumed in epoch 7 from a checkpoint's scheduler state continues the same curve.
    resumed, opt2 = _epoch_rsqrt(lr_decay_epoch=6, lr_decay_factor=0.1)
    resumed.load_state_dict(sched.state_dict())
    resumed.step_update(60)
    assert _epochs(resumed, opt2, range(7, 9), 10, start_update=60) == {t: lrs[t] for t in range(61, 81)}


@pytest.mark.parametrize("kw, msg", [(dict(lr_decay_epoch=0), "--lr-decay-epoch must be >= 1"),
                                     (dict(lr_decay_factor=0.0), "--lr-decay-factor must be > 0")])
def test_epoch_rsqrt_bad_options(kw, msg):
    with pytest.raises(ValueError, match=msg):
        _epoch_rsqrt(**kw)


def test_warmup_rsqrt_refuses_zero_warmup():
    argv = dry_run("preln/postln-nowarmup.sh")["fairseq-train"]
    i = argv.index("--warmup-updates")
    with pytest.raises(ValueError, match=r"--warmup-updates must be >= 1 \(1 = no warm-up\)"):
        _lrs_of_first_updates(argv[:i + 1] + ["0"] + argv[i + 2:], 1)


@pytest.mark.parametrize("configs, dataset", [("preln", "iwslt14"), ("multi30k-preln", "multi30k"),
                                              ("wmt14-preln", "wmt14")])
def test_results_name_the_dataset_not_the_config_folder(configs, dataset):
    """results.json's dataset is the data the rows train on (pn-results validates it), not the
    config folder's name."""
    cmds = dry_run(f"{configs}/{rows_of(configs)[0]}.sh")
    assert flags(cmds["pn_fairseq.cli.row_results"])["--dataset"] == dataset
