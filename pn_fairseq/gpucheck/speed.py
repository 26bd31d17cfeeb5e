"""Stage d: what PN costs on this device.

* Each norm of bench/bench_norms.py (BN reference/paper, PN-V, PN reference/paper) against
  ``F.layer_norm``, forward+backward on a padded ``T x B x C`` batch (lengths between T/2 and
  T), in float32 and float16 (the module cast as fairseq's --fp16 casts it; the norms keep
  float32 statistics). CUDA events around each iteration, cases interleaved over rounds,
  medians; on the CPU (smoke run) perf_counter.
* Training words/s of pn against preln with bench/bench_train.py's helpers: the row configs'
  models (IWSLT-sized on the GPU), fairseq-train children interleaved over rounds.
"""
import statistics
import sys
import time

import torch

from pn_fairseq.norms import build_norm

from .runner import REPO, Context, StageFailed, bench_module, write_json


def _timer(device):
    """A function that runs ``fn`` once and returns its seconds (CUDA events on a GPU)."""
    if device.type == "cuda":
        def timed(fn):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1e3
    else:
        def timed(fn):
            t0 = time.perf_counter()
            fn()
            return time.perf_counter() - t0
    return timed


def time_norms(device: str, dtype: torch.dtype, T: int, B: int, C: int, iters: int, rounds: int):
    """{case: median seconds of forward+backward}; the first case is LayerNorm."""
    bench = bench_module("bench_norms")
    dev = torch.device(device)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(T, B, C, generator=gen).to(dev, dtype)
    lengths = torch.randint(T // 2, T + 1, (B,), generator=gen).to(dev)
    mask = torch.arange(T, device=dev)[None, :] >= lengths[:, None]  # B x T, True = pad
    grad = torch.randn(T, B, C, generator=gen).to(dev, dtype)
    cases = [("layernorm", bench.LayerNorm(C), None)]
    cases += [(label, build_norm(name, C, **options), mask) for label, name, options, _ in bench.NORMS]
    steps = []
    for label, module, m in cases:
        module = module.to(dev, dtype)
        module.train()

        def step(module=module, m=m):
            xi = x.detach().requires_grad_(True)
            (module(xi, m) if m is not None else module(xi)).backward(grad)
        steps.append((label, step))
    timed = _timer(dev)
    for _, step in steps:  # warm-up: allocator, kernels' first launch
        for _ in range(3):
            step()
    samples = {label: [] for label, _ in steps}
    for r in range(rounds):
        order = steps if r % 2 == 0 else steps[::-1]
        for label, step in order:
            samples[label] += [timed(step) for _ in range(iters)]
    return {label: statistics.median(v) for label, v in samples.items()}


def train_speed(ctx: Context, log_dir):
    """{row: best words/s over the rounds} for ctx.sizes.d_train_rows, with bench_train's helpers."""
    s = ctx.sizes
    bt = bench_module("bench_train")
    total = s.d_train_warmup + s.d_train_updates
    common = [str(ctx.data), "--user-dir", str(REPO / "pn_fairseq"), "--task", "translation_pn", "--seed", "1",
              "--max-update", str(total), "--log-format", "json", "--log-interval", "1", "--no-progress-bar",
              "--disable-validation", "--no-save", "--distributed-world-size", "1"]
    common += [] if ctx.cuda else ["--cpu"]
    variants = {row: bt.row_args(REPO / s.d_configs, row) for row in s.d_train_rows}
    wps = {row: [] for row in variants}
    for r in range(s.d_train_rounds):
        for row in bt.round_order(variants, r):
            run_dir = log_dir / f"round{r + 1}-{row}"
            run_dir.mkdir(parents=True, exist_ok=True)
            cmd = [sys.executable, str(bt.SELF), bt.CHILD_FLAG, *common, *variants[row],
                   "--save-dir", str(run_dir / "ckpt"), *s.d_train_extra]
            try:
                lines, _ = bt.run_child(row, cmd, run_dir / "train.log", total, ctx.env(threads=None if ctx.cuda else 1))
                speed, _ = bt.words_per_second(bt.train_records(lines), s.d_train_warmup)
            except (SystemExit, ValueError) as e:
                raise StageFailed(f"training speed of {row}: {e} (log: {run_dir / 'train.log'})") from None
            wps[row].append(speed)
    return {row: max(v) for row, v in wps.items()}


def stage_speed(ctx: Context):
    s = ctx.sizes
    d = ctx.stage_dir("d-speed")
    norms, lines = {}, []
    for shape, T, B, C in s.d_shapes:
        for dtype_name in s.d_dtypes:
            med = time_norms(s.device, getattr(torch, dtype_name), T, B, C, s.d_iters, s.d_rounds)
            ln = med["layernorm"]
            norms[f"{shape} {dtype_name}"] = {"shape": [T, B, C], "layernorm_ms": ln * 1e3,
                                              "ratio": {k: v / ln for k, v in med.items() if k != "layernorm"}}
            ratios = norms[f"{shape} {dtype_name}"]["ratio"]
            lines.append(f"{shape} {T}x{B}x{C} {dtype_name}: LN {ln * 1e3:.3f} ms; x LN: "
                         + ", ".join(f"{k} {v:.2f}" for k, v in ratios.items()))
    wps = train_speed(ctx, d / "train")
    base = wps[s.d_train_rows[0]]
    train = {row: {"words_per_s": round(v), "ratio": v / base} for row, v in wps.items()}
    lines.append(f"training words/s ({s.d_configs.split('/')[-1]} models{' ' + ' '.join(s.d_train_extra) if s.d_train_extra else ''}, "
                 f"best of {s.d_train_rounds}): " + ", ".join(f"{row} {t['words_per_s']} ({t['ratio']:.3f}x)"
                                                            for row, t in train.items()))
    ctx.results["d"] = {"norms": norms, "train": train}
    write_json(d / "speed.json", ctx.results["d"])
    return lines
