"""Batch-size sweep (PowerNorm Fig. 5): BLEU against the micro-batch size.

The effective batch stays ``total_tokens`` (4k in the paper) while each forward pass, and
hence every batch statistic, sees only a micro-batch of ``micro_tokens``; fairseq
accumulates ``total_tokens / micro_tokens`` of them per update (``--update-freq``). Each
(row, micro-batch) is one run of the row driver ``scripts/run_row.sh`` in
``OUT/runs/<row>/mt<micro_tokens>/`` (resumable: the driver skips finished work), with
``UPDATE_FREQ`` and ``EXTRA_ARGS="... --max-tokens <micro>"`` (appended last, so it
overrides the config's ``--max-tokens``: argparse keeps the last occurrence).
"""
import os
import re
import subprocess

from . import AnalysisError

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DRIVER = os.path.join(REPO, "scripts", "run_row.sh")
CONFIGS = os.path.join(REPO, "configs")


def row_norm(dataset, row):
    """The encoder norm ('layer', 'batch', 'power_v', 'power') a row's config selects."""
    from pn_fairseq.models.architectures import ROWS, SIZES

    with open(os.path.join(CONFIGS, dataset, f"{row}.conf"), encoding="utf-8") as f:
        text = f.read()
    # An explicit --norm-type in the row's flags wins over the architecture's default.
    flag = re.search(r"--norm-type\s+[\"']?(\w+)", text)
    if flag:
        return flag.group(1)
    arch = re.search(r"^\s*ARCH=[\"']?([\w-]+)", text, re.M)
    for name, (norm, _) in ROWS.items():
        for size in SIZES:
            if arch and arch.group(1) == f"transformer_{name}{size}":
                return norm
    return None


def check_rows(dataset, rows):
    if not os.path.isfile(os.path.join(CONFIGS, dataset, "common.conf")):
        known = sorted(d for d in os.listdir(CONFIGS) if os.path.isdir(os.path.join(CONFIGS, d)))
        raise AnalysisError(f"unknown dataset '{dataset}' (configs: {', '.join(known)})")
    known = sorted(n[:-5] for n in os.listdir(os.path.join(CONFIGS, dataset))
                   if n.endswith(".conf") and n != "common.conf")
    for row in rows:
        if row not in known:
            raise AnalysisError(f"unknown row '{row}' for {dataset} (rows: {', '.join(known)})")


def plan(dataset, rows, micro_tokens, total_tokens, out):
    """One run per (row, micro-batch): a list of dicts with row, micro_tokens, update_freq, run_dir."""
    check_rows(dataset, rows)
    for micro in micro_tokens:
        if micro <= 0 or micro > total_tokens or total_tokens % micro:
            raise AnalysisError(f"micro-batch {micro} tokens does not divide the effective batch "
                                f"{total_tokens} tokens into a whole --update-freq")
    runs = [{"row": row, "micro_tokens": micro, "update_freq": total_tokens // micro,
             "run_dir": os.path.join(os.path.abspath(out), "runs", row, f"mt{micro}")}
            for row in rows for micro in micro_tokens]
    _refuse_pn_accumulation(dataset, runs)
    return runs


def _refuse_pn_accumulation(dataset, runs):
    from pn_fairseq.norms import PowerNorm

    if hasattr(PowerNorm, "set_num_updates"):
        return  # PN counts optimizer updates for its warm-up: gradient accumulation is safe
    for run in runs:
        if run["update_freq"] > 1 and row_norm(dataset, run["row"]) == "power":
            raise AnalysisError(
                f"row '{run['row']}' at {run['micro_tokens']} tokens needs --update-freq {run['update_freq']}, "
                "but this PowerNorm counts forward calls, not optimizer updates (no PowerNorm.set_num_updates): "
                f"its warm-up would end {run['update_freq']}x too early; leave the row out or use "
                "--micro-tokens equal to --total-tokens")


def run_env(run, base_env):
    """The environment of one row-driver call."""
    env = dict(base_env)
    env["SAVE_DIR"] = run["run_dir"]
    env["UPDATE_FREQ"] = str(run["update_freq"])
    env["EXTRA_ARGS"] = f"{base_env.get('EXTRA_ARGS', '')} --max-tokens {run['micro_tokens']}".strip()
    return env


def execute(dataset, runs, dry_run=False, report=None, env=None):
    """Run (or, dry, print) the row driver for every planned run, in order.

    Dry: the driver's commands go to stdout, nothing runs. Otherwise its output goes to
    stderr and a failing run stops the sweep with an :class:`AnalysisError`.
    """
    report = report or (lambda message: None)
    env = dict(os.environ if env is None else env)
    env.pop("DRY_RUN", None)
    # One run per directory: SEEDS would nest seed<k>/ runs where collect() does not look.
    if env.pop("SEEDS", None):
        report("SEEDS is ignored: the sweep runs each (row, micro-batch) once, with SEED (default 1)")
    for i, run in enumerate(runs, 1):
        what = f"run {i}/{len(runs)}: {run['row']}, micro-batch {run['micro_tokens']} tokens, " \
               f"--update-freq {run['update_freq']} -> {run['run_dir']}"
        call_env = run_env(run, env)
        if dry_run:
            call_env["DRY_RUN"] = "1"
            proc = subprocess.run(["bash", DRIVER, dataset, run["row"]], env=call_env, capture_output=True, text=True)
            print(f"# {what}")
            print(proc.stdout, end="")
            if proc.returncode:
                lines = proc.stderr.strip().splitlines()
                raise AnalysisError(f"{what}: the row driver failed ({lines[-1] if lines else proc.returncode})")
            continue
        report(what)
        # The driver's own output (training log, scores) goes to our stderr: stdout stays clean.
        proc = subprocess.run(["bash", DRIVER, dataset, run["row"]], env=call_env, stdout=2)
        if proc.returncode:
            raise AnalysisError(f"{what} failed (exit {proc.returncode}); see {run['run_dir']}/train.log")


def collect(dataset, runs, total_tokens):
    """BLEU of every planned run from its ``results.json`` (None where it does not exist yet), and
    the validation loss its ``train.log`` records at the update its checkpoint holds (None where
    there is none): at this scale BLEU moves with the output length, the loss does not.

    Returns ``{"dataset", "total_tokens", "rows": {row: [{"micro_tokens", "update_freq",
    "run_dir", "bleu", "updates", "valid_loss"}]}}``.
    """
    from pn_fairseq.evaluation.results import ResultsError, load_result, valid_loss_at

    result = {"dataset": dataset, "total_tokens": total_tokens, "rows": {}}
    for run in runs:
        path = os.path.join(run["run_dir"], "results.json")
        bleu = updates = loss = None
        if os.path.isfile(path):
            try:
                data = load_result(path)
            except ResultsError as err:
                raise AnalysisError(str(err)) from None
            bleu, updates = data["bleu_main"], data["updates"]
            loss = valid_loss_at(run["run_dir"], updates)
        result["rows"].setdefault(run["row"], []).append(dict(run, bleu=bleu, updates=updates, valid_loss=loss))
    return result


def table(result):
    """The sweep as Markdown: one line per (row, micro-batch), BLEU and validation loss."""
    lines = ["| row | micro-batch (tokens) | --update-freq | test BLEU | validation loss |", "|---|---|---|---|---|"]
    for row, entry in result["rows"].items():
        for p in entry:
            bleu = "—" if p["bleu"] is None else f"{p['bleu']:.2f}"
            loss = "—" if p.get("valid_loss") is None else f"{p['valid_loss']:.3f}"
            lines.append(f"| {row} | {p['micro_tokens']} | {p['update_freq']} | {bleu} | {loss} |")
    return "\n".join(lines)


def relative_run_dirs(result, out):
    """``result`` with each ``run_dir`` relative to ``out`` (where batch-sweep.json lives), so that
    a sweep directory can be moved or committed and its JSON still points at its runs."""
    rows = {row: [dict(p, run_dir=os.path.relpath(p["run_dir"], out)) for p in entry]
            for row, entry in result["rows"].items()}
    return dict(result, rows=rows)


def missing(result):
    return [p["run_dir"] for entry in result["rows"].values() for p in entry if p["bleu"] is None]
