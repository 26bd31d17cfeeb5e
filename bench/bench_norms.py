"""Forward+backward time of each norm relative to LayerNorm, measured in one run.

The released PowerNorm layer is 5-8x slower than LayerNorm on CPU; ours should stay well
below that. Cases run interleaved over several rounds and each reports its fastest
iteration: on shared or CPU-quota-throttled machines a median swings by whole throttling
periods, the minimum does not. Prints milliseconds and the ratio to LayerNorm.

    python bench/bench_norms.py [--T 64 --B 64 --C 512 --repeats 30 --device cpu]
"""
import argparse
import time

import torch

from pn_fairseq.norms import build_norm

CASES = [
    ("layer", {}),
    ("batch", dict(variant="reference")),
    ("batch", dict(variant="paper")),
    ("power_v", {}),
    ("power", dict(variant="reference", groups=4, warmup_updates=0)),
    ("power", dict(variant="paper")),
]


def make_step(name, options, x, mask, grad):
    norm = build_norm(name, x.shape[-1], **options).to(x.device)

    def step():
        xi = x.detach().requires_grad_(True)
        if x.is_cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        norm(xi, mask).backward(grad)
        if x.is_cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    return step


def time_cases(cases, x, mask, grad, repeats, rounds=5):
    steps = [make_step(name, options, x, mask, grad) for name, options in cases]
    for step in steps:  # warm-up
        for _ in range(3):
            step()
    best = [float("inf")] * len(steps)
    for _ in range(rounds):
        for i, step in enumerate(steps):
            best[i] = min([best[i]] + [step() for _ in range(max(1, repeats // rounds))])
    return [b * 1e3 for b in best]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--T", type=int, default=64)
    p.add_argument("--B", type=int, default=64)
    p.add_argument("--C", type=int, default=512)
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.randn(args.T, args.B, args.C, device=args.device)
    lengths = torch.randint(args.T // 2, args.T + 1, (args.B,), device=args.device)
    mask = torch.arange(args.T, device=args.device)[None, :] >= lengths[:, None]  # B x T, True = pad
    grad = torch.randn_like(x)
    print(f"T x B x C = {args.T} x {args.B} x {args.C}, {int(mask.sum())} padding positions, "
          f"device {args.device}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    times = time_cases(CASES, x, mask, grad, args.repeats)
    for (name, options), ms in zip(CASES, times):
        label = name + (f"[{options['variant']}]" if "variant" in options else "")
        print(f"{label:20s} {ms:8.2f} ms   {ms / times[0]:5.2f}x LayerNorm")

if __name__ == "__main__":
    main()
