"""Stages a (environment), b (CUDA tests) and c (mixed precision); d is in speed.py, e in table.py."""
import platform
import random
import re
import subprocess
import sys
from pathlib import Path

from .checks import RunCheckFailed, check_run
from .runner import REPO, Context, StageFailed, bench_module, tail, write_json


def smoke_data(out: Path) -> Path:
    """The tests' toy task (tests/conftest.py): reverse and upper-case sentences over 40 word
    types, binarized with a joined dictionary. Returns the data-bin folder."""
    root = out / "smoke-data"
    root.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    words = [f"w{i}" for i in range(40)]
    for split, n in [("train", 300), ("valid", 30), ("test", 12)]:
        src, tgt = [], []
        for _ in range(n):
            s = [rng.choice(words) for _ in range(rng.randint(2, 9))]
            src.append(" ".join(s))
            tgt.append(" ".join(w.upper() for w in reversed(s)))
        (root / f"{split}.de").write_text("\n".join(src) + "\n")
        (root / f"{split}.en").write_text("\n".join(tgt) + "\n")
    cmd = [sys.executable, "-m", "fairseq_cli.preprocess", "--source-lang", "de", "--target-lang", "en",
           "--joined-dictionary", "--trainpref", root / "train", "--validpref", root / "valid",
           "--testpref", root / "test", "--destdir", root / "bin", "--workers", "1"]
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    if proc.returncode != 0:
        raise StageFailed(f"fairseq-preprocess of the smoke data failed: {proc.stderr.strip().splitlines()[-1:]}")
    return root / "bin"


def stage_env(ctx: Context):
    """a. What runs here: GPU, torch, CUDA, fairseq, and the data the later stages train on."""
    import torch

    try:
        import fairseq
    except ImportError as e:
        raise StageFailed(f"fairseq does not import ({e}): make install, or scripts/wheelhouse.sh install offline")
    import pn_fairseq  # noqa: F401  (the plugin registers its models on import)

    info = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
            "fairseq": fairseq.__version__, "device": ctx.sizes.device, "cpu_count": __import__("os").cpu_count()}
    if ctx.cuda:
        if not torch.cuda.is_available():
            raise StageFailed(f"torch {torch.__version__} sees no GPU (built for CUDA {torch.version.cuda}): "
                              f"install a CUDA build of torch, or GPU_CHECK_SMOKE=1 for the CPU smoke run")
        props = torch.cuda.get_device_properties(0)
        info.update(gpu=torch.cuda.get_device_name(0), gpu_count=torch.cuda.device_count(),
                    capability=f"{props.major}.{props.minor}", gpu_memory_gib=round(props.total_memory / 2 ** 30, 1))
    if ctx.smoke:
        ctx.data = smoke_data(ctx.out)
    elif not (ctx.data / "dict.de.txt").is_file() or not (ctx.data / "train.de-en.de.bin").is_file():
        raise StageFailed(f"no Multi30k data-bin at {ctx.data}: RAW_DIR=../shared/data/multi30k bash "
                          f"data-prep/prepare-multi30k.sh (or carry data-bin/multi30k.de-en), or --data DIR")
    info["data"] = str(ctx.data)
    write_json(ctx.stage_dir("a-env") / "env.json", info)
    ctx.results["a"] = info
    where = (f"{info['gpu']} ({info['gpu_memory_gib']} GiB, sm {info['capability']}, {info['gpu_count']} visible)"
             if ctx.cuda else f"CPU ({info['cpu_count']} cores)")
    return [where,
            f"python {info['python']}, torch {info['torch']}, CUDA {info['cuda']}, cuDNN {info['cudnn']}, "
            f"fairseq {info['fairseq']}",
            f"data: {ctx.data}"]


_COUNTS = re.compile(r"(\d+) (passed|failed|skipped|errors?|deselected|xfailed|xpassed)")


def stage_cuda_tests(ctx: Context):
    """b. pytest -m cuda. On the CPU (smoke) the same tests run with PN_TEST_DEVICE=cpu: the
    CPU float32 layers against float64, the training steps that need no CUDA."""
    d = ctx.stage_dir("b-cuda-tests")
    env = ctx.env()
    if ctx.smoke:
        env["PN_TEST_DEVICE"] = "cpu"
    log = d / "pytest.log"
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider", "-rs",
           f"--junitxml={d / 'junit.xml'}", "tests/test_cuda.py"]
    proc = ctx.spawn(cmd, log, env=env)
    code = proc.wait()
    text = log.read_text(errors="replace")
    last = [line for line in text.splitlines() if _COUNTS.search(line)]
    counts = {}
    for n, what in _COUNTS.findall(last[-1] if last else ""):
        counts[what.rstrip("s") if what.startswith("error") else what] = int(n)
    ctx.results["b"] = {"exit": code, **counts}
    line = last[-1].strip("= ") if last else tail(log)
    if code != 0:
        raise StageFailed(f"pytest -m cuda: {line} (log: {log})")
    if not counts.get("passed"):
        raise StageFailed(f"pytest -m cuda ran no test: {line} (log: {log})")
    if ctx.cuda and counts.get("skipped"):
        raise StageFailed(f"pytest -m cuda skipped tests on a GPU: {line} (log: {log})")
    return [f"pytest -m cuda: {line}" + ("" if ctx.cuda else " (on the CPU: PN_TEST_DEVICE=cpu)")]


def row_command(ctx: Context, configs: str, row: str, save_dir: Path, updates: int, extra=()):
    """fairseq-train for one row of ``configs`` (its arguments as scripts/run_row.sh builds them)."""
    bench_train = bench_module("bench_train")
    cmd = [sys.executable, "-m", "fairseq_cli.train", ctx.data, "--user-dir", REPO / "pn_fairseq",
           "--task", "translation_pn", *bench_train.row_args(REPO / configs, row),
           "--seed", "1", "--max-update", updates, "--save-dir", save_dir, "--no-epoch-checkpoints",
           "--log-format", "json", "--log-interval", "10" if ctx.cuda else "1", "--no-progress-bar",
           "--distributed-world-size", "1", "--num-workers", "0"]
    if not ctx.cuda:
        cmd.append("--cpu")
    return cmd + list(extra)


def stage_mixed_precision(ctx: Context):
    """c. The Multi30k rows with --fp16 and --amp, side by side, the first steps forced to
    overflow by a huge initial loss scale; each run checked by checks.check_run."""
    s = ctx.sizes
    d = ctx.stage_dir("c-mixed-precision")
    jobs = {}
    for row in s.c_rows:
        for mode in s.c_modes:
            extra = ["--fp16"] if mode == "fp16" else ["--amp"]
            if s.c_overflow_scale:
                extra += ["--fp16-init-scale", str(s.c_overflow_scale)]
            run_dir = d / f"{row}-{mode}"
            cmd = row_command(ctx, "configs/multi30k", row, run_dir / "ckpt", s.c_updates, extra)
            jobs[f"{row} --{mode}"] = (ctx.spawn(cmd, run_dir / "train.log", env=ctx.env(threads=1)),
                                       run_dir / "train.log", run_dir, mode, row)
    ctx.wait_all({k: v[:2] for k, v in jobs.items()}, "fairseq-train")
    measured, lines = {}, []
    for label, (_, log, run_dir, mode, row) in jobs.items():
        try:
            m = check_run(log, run_dir / "ckpt" / "checkpoint_last.pt", s.c_updates, mode=mode,
                          expect_overflow=bool(s.c_overflow_scale), expect_counters=row != "preln")
        except RunCheckFailed as e:
            raise StageFailed(f"{label}: {e} (log: {log})") from None
        m["updates_per_s"] = updates_per_second(log.read_text(errors="replace"))
        measured[label] = m
    ctx.results["c"] = measured
    write_json(d / "checks.json", measured)
    for mode in s.c_modes:
        runs = {k: v for k, v in measured.items() if k.endswith(mode)}
        overflow = ", ".join(f"{k.split()[0]} {v['overflows']}" for k, v in runs.items())
        lines.append(f"--{mode}: {len(runs)} rows x {s.c_updates} updates, finite losses "
                     f"(last {min(v['last_loss'] for v in runs.values()):.2f}-{max(v['last_loss'] for v in runs.values()):.2f}), "
                     f"counters = updates; overflows: {overflow}")
    return lines


def updates_per_second(log_text: str):
    """Updates per second between the first and the last train_inner record (wall clock)."""
    from .checks import train_records

    inner = [r for r in train_records(log_text) if "wall" in r and "num_updates" in r and "ups" in r]
    if len(inner) < 2:
        return None
    du = int(inner[-1]["num_updates"]) - int(inner[0]["num_updates"])
    dt = float(inner[-1]["wall"]) - float(inner[0]["wall"])
    return round(du / dt, 2) if dt > 0 else None
