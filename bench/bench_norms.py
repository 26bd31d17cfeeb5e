"""Forward+backward time and peak memory of each norm relative to LayerNorm, in one run.

Every batch-statistics norm runs twice: its fused training path (``impl="fused"``, the
default; pn_fairseq/norms/fused.py) and the eager reference (``impl="eager"``). Cases run
interleaved over several rounds; each reports the median and the fastest of its
iterations (on a shared or throttled machine the median swings by whole throttling
periods, the minimum much less), in milliseconds and as a multiple of LayerNorm's, and
checks issue 11's targets on the medians (PN paper <= 1.3x, the others <= 1.6x, peak memory
<= 1.3x LayerNorm's).

Peak memory: the most bytes held at once by tensors that torch ops allocate during one
forward+backward (the input, upstream gradient and parameters excluded; tensors that
view another's storage counted once), measured with a dispatch mode, so it is the same
figure on CPU and CUDA and does not depend on the allocator.

    python bench/bench_norms.py                       # IWSLT shape: T=30, B=128, C=512
    python bench/bench_norms.py --T 64 --B 64 --C 1024  # big shape
"""
import argparse
import statistics
import time
import weakref

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from pn_fairseq.norms import build_norm, kernels

NORMS = [
    ("bn reference", "batch", dict(variant="reference"), 1.6),
    ("bn paper", "batch", dict(variant="paper"), 1.6),
    ("pn-v", "power_v", {}, 1.6),
    ("pn reference", "power", dict(variant="reference", groups=4, warmup_updates=0), 1.6),
    ("pn paper", "power", dict(variant="paper"), 1.3),
]
MEMORY_TARGET = 1.3


class PeakMemory(TorchDispatchMode):
    """Tracks the bytes of the storages that torch ops create while active (see the module
    docstring); ``peak`` is the maximum held at once."""

    def __init__(self, external=()):
        super().__init__()
        self.external = {t.untyped_storage().data_ptr() for t in external}
        self.refs, self.sizes, self.current, self.peak = {}, {}, 0, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if getattr(func, "is_view", False):
            return out
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                self._track(t)
        return out

    def _track(self, t):
        key = t.untyped_storage().data_ptr()
        if key == 0 or key in self.external:
            return
        if key not in self.refs:
            self.refs[key], self.sizes[key] = 0, t.untyped_storage().nbytes()
            self.current += self.sizes[key]
            self.peak = max(self.peak, self.current)
        self.refs[key] += 1
        weakref.finalize(t, self._release, key)

    def _release(self, key):
        self.refs[key] -= 1
        if not self.refs[key]:
            del self.refs[key]
            self.current -= self.sizes.pop(key)


def make_step(module, x, mask, grad, sync):
    def forward_backward():
        xi = x.detach().requires_grad_(True)
        (module(xi, mask) if mask is not None else module(xi)).backward(grad)

    def timed():
        xi = x.detach().requires_grad_(True)
        sync()
        t0 = time.perf_counter()
        (module(xi, mask) if mask is not None else module(xi)).backward(grad)
        sync()
        return time.perf_counter() - t0

    return forward_backward, timed


def peak_bytes(forward_backward, module, x, grad):
    tracker = PeakMemory(external=[x, grad, *module.parameters(), *module.buffers()])
    with tracker:
        forward_backward()
    return tracker.peak


def time_cases(steps, repeats, rounds=5):
    for _, timed in steps:  # warm-up (and the kernels' one-time build)
        for _ in range(3):
            timed()
    samples = [[] for _ in steps]
    per_round = max(1, repeats // rounds)
    for _ in range(rounds):
        for i, (_, timed) in enumerate(steps):
            samples[i] += [timed() for _ in range(per_round)]
    return [(statistics.median(s) * 1e3, min(s) * 1e3) for s in samples]


class LayerNorm(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        self.weight, self.bias = torch.nn.Parameter(torch.ones(c)), torch.nn.Parameter(torch.zeros(c))

    def forward(self, x, mask=None):
        return F.layer_norm(x, x.shape[-1:], self.weight, self.bias)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--T", type=int, default=30)
    p.add_argument("--B", type=int, default=128)
    p.add_argument("--C", type=int, default=512)
    p.add_argument("--repeats", type=int, default=50, help="timed iterations per case, over 5 rounds")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    torch.manual_seed(0)
    x = torch.randn(args.T, args.B, args.C, device=dev)
    lengths = torch.randint(args.T // 2, args.T + 1, (args.B,), device=dev)
    mask = torch.arange(args.T, device=dev)[None, :] >= lengths[:, None]  # B x T, True = pad
    grad = torch.randn_like(x)

    cases = [("layernorm (F.layer_norm)", LayerNorm(args.C).to(dev), None)]
    for label, name, options, target in NORMS:
        for impl in ("fused", "eager"):
            module = build_norm(name, args.C, impl=impl, **options).to(dev)
            cases.append((f"{label} [{impl}]", module, target if impl == "fused" else None))
    steps = [make_step(m, x, mask if i else None, grad, sync) for i, (_, m, _) in enumerate(cases)]
    times = time_cases(steps, args.repeats)
    memory = [peak_bytes(fb, m, x, grad) for (fb, _), (_, m, _) in zip(steps, cases)]

    lib = kernels.load()
    fused_note = (f"C kernels: {lib.pn_flags} ({lib.pn_build})" if lib
                  else f"C kernels unavailable ({kernels.unavailable_reason()})")
    print(f"T x B x C = {args.T} x {args.B} x {args.C}, {int(mask.sum())} padding positions "
          f"({mask.float().mean():.0%}), device {args.device}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}; {fused_note}")
    print(f"{'case':28s} {'median ms':>9s} {'min ms':>8s} {'x LN (med)':>10s} {'x LN (min)':>10s} "
          f"{'peak MiB':>8s} {'x LN':>6s}  target")
    ln_med, ln_min = times[0]
    misses = 0
    for (label, _, target), (med, fast), mem in zip(cases, times, memory):
        ratio, mem_ratio = med / ln_med, mem / memory[0]
        verdict = ""
        if target is not None:
            ok = ratio <= target and mem_ratio <= MEMORY_TARGET
            misses += not ok
            verdict = f"time <= {target}x, memory <= {MEMORY_TARGET}x: {'PASS' if ok else 'MISS'}"
        print(f"{label:28s} {med:9.2f} {fast:8.2f} {ratio:10.2f} {fast / ln_min:10.2f} "
              f"{mem / 2**20:8.1f} {mem_ratio:6.2f}  {verdict}")
    print(f"{misses} target(s) missed" if misses else "all targets met")


if __name__ == "__main__":
    main()
