"""Gradient norms of the FFN weights at initialization (Pre-LN paper, Fig. 3).

For each architecture and seed the model is built exactly as ``fairseq-train --seed S``
builds it in the row driver (task ``translation_pn``; fairseq's own option parser,
``tasks.setup_task``, ``task.build_model``,
``task.build_criterion``; seeds set first, as ``fairseq_cli.train.main`` does), then
``n`` real training batches (the first ``n`` of epoch 1, in the order ``fairseq-train``
with that seed and ``--max-tokens`` would draw them) go through the criterion
(label-smoothed cross-entropy 0.1 unless overridden). The *expected* gradient of a weight
is the mean over the batches of its per-batch gradient of the per-token loss
(``loss / sample_size``, what the trainer optimizes); its Frobenius norm is reported for
each FFN sub-layer's ``fc1.weight`` (W1) and ``fc2.weight`` (W2), per layer, encoder and
decoder, and summarized over seeds (mean, sample std).

The model is in training mode, dropout included, as during the training the paper
analyses; pass ``--dropout 0 --attention-dropout 0 --activation-dropout 0`` to remove it.
"""
import contextlib
import io
import os
import re
import time
import warnings

import numpy as np
import torch

from . import AnalysisError

CRITERION_DEFAULTS = ["--criterion", "label_smoothed_cross_entropy", "--label-smoothing", "0.1"]
# Only used by --after-updates: the Pre-LN paper's Post-LN recipe (Adam (0.9, 0.98),
# lr 5e-4, 4k linear warm-up, inverse_sqrt); any of them can be overridden.
OPTIMIZER_DEFAULTS = ["--optimizer", "adam", "--adam-betas", "(0.9, 0.98)", "--lr", "5e-4",
                      "--lr-scheduler", "inverse_sqrt", "--warmup-updates", "4000", "--warmup-init-lr", "1e-07"]
FFN_WEIGHT = re.compile(r"^(encoder|decoder)\.layers\.(\d+)\.(fc1|fc2)\.weight$")
WEIGHT_NAMES = {"fc1": "W1", "fc2": "W2"}
SIDES = ("encoder", "decoder")


def pn_architectures():
    """Architectures registered for the ``transformer_pn`` model, sorted."""
    import pn_fairseq  # noqa: F401  (registers them)
    from fairseq.models import ARCH_MODEL_NAME_REGISTRY

    return sorted(a for a, m in ARCH_MODEL_NAME_REGISTRY.items() if m == "transformer_pn")


def check_arch(arch):
    archs = pn_architectures()
    if arch not in archs:
        raise AnalysisError(f"unknown architecture '{arch}' (transformer_pn architectures: {', '.join(archs)})")


def check_data(data):
    """A fairseq-preprocess output directory: dictionaries and a binarized train split."""
    if not os.path.isdir(data):
        raise AnalysisError(f"{data}: no such data directory")
    names = os.listdir(data)
    if not any(n.startswith("dict.") and n.endswith(".txt") for n in names):
        raise AnalysisError(f"{data}: no dict.*.txt dictionaries (not a fairseq-preprocess data-bin directory)")
    if not any(n.startswith("train.") and n.endswith(".bin") for n in names):
        raise AnalysisError(f"{data}: no binarized train split (train.*.bin)")


def parse_fairseq_args(data, arch, seed, max_tokens, flags=(), extra=()):
    """fairseq's training options for one model, as ``fairseq-train`` would parse them.

    ``flags`` (the user's pass-through model/training flags) come after the defaults, so
    they override them; ``extra`` (the per-depth layer counts) comes last and overrides both.
    """
    from fairseq import options

    argv = [data, "--arch", arch, "--task", "translation_pn", *CRITERION_DEFAULTS, *OPTIMIZER_DEFAULTS,
            "--max-tokens", str(max_tokens), *flags, *extra, "--seed", str(seed)]
    parser = options.get_training_parser()
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            return options.parse_args_and_arch(parser, argv)
    except SystemExit:
        # argparse printed usage and "prog: error: ..."; keep only the message.
        message = stderr.getvalue().strip().splitlines()[-1:] or ["invalid flags"]
        raise AnalysisError("fairseq flags: " + message[0].split("error: ", 1)[-1]) from None


def build(args):
    """Task, model and criterion at initialization, seeded as ``fairseq_cli.train.main`` seeds them."""
    from fairseq import tasks, utils
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    with warnings.catch_warnings():
        # hydra's deprecation notices about fairseq's config files: noise, once per model built
        warnings.simplefilter("ignore", UserWarning)
        cfg = convert_namespace_to_omegaconf(args)
    np.random.seed(cfg.common.seed)
    utils.set_torch_seed(cfg.common.seed)
    try:
        task = tasks.setup_task(cfg.task)
        model = task.build_model(cfg.model)
        criterion = task.build_criterion(cfg.criterion)
        task.load_dataset(cfg.dataset.train_subset, combine=True, epoch=1)
    except (FileNotFoundError, ValueError, AssertionError) as err:
        text = str(err).strip().splitlines()
        raise AnalysisError(f"{args.data}: cannot build the task/model ({type(err).__name__}: "
                            f"{text[0] if text else ''})") from None
    return cfg, task, model, criterion


def training_batches(cfg, task, model):
    """Endless training batches in ``fairseq-train``'s order for this seed (epoch 1, 2, ...)."""
    from fairseq import utils

    epoch_itr = task.get_batch_iterator(
        dataset=task.dataset(cfg.dataset.train_subset),
        max_tokens=cfg.dataset.max_tokens,
        max_sentences=cfg.dataset.batch_size,
        max_positions=utils.resolve_max_positions(task.max_positions(), model.max_positions(),
                                                  cfg.dataset.max_tokens),
        ignore_invalid_inputs=True,
        required_batch_size_multiple=cfg.dataset.required_batch_size_multiple,
        seed=cfg.common.seed,
        epoch=1,
    )
    while True:
        empty = True
        for sample in epoch_itr.next_epoch_itr(shuffle=True):
            if sample and "net_input" in sample:
                empty = False
                yield sample
        if empty:
            raise AnalysisError("the training split yields no batches (check --max-tokens)")


def ffn_weights(model):
    """``{(side, layer_index, "W1"|"W2"): parameter}`` for every FFN sub-layer."""
    weights = {}
    for name, param in model.named_parameters():
        match = FFN_WEIGHT.match(name)
        if match:
            weights[(match.group(1), int(match.group(2)), WEIGHT_NAMES[match.group(3)])] = param
    if not weights:
        raise AnalysisError("the model has no FFN weights named *.layers.<i>.fc1/fc2.weight")
    return weights


def _to_device(sample, device):
    from fairseq import utils

    return utils.move_to_cuda(sample) if device.type == "cuda" else sample


def expected_gradient_norms(model, criterion, batches, device):
    """Frobenius norm of the mean per-batch gradient of the per-token loss, per FFN weight.

    ``batches``: an iterable of fairseq samples. Returns ``{(side, layer, W): float}``.
    """
    weights = ffn_weights(model)
    model.train()
    model.zero_grad(set_to_none=True)
    batches = list(batches)
    for sample in batches:
        loss, sample_size, _ = criterion(model, _to_device(sample, device))
        # Dividing by the batch count here makes the accumulated .grad the mean, not the sum.
        (loss / sample_size / len(batches)).backward()
    norms = {key: float(p.grad.double().norm()) for key, p in weights.items()}
    model.zero_grad(set_to_none=True)
    return norms


def take_updates(cfg, model, criterion, batches, n, device):
    """``n`` optimizer updates with fairseq's optimizer and LR scheduler from ``cfg``."""
    from fairseq import optim
    from fairseq.optim import lr_scheduler

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = optim.build_optimizer(cfg.optimizer, params)
    scheduler = lr_scheduler.build_lr_scheduler(cfg.lr_scheduler, optimizer)
    scheduler.step_update(0)
    model.train()
    for update in range(1, n + 1):
        optimizer.zero_grad()
        loss, sample_size, _ = criterion(model, _to_device(next(batches), device))
        (loss / sample_size).backward()
        optimizer.step()
        # As the trainer does: modules that count updates (PN's warm-up) hear of each one.
        model.set_num_updates(update)
        scheduler.step_update(update)
    optimizer.zero_grad()


def measure_one(data, arch, seed, n_batches, max_tokens, flags=(), extra=(), after_updates=0, device=None):
    """Expected-gradient norms of one (architecture, seed, depth): ``{(side, layer, W): float}``."""
    device = device or torch.device("cpu")
    args = parse_fairseq_args(data, arch, seed, max_tokens, flags, extra)
    if device.type == "cpu":
        args.cpu = True
    cfg, task, model, criterion = build(args)
    model.to(device)
    batches = training_batches(cfg, task, model)
    if after_updates:
        take_updates(cfg, model, criterion, batches, after_updates, device)
    return expected_gradient_norms(model, criterion, (next(batches) for _ in range(n_batches)), device)


def _spread(per_seed):
    """Mean and sample std (ddof=1; 0 for one seed) over seeds, per position. ``per_seed``: S x L."""
    a = np.asarray(per_seed, dtype=np.float64)
    std = a.std(axis=0, ddof=1) if a.shape[0] > 1 else np.zeros(a.shape[1])
    return {"per_seed": a.tolist(), "mean": a.mean(axis=0).tolist(), "std": std.tolist()}


def _by_layer(runs):
    """``runs``: list over seeds of ``{(side, layer, W): norm}`` -> ``{side: {W: spread}}``."""
    out = {}
    for side in SIDES:
        out[side] = {}
        for w in ("W1", "W2"):
            layers = sorted({layer for s, layer, ww in runs[0] if s == side and ww == w})
            out[side][w] = _spread([[run[(side, layer, w)] for layer in layers] for run in runs])
    return out


def measure(data, archs, seeds, n_batches, max_tokens, flags=(), depths=(), after_updates=0,
            device=None, report=None):
    """The whole ``grad-norms`` analysis.

    Returns ``{"archs": {arch: {"encoder"|"decoder": {"W1"|"W2": {"per_seed": S x L,
    "mean": L, "std": L}}}}, "depths": {arch: {"depths": D, "encoder_last_W2": {...: S x D
    / D}, "decoder_last_W2": ...}}, "settings": {...}}``; layer lists run from the input
    side (index 0) to the output side.
    """
    report = report or (lambda message: None)
    check_data(data)
    for arch in archs:
        check_arch(arch)
    result = {"archs": {}, "depths": {}}
    jobs = [(arch, None) for arch in archs] + [(arch, d) for arch in archs for d in depths]
    for j, (arch, depth) in enumerate(jobs, 1):
        extra = ["--encoder-layers", str(depth), "--decoder-layers", str(depth)] if depth else []
        runs = []
        for i, seed in enumerate(seeds, 1):
            start = time.time()
            runs.append(measure_one(data, arch, seed, n_batches, max_tokens, flags, extra, after_updates, device))
            what = f"{arch}" + (f" depth {depth}-{depth}" if depth else "")
            report(f"model {j}/{len(jobs)} {what}, seed {seed} ({i}/{len(seeds)}): "
                   f"{n_batches} batches in {time.time() - start:.1f} s")
        if depth is None:
            result["archs"][arch] = _by_layer(runs)
        else:
            entry = result["depths"].setdefault(arch, {"depths": [], "encoder_last_W2": [], "decoder_last_W2": []})
            entry["depths"].append(depth)
            for side in SIDES:
                entry[f"{side}_last_W2"].append([run[(side, depth - 1, "W2")] for run in runs])
    for entry in result["depths"].values():
        for side in SIDES:
            # stored D x S while collecting; the spread is over seeds
            entry[f"{side}_last_W2"] = _spread(np.asarray(entry[f"{side}_last_W2"]).T)
    result["settings"] = {
        "data": os.path.abspath(data), "seeds": list(seeds), "batches": n_batches, "max_tokens": max_tokens,
        "flags": list(flags), "after_updates": after_updates, "depths": list(depths),
        "criterion": "label_smoothed_cross_entropy 0.1 unless overridden by the flags",
        "model_mode": "train (dropout on, as in training)",
        "gradient": "Frobenius norm of the mean over batches of d(loss/sample_size)/dW",
        "spread": "std over seeds, ddof=1",
    }
    return result
