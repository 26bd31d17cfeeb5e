"""python -m pn_fairseq.gpucheck (make gpu-check): the stages of pn_fairseq/gpucheck/__init__.py."""
import argparse
import os
import sys
from pathlib import Path

from .runner import GPU, REPO, SMOKE, Context, prepare_out, run_stages
from .speed import stage_speed
from .stages import stage_cuda_tests, stage_env, stage_mixed_precision
from .table import stage_table

STAGES = [
    ("a", "environment", stage_env),
    ("b", "CUDA tests", stage_cuda_tests),
    ("c", "mixed precision end to end", stage_mixed_precision),
    ("d", "speed: norms and training against LayerNorm/preln", stage_speed),
    ("e", "Multi30k table", stage_table),
]


def main(argv=None):
    p = argparse.ArgumentParser(prog="gpu-check", description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", default=os.environ.get("GPU_CHECK_SMOKE", "") not in ("", "0"),
                   help="the same stages on the CPU with tiny sizes (also GPU_CHECK_SMOKE=1)")
    p.add_argument("--out", type=Path, default=REPO / "gpu-check-out", help="output folder (default gpu-check-out/)")
    p.add_argument("--force", action="store_true", help="clear --out even if it is not a gpu-check folder")
    p.add_argument("--data", type=Path, default=REPO / "data-bin" / "multi30k.de-en",
                   help="Multi30k data-bin (GPU run; the smoke run makes its own toy data)")
    p.add_argument("--budget", type=float, default=480.0,
                   help="seconds a-e should take (sizes stage e's training; default 480)")
    p.add_argument("--e-updates", type=int, help="updates per stage-e run (default: sized from --budget)")
    p.add_argument("--stages", default="abcde", help="run only these stages, e.g. abc (default abcde)")
    a = p.parse_args(argv)
    unknown = set(a.stages) - {key for key, _, _ in STAGES}
    if unknown or not a.stages:
        p.error(f"--stages {a.stages!r}: expected letters of abcde")
    sizes = SMOKE if a.smoke else GPU
    if a.e_updates:
        if a.e_updates < 1:
            p.error("--e-updates must be positive")
        sizes = type(sizes)(**{**sizes.__dict__, "e_updates": a.e_updates})
    out = a.out.resolve()
    prepare_out(out, a.force)
    ctx = Context(out=out, smoke=a.smoke, sizes=sizes, data=a.data.resolve(), budget_s=a.budget if not a.smoke else 120.0)
    return run_stages(ctx, [s for s in STAGES if s[0] in a.stages])


if __name__ == "__main__":
    sys.exit(main())
