"""Stage e: a Multi30k table trained on this device.

Every (row, seed) is ``scripts/run_row.sh multi30k ROW`` (train, decode, score, results.json)
with ``SEED=k SAVE_DIR=...``, all started at once: a small model leaves a GPU mostly idle, so
12 processes share one. Then ``pn-results`` groups the seeds and runs the paired bootstrap
against preln.

Sizing (GPU): the updates per run are what the time left before the budget allows, at the
per-process speed that stage c measured with 8 processes, scaled by 8/12 for 12 processes
(the GPU shared by more), less a reserve for decoding and the table; at least 300.
"""
import statistics
import sys
from pathlib import Path

from .runner import REPO, Context, StageFailed, tail, write_json

EVAL_RESERVE_S = 75  # decoding 1,000 sentences (beam 5) x 12 runs side by side, scoring, pn-results
MIN_UPDATES, MAX_UPDATES = 300, 6000


def size_updates(ctx: Context, processes: int) -> tuple:
    """(updates per run, how it was sized)."""
    if ctx.sizes.e_updates:
        return ctx.sizes.e_updates, "fixed"
    speeds = [m.get("updates_per_s") for m in ctx.results.get("c", {}).values() if isinstance(m, dict)]
    speeds = [v for v in speeds if v]
    if not speeds:
        return 1000, "no speed measured in stage c: 1000"
    c_parallel = len(ctx.sizes.c_rows) * len(ctx.sizes.c_modes)
    per_process = statistics.median(speeds) * min(1.0, c_parallel / processes)
    seconds = ctx.budget_s - ctx.elapsed() - EVAL_RESERVE_S
    updates = int(max(0.0, seconds) * per_process) // 100 * 100
    if updates < MIN_UPDATES:
        raise StageFailed(f"{ctx.elapsed():.0f} s of the {ctx.budget_s:.0f} s budget are gone: {max(0.0, seconds):.0f} s "
                          f"left to train at {per_process:.1f} updates/s allow fewer than {MIN_UPDATES} updates; "
                          f"run stage e alone: --stages e (--e-updates N to fix its size)")
    updates = min(MAX_UPDATES, updates)
    return updates, (f"{seconds:.0f} s left for training x {per_process:.1f} updates/s per process "
                     f"(stage c: {statistics.median(speeds):.1f} with {c_parallel} processes)")


def last_valid_loss(log: Path):
    losses = [float(r["valid_loss"]) for r in _valid_records(log) if "valid_loss" in r]
    return losses[-1] if losses else None


def _valid_records(log: Path):
    import json

    out = []
    for line in log.read_text(errors="replace").splitlines():
        head, sep, payload = line.partition("| valid | ")
        if sep:
            try:
                out.append(json.loads(payload))
            except ValueError:
                pass
    return out


def stage_table(ctx: Context):
    s = ctx.sizes
    d = ctx.stage_dir("e-multi30k")
    runs = d / "runs"
    n = len(s.e_rows) * len(s.e_seeds)
    updates, how = size_updates(ctx, n)
    jobs = {}
    for row in s.e_rows:
        for seed in s.e_seeds:
            env = ctx.env(threads=1)
            env.update(DATA=str(ctx.data), SAVE_DIR=str(runs / row / f"seed{seed}"), SEED=str(seed),
                       MAX_UPDATE=str(updates), LOG_INTERVAL="10" if ctx.cuda else "1",
                       EXTRA_ARGS="--no-epoch-checkpoints --num-workers 0")
            if not ctx.cuda:
                env.update(CPU="1", ALLOW_BLEU_MISMATCH="1")  # a 2-update model's BLEU is ~0
            log = d / "logs" / f"{row}-seed{seed}.log"
            jobs[f"{row} seed {seed}"] = (ctx.spawn(["bash", REPO / "scripts" / "run_row.sh", "multi30k", row],
                                                    log, env=env), log)
    ctx.wait_all(jobs, "scripts/run_row.sh multi30k")
    table_log = d / "pn-results.log"
    cmd = [sys.executable, "-m", "pn_fairseq.cli.results", runs, "--baseline", "preln",
           "--output", d / "table.md", "--json", d / "table.json"]
    ctx.run(cmd, table_log, "pn-results")
    valid = {}
    for row in s.e_rows:
        losses = [last_valid_loss(runs / row / f"seed{k}" / "train.log") for k in s.e_seeds]
        valid[row] = [v for v in losses if v is not None]
    ctx.results["e"] = {"updates": updates, "sized": how, "processes": n, "valid_loss": valid,
                        "table": str(d / "table.md")}
    write_json(d / "stage.json", ctx.results["e"])
    # The tables up to the per-run listing (which stays in table.md).
    table = []
    for line in (d / "table.md").read_text().splitlines():
        if line.startswith("| row | dataset | seed |"):
            break
        if line.startswith("|") and not line.startswith("|---"):
            table.append(line)
    if not table:
        raise StageFailed(f"pn-results printed no table: {tail(table_log)} (log: {table_log})")
    lines = [f"{n} runs ({', '.join(s.e_rows)} x seeds {','.join(map(str, s.e_seeds))}) side by side, "
             f"{updates} updates each ({how})",
             "final valid loss (mean over seeds): " + ", ".join(
                 f"{row} {statistics.mean(v):.3f}" for row, v in valid.items() if v)]
    return lines + table + [f"runs, checkpoints and BLEU per seed: {d / 'table.md'}"]
