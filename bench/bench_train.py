"""Training words/s and peak memory of the bn / pnv / pn rows against preln, in one run.

Issue 11's targets: pn keeps >= 0.95x preln's training words/s, bn and pnv >= 0.93x; issue 35's:
rms within 5% of LayerNorm (>= 0.95x). Each model is a row's (configs/<set>/common.conf +
<row>.conf, sourced by bash as the set's driver does), trained by fairseq-train in a child process
on the same data with the same seed, so every model sees the same batches. Rounds alternate the
order of the models so that throttling and other load hit all alike; each model reports its
fastest round (as bench_norm_stats.py: on a shared machine the best round is the stable statistic).

Sets: the translation rows (configs/multi30k, the default; scripts/run_row.sh) and the language
models (configs/lm-multi30k, --task language_modeling_pn; scripts/run_lm_row.sh) define ARCH,
TRAIN_ARGS, ROW_ARGS. The BERT rows (configs/bert-multi30k; scripts/run_mlm_row.sh) set every
value with `recipe`, sourced from scripts/recipe_lib.sh as the driver sources it; their task and
criterion (masked_lm_pn, masked_lm) come from there too, so --task may be left out. A row named
<placement>-<norm> takes its norm's target: for BERT preln-bn / preln-pnv / preln-pn against
--baseline preln-nowarmup (the same pre-norm model with LayerNorm) are held to bn / pnv / pn's.

Words/s: the first --warmup updates of a run (start-up, allocator and cache warm-up) are
dropped; over the next --updates updates it is words / seconds, both from fairseq's own
per-update log lines (wpb, wps at --log-interval 1). Peak memory: on CPU the child's max RSS
(os.wait4), so it includes the interpreter, fairseq and the dataset; on CUDA
torch.cuda.max_memory_allocated in the child.

    python bench/bench_train.py [--configs configs/multi30k] [--rows preln,bn,pnv,pn]
        [--baseline preln] [--task translation_pn] [--data DIR] [--rounds 3] [--updates 30]
        [--eager] [--extra "--norm-impl eager"] [--threads 2] [--device auto]
    python bench/bench_train.py --configs configs/bert-multi30k --baseline preln-nowarmup \
        --rows preln-bn,preln-pnv,preln-pn

--data defaults to data-bin/<the set's DATASET_DIR> for a language-model or BERT set; for a
translation set to data-bin/multi30k.de-en when prepared, else data-bin/synthetic.de-en.
"""
import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SELF = Path(__file__).resolve()  # the children run this file from their own directories
REPO = SELF.parents[1]
CHILD_FLAG = "--as-fairseq-train"  # first argument of the child mode: run fairseq-train, report CUDA peak
CHILD_REPORT = "BENCH_TRAIN_CHILD "  # prefix of the child's last stdout line (JSON)
TARGETS = {"pn": 0.95, "bn": 0.93, "pnv": 0.93,  # issue 11: words/s relative to the LayerNorm baseline
           "rms": 0.95}  # issue 35: RMSNorm within 5% of LayerNorm (LM and BERT rows)
BASELINE = "preln"
BATCH_STAT_ROWS = ("bn", "pnv", "pn")  # norms (norm_of) whose rows --eager duplicates with --norm-impl eager
DATA_CANDIDATES = ("multi30k.de-en", "synthetic.de-en")  # under data-bin/, first prepared wins


def _sourced(config_dir, row, body):
    """The NUL-separated words that bash `body` prints after sourcing scripts/recipe_lib.sh (so a
    .conf may call recipe), then common.conf and <row>.conf of config_dir."""
    config_dir = Path(config_dir)
    for conf in (config_dir / "common.conf", config_dir / f"{row}.conf"):
        if not conf.is_file():
            rows = sorted(p.stem for p in config_dir.glob("*.conf") if p.stem != "common")
            raise SystemExit(f"bench_train: no {conf}: unknown row '{row}' or config dir; rows there: {' '.join(rows)}")
    script = ('set -e; die() { echo "$*" >&2; exit 1; }; source "$1"; CONF_DIR=$2 ROW=$3; '
              'source "$CONF_DIR/common.conf"; source "$CONF_DIR/$ROW.conf"; ' + body)
    out = subprocess.run(["bash", "-c", script, "bash", str(REPO / "scripts" / "recipe_lib.sh"), str(config_dir), row],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"bench_train: sourcing {config_dir}/{row}.conf failed: {out.stderr.strip()}")
    return out.stdout.split("\0")[:-1]


def row_args(config_dir, row):
    """fairseq-train arguments of one row, in the order and quoting of the set's driver (bash
    sources the .conf files, so --adam-betas "(0.9, 0.98)" comes out as one argument).

    A set whose .conf files call recipe (BERT, scripts/run_mlm_row.sh): MLM_TASK_ARGS, then the
    recipe values with the driver's schedule for its default run (mlm_schedule DEFAULT_MAX_UPDATE
    DEFAULT_VALIDATE_INTERVAL: --max-update, --total-num-update, --warmup-updates,
    --validate-interval-updates), all from scripts/recipe_lib.sh as the driver runs them. Any other
    set (scripts/run_row.sh, run_lm_row.sh): --arch ARCH, LANGS, TRAIN_ARGS, ROW_ARGS."""
    words = _sourced(config_dir, row, (
        'if (( ${#RECIPE[@]} )); then '
        '[[ -n ${DEFAULT_MAX_UPDATE:-} && -n ${DEFAULT_VALIDATE_INTERVAL:-} ]] '
        '|| die "$CONF_DIR/common.conf sets no DEFAULT_MAX_UPDATE or DEFAULT_VALIDATE_INTERVAL"; '
        'mlm_schedule "$DEFAULT_MAX_UPDATE" "$DEFAULT_VALIDATE_INTERVAL"; '
        'printf "%s\\0" "${MLM_TASK_ARGS[@]}" "${TRAIN_ARGS[@]}"; '
        'else printf "%s\\0" --arch "$ARCH" "${LANGS[@]}" "${TRAIN_ARGS[@]}" "${ROW_ARGS[@]}"; fi'))
    if words[0] == "--arch" and not words[1]:
        raise SystemExit(f"bench_train: {config_dir}/{row}.conf sets no ARCH (and calls no recipe)")
    return words


def flag_value(args, flag):
    """The value of the last `flag` in args (the one argparse keeps), or None."""
    i = max((j for j, a in enumerate(args[:-1]) if a == flag), default=None)
    return None if i is None else args[i + 1]


def default_data(config_dir, row):
    """The data the rows train on when --data is not given, or an error saying how to make it:
    a language-model or BERT set's data-bin/DATASET_DIR; for a translation set (LANGS) the
    first prepared data set of DATA_CANDIDATES."""
    langs, dataset_dir, prep = _sourced(config_dir, row, 'printf "%s\\0" "${LANGS[*]}" "$DATASET_DIR" "$DATA_PREP"')
    if not langs:
        d = REPO / "data-bin" / dataset_dir
        if dataset_dir and (d / "dict.txt").is_file() and (d / "train.bin").is_file():
            return d
        raise SystemExit(f"bench_train: no binarized data at {d}: run `bash data-prep/prepare-{prep or '<set>'}.sh`, "
                         "or pass --data DIR")
    for name in DATA_CANDIDATES:
        d = REPO / "data-bin" / name
        if (d / "dict.de.txt").is_file() and (d / "train.de-en.de.bin").is_file():
            return d
    raise SystemExit("bench_train: no binarized data under data-bin/: run `bash data-prep/prepare-multi30k.sh` "
                     "(Multi30k, 1.3 MB download) or `bash data-prep/prepare-synthetic.sh` (offline), "
                     "or pass --data DIR")


def train_records(lines):
    """The JSON records of fairseq's per-update 'train_inner' log lines (--log-format json)."""
    records = []
    for line in lines:
        head, sep, payload = line.partition("| train_inner | ")
        if sep:
            records.append(json.loads(payload))
    return records


def words_per_second(records, skip):
    """(words/s, updates measured) over the records after update `skip`. At --log-interval 1
    each record's wps covers the time since the previous log line, so the update took wpb / wps
    seconds; summing words and seconds weights every update by its length."""
    words = seconds = 0.0
    n = 0
    for r in records:
        if int(r["num_updates"]) > skip:
            wpb, wps = float(r["wpb"]), float(r["wps"])
            if wps <= 0:
                raise ValueError(f"update {r['num_updates']}: wps {r['wps']} (needs --log-interval 1)")
            words, seconds, n = words + wpb, seconds + wpb / wps, n + 1
    if n == 0:
        raise ValueError(f"no update after the {skip} warm-up updates was logged")
    return words / seconds, n


def norm_of(label):
    """The norm a row's target and --eager follow: the label itself when TARGETS has it, else
    the suffix of a <placement>-<norm> name (BERT's preln-pn: pn); None for the rest (eager
    variants, pn-nogroup, the baselines)."""
    if label in TARGETS:
        return label
    if "-" in label and "+" not in label and label.rsplit("-", 1)[-1] in TARGETS:
        return label.rsplit("-", 1)[-1]
    return None


def verdict(label, ratio):
    """'>= 0.95 PASS' / '>= 0.93 MISS' for rows with a target (norm_of), '' otherwise."""
    norm = norm_of(label)
    if norm is None:
        return ""
    target = TARGETS[norm]
    return f">= {target:.2f} {'PASS' if ratio >= target else 'MISS'}"


def round_order(labels, r):
    """Round r runs the models in order, odd rounds in reverse: no model always goes first."""
    return list(labels) if r % 2 == 0 else list(reversed(labels))


def has_flag(flag, arch="transformer_pn"):
    """Whether this checkout's model accepts `flag` (fairseq-train's -h for the arch)."""
    out = subprocess.run([sys.executable, str(SELF), CHILD_FLAG, "--user-dir", str(REPO / "pn_fairseq"),
                          "--arch", arch, "-h"], capture_output=True, text=True, cwd=tempfile.gettempdir())
    return flag in out.stdout


def run_child(label, cmd, log_path, total, env, progress_every=30.0):
    """Run one training child; return (its stdout lines, max RSS in bytes). Prints how far it
    got every `progress_every` seconds; on failure, the log's tail and where the log is."""
    t0 = last = time.monotonic()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=log_path.parent)
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            time.sleep(0.5)
            if time.monotonic() - last >= progress_every:
                last = time.monotonic()
                done = [r["num_updates"] for r in train_records(log_path.read_text().splitlines())]
                print(f"    {label}: update {done[-1] if done else 0}/{total} after {last - t0:.0f} s", flush=True)
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4: tell Popen
    lines = log_path.read_text().splitlines()
    if proc.returncode != 0:
        print("\n".join(lines[-25:]), file=sys.stderr)
        raise SystemExit(f"bench_train: {label} failed (exit {proc.returncode}); full log: {log_path}")
    return lines, usage.ru_maxrss * 1024  # Linux: kilobytes


def child_peak_cuda(lines):
    """The CUDA peak the child reported, or None (CPU run)."""
    for line in reversed(lines):
        if line.startswith(CHILD_REPORT):
            return json.loads(line[len(CHILD_REPORT):]).get("cuda_max_allocated")
    return None


def peak_name(cuda):
    return "CUDA max allocated" if cuda else "max RSS"


def child_args(common, row, total, save_dir, extra):
    """fairseq-train's arguments for one run: the bench's common ones, the row's, a run of
    `total` updates, save_dir, and --extra last (it overrides the rest)."""
    # --max-update after the row's arguments, so that it wins (argparse keeps the last): a BERT
    # row passes its driver's --max-update DEFAULT_MAX_UPDATE with --total-num-update
    # DEFAULT_MAX_UPDATE and its --warmup-updates, and those two stay, so polynomial_decay's LR
    # over these few updates is the full-length row's LR at the same updates (without them
    # --total-num-update would follow --max-update and decay the LR to 0 within the run, and the
    # warm-up would not be the row's).
    return [*common, *row, "--max-update", str(total), "--save-dir", str(save_dir), *extra]


def fairseq_train_child(argv):
    """Child mode: fairseq-train with `argv`, then one line with the CUDA peak (when on CUDA)."""
    import torch
    from fairseq_cli.train import cli_main

    sys.argv = ["fairseq-train", *argv]
    cli_main()
    peak = torch.cuda.max_memory_allocated() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    print(CHILD_REPORT + json.dumps({"cuda_max_allocated": peak}), flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, help="fairseq-preprocess output (default: data-bin/multi30k.de-en if "
                                             "prepared, else data-bin/synthetic.de-en)")
    p.add_argument("--configs", type=Path, default=REPO / "configs" / "multi30k",
                   help="row configurations (common.conf + <row>.conf) giving the models")
    p.add_argument("--rows", default="preln,bn,pnv,pn", help="rows to train, comma-separated; --baseline is added")
    p.add_argument("--baseline", default=BASELINE, help="the LayerNorm row the others are compared with (preln; "
                                                       "the language-model rows: postln, the BERT rows: preln-nowarmup)")
    p.add_argument("--task", help="fairseq task of the rows (default translation_pn; language_modeling_pn for "
                                  "configs/lm-multi30k; the BERT rows name theirs, masked_lm_pn)")
    p.add_argument("--rounds", type=int, default=3, help="runs per model, interleaved (3)")
    p.add_argument("--warmup", type=int, default=10, help="updates at the start of each run left out of words/s (10)")
    p.add_argument("--updates", type=int, default=30, help="updates measured per run, after the warm-up (30)")
    p.add_argument("--extra", default="", help="extra fairseq-train arguments for every run, one string (e.g. "
                                                "\"--norm-impl eager\"); they come last, so they override the configs; "
                                                "a single flag needs the = form: --extra=--fp16")
    p.add_argument("--eager", action="store_true",
                   help="also run each bn/pnv/pn row with --norm-impl eager, side by side (skipped with a note "
                        "when this checkout has no --norm-impl)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="auto: CUDA when available")
    p.add_argument("--threads", type=int, default=0, help="OMP/MKL threads of each child (0: torch's default)")
    p.add_argument("--log-dir", type=Path, help="where the children's logs go (default: a new temporary directory)")
    a = p.parse_args()
    if a.rounds < 1 or a.updates < 1 or a.warmup < 0:
        p.error("--rounds and --updates must be >= 1, --warmup >= 0")
    rows = [r for r in a.rows.split(",") if r]
    if a.baseline in rows:
        rows.remove(a.baseline)
    rows.insert(0, a.baseline)  # the baseline always runs, and is listed first

    import torch  # after argument parsing: --help stays fast
    cuda = torch.cuda.is_available() if a.device == "auto" else a.device == "cuda"
    if cuda and not torch.cuda.is_available():
        raise SystemExit("bench_train: --device cuda but torch sees no GPU: "
                         "install a CUDA build of torch, or use --device cpu")
    data = (a.data or default_data(a.configs, a.baseline)).resolve()
    log_dir = (a.log_dir or Path(tempfile.mkdtemp(prefix="bench_train."))).resolve()
    log_dir.mkdir(parents=True, exist_ok=True)

    variants = {row: row_args(a.configs, row) for row in rows}
    row_task = flag_value(variants[a.baseline], "--task")  # the BERT rows carry their driver's task
    if row_task and a.task and a.task != row_task:
        p.error(f"--task {a.task}, but the rows of {a.configs} train task {row_task}: drop --task")
    task = [] if row_task else ["--task", a.task or "translation_pn"]
    if a.eager:
        if has_flag("--norm-impl"):
            for row in [r for r in rows if norm_of(r) in BATCH_STAT_ROWS]:
                variants[f"{row}+eager"] = variants[row] + ["--norm-impl", "eager"]
        else:
            print("note: --eager skipped: this checkout's model has no --norm-impl flag "
                  "(fairseq-train --user-dir pn_fairseq --arch transformer_pn -h lists none)")

    total = a.warmup + a.updates
    common = [str(data), "--user-dir", str(REPO / "pn_fairseq"), *task, "--seed", "1",
              "--log-format", "json", "--log-interval", "1", "--no-progress-bar",
              "--disable-validation", "--no-save"] + ([] if cuda else ["--cpu"])
    extra = shlex.split(a.extra)
    env = dict(os.environ)
    if a.threads:
        env.update(OMP_NUM_THREADS=str(a.threads), MKL_NUM_THREADS=str(a.threads))
    device = torch.cuda.get_device_name() if cuda else f"cpu, {a.threads or os.cpu_count()} threads per run"
    print(f"bench_train: data {data}, models {a.configs}/{{{','.join(rows)}}}.conf, device {device}, "
          f"torch {torch.__version__}")
    print(f"each run: {a.warmup} warm-up + {a.updates} measured updates; {a.rounds} rounds x {len(variants)} models; "
          f"extra args: {a.extra or '(none)'}; logs: {log_dir}")
    print(f"load average before: {os.getloadavg()[0]:.2f} (other load slows all models alike; ratios stay comparable)",
          flush=True)

    wps = {label: [] for label in variants}
    peak = {label: 0 for label in variants}
    for r in range(a.rounds):
        for label in round_order(variants, r):
            run_dir = log_dir / f"round{r + 1}-{label}"
            run_dir.mkdir(exist_ok=True)
            # --save-dir inside the run's directory: fairseq-train touches it even with --no-save,
            # and must never resume from (or write into) a real checkpoint directory.
            cmd = [sys.executable, str(SELF), CHILD_FLAG,
                   *child_args(common, variants[label], total, run_dir / "ckpt", extra)]
            t0 = time.monotonic()
            lines, rss = run_child(label, cmd, run_dir / "train.log", total, env)
            try:
                speed, n = words_per_second(train_records(lines), a.warmup)
            except ValueError as e:
                raise SystemExit(f"bench_train: {label}: {e}; log: {run_dir / 'train.log'}") from e
            mem = (child_peak_cuda(lines) if cuda else rss) or 0
            wps[label].append(speed)
            peak[label] = max(peak[label], mem or 0)
            print(f"round {r + 1}/{a.rounds} {label:14s} {speed:9.0f} words/s over {n} updates, "
                  f"peak {peak_name(cuda)} {mem / 2**20:8.0f} MiB ({time.monotonic() - t0:.0f} s)", flush=True)

    print(f"load average after: {os.getloadavg()[0]:.2f}")
    base_wps, base_mem = max(wps[a.baseline]), peak[a.baseline]
    # Column widths follow the longest name: BERT rows are called preln-nowarmup, preln-pnv, ...
    w = max(10, *(len(label) for label in variants))
    x = "x base"
    print(f"\n{'model':{w}s} {'words/s':>9s} {x:>8s} {'rounds spread':>13s} "
          f"{'peak MiB':>9s} {x:>8s}  target (words/s vs {a.baseline}; x base: ratio to {a.baseline})")
    for label in variants:
        best, ratio = max(wps[label]), max(wps[label]) / base_wps
        spread = (best - min(wps[label])) / best
        mem_ratio = f"{peak[label] / base_mem:8.3f}" if base_mem else f"{'-':>8s}"
        print(f"{label:{w}s} {best:9.0f} {ratio:8.3f} {spread:13.1%} {peak[label] / 2**20:9.0f} "
              f"{mem_ratio}  {verdict(label, ratio)}")
    print(f"(words/s: best of {a.rounds} rounds; spread: (best - worst) / best; peak: {peak_name(cuda)})")


if __name__ == "__main__":
    if sys.argv[1:2] == [CHILD_FLAG]:
        fairseq_train_child(sys.argv[2:])
    else:
        main()
