"""Decoding sentences/s (fairseq-generate, beam 5) of a pn checkpoint, unfolded and folded
by pn-fold, against a preln checkpoint of the same size.

Issue 11's target: folded pn decodes at least as fast as preln. The pn checkpoint is folded
here (pn_fairseq/checkpoints/fold.py) into the work directory; the three models then decode the same
batches of the same sentences in one process, interleaved over rounds (odd rounds in reverse
order), and each reports its fastest round (on a shared machine the best round is the stable
statistic, as in bench_norms.py).

What is timed: fairseq-generate's own loop, rebuilt from fairseq_cli/generate.py with its
configuration (parsed by fairseq's generation parser from the flags below), its model
loading (checkpoint_utils.load_model_ensemble, prepare_for_inference_) and its generator
(task.build_generator); the clock runs around each batch's task.inference_step only,
exactly what fairseq-generate's "Translated N sentences (... sentences/s)" covers (its
gen_timer). Loading, batching, detokenization, BPE removal, scoring and printing are left
out: they cost the same for every model. Batches are fairseq's (ordered_indices,
filter_indices_by_size, batch_by_size over --batch-size); --sentences N keeps N sentences
spread evenly over the subset for a quick run. pn and preln emit hypotheses of different
lengths, and beam search runs as many decoder steps as a batch's longest hypothesis needs, so
their sentences/s differ by more than the models' cost; --fixed-length N makes every model
decode exactly N tokens per sentence and so compares the cost per step. The folded model must give the unfolded
one's hypotheses token for token; the script checks that and exits with status 1 if not.

Inputs: --pn / --preln / --data default to the Multi30k seed-1 runs
(checkpoints/multi30k/{pn,preln}/seed1/checkpoint_last.pt, data-bin/multi30k.de-en). When
neither checkpoint exists (a fresh machine), both models are trained here for
--train-updates updates from the Multi30k row configs (configs/multi30k, 3+3 layers, d=256)
on data-bin/multi30k.de-en or, when that is not prepared, data-bin/synthetic.de-en; such
briefly trained models can emit long repetitive hypotheses, so compare pn with preln in
tokens/s there, not sentences/s.

    python bench/bench_decode.py [--sentences 200] [--rounds 3] [--threads 2] [--fixed-length 20]
    python bench/bench_decode.py --pn PN.pt --preln PRELN.pt --data DATA_BIN [--gen-subset test]
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

from bench_train import round_order, row_args  # same directory: the Multi30k row configs, the round order

REPO = Path(__file__).resolve().parents[1]
MULTI30K = REPO / "checkpoints" / "multi30k"
DATA_CANDIDATES = ("multi30k.de-en", "synthetic.de-en")  # under data-bin/, first prepared wins
BASELINE = "preln"


def prepared(data: Path) -> bool:
    return (data / "dict.de.txt").is_file() and (data / "test.de-en.de.bin").is_file()


def fallback_data() -> Path:
    for name in DATA_CANDIDATES:
        if prepared(REPO / "data-bin" / name):
            return REPO / "data-bin" / name
    raise SystemExit("bench_decode: no binarized data under data-bin/: run `bash data-prep/prepare-multi30k.sh` "
                     "(Multi30k, 1.3 MB download) or `bash data-prep/prepare-synthetic.sh` (offline), "
                     "or pass --data DIR")


def train_fallback(row: str, data: Path, work: Path, updates: int, threads: int) -> Path:
    """Train the Multi30k row's model for `updates` updates; return its last checkpoint."""
    save_dir = work / f"train-{row}"
    ckpt = save_dir / "checkpoint_last.pt"
    if ckpt.is_file():
        return ckpt
    cmd = [sys.executable, "-m", "fairseq_cli.train", str(data), "--user-dir", str(REPO / "pn_fairseq"),
           *row_args(REPO / "configs" / "multi30k", row), "--task", "translation_pn", "--seed", "1", "--cpu",
           "--max-update", str(updates), "--save-dir", str(save_dir), "--no-epoch-checkpoints",
           "--disable-validation", "--no-progress-bar", "--log-interval", "10"]
    env = dict(os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {}))
    print(f"training {row} for {updates} updates on {data} (log: {save_dir}/train.log) ...", flush=True)
    save_dir.mkdir(parents=True, exist_ok=True)
    with open(save_dir / "train.log", "w") as log:
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    if proc.returncode != 0 or not ckpt.is_file():
        raise SystemExit(f"bench_decode: training {row} failed; see {save_dir}/train.log")
    return ckpt


def generation_cfg(a, data: Path, cpu: bool):
    """fairseq-generate's configuration for these flags, parsed by fairseq's own parser."""
    from fairseq import options
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    argv = [str(data), "--user-dir", str(REPO / "pn_fairseq"), "--path", "(per case)",
            "--source-lang", a.source_lang, "--target-lang", a.target_lang, "--gen-subset", a.gen_subset,
            "--beam", str(a.beam), "--batch-size", str(a.batch_size), "--required-batch-size-multiple", "1",
            "--remove-bpe", "--seed", "1"] + (["--cpu"] if cpu else [])
    if a.fixed_length:  # every hypothesis exactly N tokens: the same decoder steps for every model
        argv += ["--min-len", str(a.fixed_length), "--max-len-a", "0", "--max-len-b", str(a.fixed_length)]
    return convert_namespace_to_omegaconf(options.parse_args_and_arch(options.get_generation_parser(), argv))


def load_case(cfg, task, path: Path, cuda: bool):
    """One model, loaded and prepared as fairseq-generate does, and its generator."""
    from fairseq import checkpoint_utils

    models, saved_cfg = checkpoint_utils.load_model_ensemble([str(path)], task=task)
    for model in models:
        if cuda:
            model.cuda()
        model.prepare_for_inference_(cfg)
    return models, task.build_generator(models, cfg.generation), saved_cfg


def make_batches(task, cfg, models, sentences: int):
    """fairseq's batches of the subset (all of it, or `sentences` spread evenly over it)."""
    import numpy as np
    from fairseq import utils

    dataset = task.dataset(cfg.dataset.gen_subset)
    indices = dataset.ordered_indices()
    if 0 < sentences < len(dataset):
        keep = np.zeros(len(dataset), dtype=bool)
        keep[np.linspace(0, len(dataset) - 1, sentences).round().astype(int)] = True
        indices = indices[keep[indices]]
    max_positions = utils.resolve_max_positions(task.max_positions(), *[m.max_positions() for m in models])
    indices, ignored = dataset.filter_indices_by_size(indices, max_positions)
    if len(ignored):
        raise SystemExit(f"bench_decode: {len(ignored)} sentences exceed the models' maximum length")
    batches = dataset.batch_by_size(indices, max_tokens=cfg.dataset.max_tokens, max_sentences=cfg.dataset.batch_size,
                                    required_batch_size_multiple=cfg.dataset.required_batch_size_multiple)
    return [dataset.collater([dataset[i] for i in batch]) for batch in batches]


def decode(task, generator, models, batches, cuda: bool):
    """(seconds in task.inference_step, generated tokens, {sentence id: best hypothesis' tokens})."""
    import torch
    from fairseq import utils

    seconds, tokens, hyps = 0.0, 0, {}
    for sample in batches:
        sample = utils.move_to_cuda(sample) if cuda else sample
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = task.inference_step(generator, models, sample)
        if cuda:
            torch.cuda.synchronize()
        seconds += time.perf_counter() - t0
        for sid, h in zip(sample["id"].tolist(), out):
            hyps[sid] = h[0]["tokens"].tolist()
            tokens += len(hyps[sid])
    return seconds, tokens, hyps


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pn", type=Path, help="pn checkpoint (default: checkpoints/multi30k/pn/seed1/checkpoint_last.pt)")
    p.add_argument("--preln", type=Path,
                   help="preln checkpoint of the same size "
                        "(default: checkpoints/multi30k/preln/seed1/checkpoint_last.pt)")
    p.add_argument("--data", type=Path, help="fairseq-preprocess output (default: data-bin/multi30k.de-en)")
    p.add_argument("--source-lang", default="de")
    p.add_argument("--target-lang", default="en")
    p.add_argument("--gen-subset", default="test")
    p.add_argument("--beam", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=128, help="sentences per batch (128)")
    p.add_argument("--sentences", type=int, default=0, help="decode only this many sentences, spread evenly over "
                                                             "the subset (0: all)")
    p.add_argument("--fixed-length", type=int, default=0,
                   help="force every hypothesis to this many tokens (--min-len N --max-len-a 0 --max-len-b N), so "
                        "that all models run the same number of decoder steps and the comparison measures the "
                        "cost of a step, not the length of what each model chooses to say (0: off)")
    p.add_argument("--rounds", type=int, default=3, help="timed passes per model, interleaved (3)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--work-dir", type=Path, help="where the folded checkpoint (and fallback models) go "
                                                 "(default: a new temporary directory)")
    p.add_argument("--train", action="store_true",
                   help="train both models here, as on a machine without the Multi30k checkpoints")
    p.add_argument("--train-updates", type=int, default=100,
                   help="when training here: updates per model (100)")
    a = p.parse_args()
    if a.rounds < 1 or a.sentences < 0:
        p.error("--rounds must be >= 1 and --sentences >= 0")

    import torch  # after argument parsing: --help stays fast

    import pn_fairseq  # noqa: F401  (registers the model; lets torch load fairseq checkpoints)
    from fairseq import tasks
    from pn_fairseq.cli import quiet_library_logging
    from pn_fairseq.checkpoints.fold import FoldError, fold_checkpoint_file

    quiet_library_logging()
    if a.threads:
        torch.set_num_threads(a.threads)
    cuda = a.device == "cuda"
    if cuda and not torch.cuda.is_available():
        raise SystemExit("bench_decode: --device cuda but torch sees no GPU")
    work = (a.work_dir or Path(tempfile.mkdtemp(prefix="bench_decode."))).resolve()
    work.mkdir(parents=True, exist_ok=True)

    pn = a.pn or MULTI30K / "pn" / "seed1" / "checkpoint_last.pt"
    preln = a.preln or MULTI30K / "preln" / "seed1" / "checkpoint_last.pt"
    data = a.data or REPO / "data-bin" / "multi30k.de-en"
    trained_here = a.train or (not pn.is_file() and not preln.is_file() and a.pn is None and a.preln is None)
    if trained_here:
        if a.pn is not None or a.preln is not None:
            p.error("--train trains both models: leave out --pn and --preln")
        data = a.data or fallback_data()
        print("note: training both models here" if a.train else
              f"note: no Multi30k checkpoints under {MULTI30K}: training both models here (fallback)")
        preln = train_fallback("preln", data, work, a.train_updates, a.threads)
        pn = train_fallback("pn", data, work, a.train_updates, a.threads)
    for path in (pn, preln):
        if not path.is_file():
            raise SystemExit(f"bench_decode: no checkpoint {path}; pass --pn and --preln")
    if not prepared(data):
        raise SystemExit(f"bench_decode: {data} holds no binarized data (dict.de.txt, test.de-en.de.bin); pass --data")

    folded = work / "pn-folded.pt"
    try:
        report = fold_checkpoint_file(str(pn), str(folded))
    except FoldError as e:
        raise SystemExit(f"bench_decode: cannot fold {pn}: {e}") from None
    print(report.summary().splitlines()[0])

    with warnings.catch_warnings():  # hydra's deprecation notices about fairseq's own configs
        warnings.simplefilter("ignore")
        cfg = generation_cfg(a, data, cpu=not cuda)
    task = tasks.setup_task(cfg.task)
    cases = {}
    for label, path in ((BASELINE, preln), ("pn", pn), ("pn folded", folded)):
        models, generator, saved_cfg = load_case(cfg, task, path, cuda)
        cases[label] = (models, generator)
        if len(cases) == 1:
            task.load_dataset(cfg.dataset.gen_subset, task_cfg=saved_cfg.task)
    batches = make_batches(task, cfg, cases[BASELINE][0], a.sentences)
    n = sum(len(b["id"]) for b in batches)
    device = torch.cuda.get_device_name() if cuda else f"cpu, {torch.get_num_threads()} threads"
    print(f"bench_decode: {n} sentences of {data.name}/{cfg.dataset.gen_subset} in {len(batches)} batches, beam "
          f"{a.beam}, device {device}, torch {torch.__version__}\n  preln {preln}\n  pn    {pn}\n  folded {folded}")
    print(f"load average before: {os.getloadavg()[0]:.2f} (other load slows all models alike; ratios stay comparable)",
          flush=True)

    for models, generator in cases.values():  # warm-up: allocator, caches, lazy initialisation
        decode(task, generator, models, batches[:1], cuda)
    times = {label: [] for label in cases}
    tokens, hyps = {}, {}
    for r in range(a.rounds):
        for label in round_order(cases, r):
            models, generator = cases[label]
            seconds, tokens[label], hyps_r = decode(task, generator, models, batches, cuda)
            hyps.setdefault(label, hyps_r)
            times[label].append(seconds)
            print(f"round {r + 1}/{a.rounds} {label:10s} {n / seconds:8.1f} sentences/s", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}")

    base = n / min(times[BASELINE])
    print(f"\n{'model':10s} {'sentences/s':>11s} {'x preln':>8s} {'tokens/s':>9s} {'tokens/sent':>11s} "
          f"{'rounds spread':>13s}")
    for label, t in times.items():
        best = min(t)
        print(f"{label:10s} {n / best:11.1f} {n / best / base:8.3f} {tokens[label] / best:9.0f} "
              f"{tokens[label] / n:11.2f} {(max(t) - best) / max(t):12.1%}")
    ratio = min(times[BASELINE]) / min(times["pn folded"])
    if trained_here:
        print("note: briefly trained models: pn and preln hypotheses differ in length; compare them in tokens/s")
    print(f"(best of {a.rounds} rounds; spread: (slowest - fastest) / slowest)\n"
          f"target: folded pn >= 1.00x preln sentences/s: {ratio:.3f}x {'PASS' if ratio >= 1.0 else 'MISS'}")
    differ = [sid for sid in hyps["pn"] if hyps["pn"][sid] != hyps["pn folded"].get(sid)]
    if differ:
        print(f"FOLDED HYPOTHESES DIFFER from the unfolded ones for {len(differ)} of {n} sentences "
              f"(ids {differ[:10]}{' ...' if len(differ) > 10 else ''})")
        return 1
    print(f"folded and unfolded pn: identical hypotheses for all {n} sentences")
    return 0


if __name__ == "__main__":
    sys.exit(main())
