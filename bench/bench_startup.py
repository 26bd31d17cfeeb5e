"""Start-up time of the plugin's command-line tools against importing fairseq.

The row driver starts about seven Python processes per run, and the test suite hundreds; the
light tools (pn-score, pn-results, pn-plot, the row driver's bookkeeping) import neither fairseq
nor torch (pn_fairseq.hooks.after_import). Each case runs as a fresh process, interleaved over
rounds; the median wall time is reported and as a multiple of ``import fairseq``.

    python bench/bench_startup.py [--rounds 5]
"""
import argparse
import os
import statistics
import subprocess
import sys
import time

BIN = os.path.dirname(sys.executable)
CASES = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "import torch": [sys.executable, "-c", "import torch"],
    "import fairseq": [sys.executable, "-c", "import fairseq"],
    "import pn_fairseq": [sys.executable, "-c", "import pn_fairseq"],
    "import pn_fairseq, fairseq": [sys.executable, "-c", "import pn_fairseq, fairseq"],
    "pn-score --help": [os.path.join(BIN, "pn-score"), "--help"],
    "pn-results --help": [os.path.join(BIN, "pn-results"), "--help"],
    "pn-plot --help": [os.path.join(BIN, "pn-plot"), "--help"],
    "row_results count-test --help": [sys.executable, "-m", "pn_fairseq.cli.row_results", "count-test", "--help"],
}
BASELINE = "import fairseq"
# The light tools' target: well under the fairseq import they used to pay (docs/speed.md).
LIGHT = ("pn-score --help", "pn-results --help", "pn-plot --help", "row_results count-test --help")
TARGET = 0.25


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5, help="fresh processes per case (5)")
    a = p.parse_args()
    if a.rounds < 1:
        p.error("--rounds must be >= 1")
    times = {name: [] for name in CASES}
    for r in range(a.rounds):
        for name, cmd in CASES.items():
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            times[name].append(time.perf_counter() - t0)
            if proc.returncode != 0:
                sys.exit(f"bench_startup: {name} failed: {proc.stderr.strip().splitlines()[-1:]}")
        print(f"round {r + 1}/{a.rounds} done", file=sys.stderr, flush=True)
    base = statistics.median(times[BASELINE])
    print(f"{'case':34s} {'median s':>9s} {'x ' + BASELINE:>18s}")
    missed = []
    for name, ts in times.items():
        m = statistics.median(ts)
        verdict = ""
        if name in LIGHT:
            verdict = "PASS" if m / base <= TARGET else "MISS"
            if verdict == "MISS":
                missed.append(name)
        print(f"{name:34s} {m:9.2f} {m / base:18.2f} {verdict}")
    print(f"target: each light tool <= {TARGET}x {BASELINE}; " + ("all met" if not missed else f"missed: {', '.join(missed)}"))


if __name__ == "__main__":
    main()
