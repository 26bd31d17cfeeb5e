"""The stage runner: the output folder, child processes with their logs, the summary.

A stage is a function ``stage(ctx) -> list of summary lines``; it raises :class:`StageFailed`
with one line saying what went wrong (and which log holds the details).
"""
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

REPO = Path(__file__).resolve().parents[2]
MARKER = "gpu-check.json"  # written first into the output folder: a folder we may clear on the next run


class StageFailed(Exception):
    """One line: what failed and where its log is."""


@dataclass
class Sizes:
    """Everything that differs between the GPU run and the CPU smoke run."""

    device: str  # "cuda" or "cpu"
    c_rows: List[str]
    c_modes: List[str]  # "fp16", "amp"
    c_updates: int
    c_overflow_scale: Optional[int]  # --fp16-init-scale that forces the first steps to overflow
    d_shapes: List[tuple]  # (name, T, B, C)
    d_dtypes: List[str]
    d_iters: int  # timed iterations per case and round
    d_rounds: int
    d_configs: str  # row configs of the training-speed models
    d_train_rows: List[str]
    d_train_rounds: int
    d_train_warmup: int
    d_train_updates: int
    d_train_extra: List[str]
    e_rows: List[str]
    e_seeds: List[int]
    e_updates: Optional[int]  # None: sized from the time left (stage e)
    e_extra: List[str] = field(default_factory=list)


GPU = Sizes(
    device="cuda",
    c_rows=["preln", "bn", "pnv", "pn"], c_modes=["fp16", "amp"], c_updates=200, c_overflow_scale=2 ** 20,
    d_shapes=[("IWSLT", 30, 128, 512), ("WMT big", 64, 64, 1024)], d_dtypes=["float32", "float16"],
    d_iters=20, d_rounds=5,
    d_configs="configs/iwslt14", d_train_rows=["preln", "pn"], d_train_rounds=2, d_train_warmup=10,
    d_train_updates=40, d_train_extra=["--fp16"],
    e_rows=["preln", "bn", "pnv", "pn"], e_seeds=[1, 2, 3], e_updates=None,
)
# CPU: no forced overflow (fairseq's trainer calls .cuda() when it skips an overflowed step),
# --amp only (--fp16 needs CUDA; on the CPU --amp trains in float32), a few updates.
SMOKE = Sizes(
    device="cpu",
    c_rows=["pn"], c_modes=["amp"], c_updates=3, c_overflow_scale=None,
    d_shapes=[("tiny", 6, 4, 16)], d_dtypes=["float32"], d_iters=3, d_rounds=2,
    d_configs="configs/multi30k", d_train_rows=["preln", "pn"], d_train_rounds=1, d_train_warmup=1,
    d_train_updates=2, d_train_extra=[],
    e_rows=["preln", "pn"], e_seeds=[1], e_updates=2,
)


@dataclass
class Context:
    out: Path
    smoke: bool
    sizes: Sizes
    data: Path
    budget_s: float  # a-e should end within this many seconds of the start
    start: float = field(default_factory=time.monotonic)
    results: Dict[str, dict] = field(default_factory=dict)  # stage key -> what it measured
    clock: Callable[[], float] = time.monotonic  # what elapsed() reads: a test fixes it, to size stage e exactly

    @property
    def cuda(self) -> bool:
        return self.sizes.device == "cuda"

    def elapsed(self) -> float:
        return self.clock() - self.start

    def stage_dir(self, name: str) -> Path:
        d = self.out / name
        d.mkdir(parents=True, exist_ok=True)
        return d

    def env(self, threads: Optional[int] = None) -> dict:
        """Children's environment: this venv's tools first, the repository importable."""
        env = dict(os.environ)
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        env["PYTHON"] = sys.executable
        env["PYTHONUNBUFFERED"] = "1"
        if threads:
            env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
        return env

    def spawn(self, cmd, log: Path, env=None, cwd=None) -> subprocess.Popen:
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "w") as f:
            f.write("$ " + " ".join(map(str, cmd)) + "\n")
            f.flush()
            return subprocess.Popen([str(c) for c in cmd], stdout=f, stderr=subprocess.STDOUT,
                                    env=env or self.env(), cwd=cwd or REPO)

    def wait_all(self, jobs: Dict[str, tuple], what: str):
        """Wait for {label: (Popen, log)}; the first that failed (in order) raises."""
        codes = {label: proc.wait() for label, (proc, _) in jobs.items()}
        for label, code in codes.items():
            if code != 0:
                raise StageFailed(f"{what} {label} exited with status {code}: {tail(jobs[label][1])} "
                                  f"(log: {jobs[label][1]})")

    def run(self, cmd, log: Path, what: str, env=None):
        proc = self.spawn(cmd, log, env=env)
        self.wait_all({what: (proc, log)}, "")


def tail(log: Path, lines: int = 1) -> str:
    """The last non-empty line(s) of a log, for a one-line failure."""
    try:
        text = [x.strip() for x in log.read_text(errors="replace").splitlines() if x.strip()]
    except OSError:
        return "(no log)"
    return " / ".join(text[-lines:])[-300:] if text else "(empty log)"


def bench_module(name: str):
    """bench/<name>.py of this checkout as a module (bench/ is no package)."""
    path = REPO / "bench" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"pn_bench_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def prepare_out(out: Path, force: bool):
    """An empty output folder; a previous gpu-check's folder is cleared, anything else refused."""
    if out.exists() and any(out.iterdir()):
        if not (out / MARKER).is_file() and not force:
            raise SystemExit(f"gpu-check: error: --out {out} exists and is not a gpu-check folder: "
                             f"choose another --out, or --force to clear it")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


def write_json(path: Path, data):
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    tmp.replace(path)


def run_stages(ctx: Context, stages: List[tuple], echo: Callable[[str], None] = print) -> int:
    """Run (key, title, function) in order; print and save the summary; 0 if all passed."""
    write_json(ctx.out / MARKER, {"smoke": ctx.smoke, "device": ctx.sizes.device, "data": str(ctx.data),
                                  "budget_s": ctx.budget_s, "status": "running"})
    summary = [f"gpu-check{' (CPU smoke run)' if ctx.smoke else ''}: output in {ctx.out}"]
    echo(summary[0])
    status, failure = 0, None
    for key, title, fn in stages:
        t0 = time.monotonic()
        echo(f"[{key}] {title} ...")
        try:
            lines = fn(ctx)
        except StageFailed as e:
            failure = f"gpu-check: stage {key} ({title}) failed after {time.monotonic() - t0:.0f} s: {e}"
            summary.append(failure)
            status = 1
            break
        took = time.monotonic() - t0
        ctx.results.setdefault(key, {})["seconds"] = round(took, 1)
        summary.append(f"{key}. {title}: PASS ({took:.0f} s)")
        summary += ["   " + line for line in lines]
        echo(summary[-len(lines) - 1])
        for line in lines:
            echo("   " + line)
    summary.append(f"total {ctx.elapsed():.0f} s (budget {ctx.budget_s:.0f} s); "
                   f"{'all stages passed' if status == 0 else 'stopped at the first failure'}")
    (ctx.out / "summary.txt").write_text("\n".join(summary) + "\n")
    write_json(ctx.out / "results.json", ctx.results)
    write_json(ctx.out / MARKER, {"smoke": ctx.smoke, "device": ctx.sizes.device, "data": str(ctx.data),
                                  "budget_s": ctx.budget_s, "status": "passed" if status == 0 else "failed",
                                  "seconds": round(ctx.elapsed(), 1)})
    echo("")
    echo("\n".join(summary))
    return status
