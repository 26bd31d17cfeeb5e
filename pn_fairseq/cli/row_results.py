"""Helpers the row scripts (scripts/run_row.sh) call: ``python -m pn_fairseq.cli.row_results``.

* ``count-test DATA SRC TGT``: number of sentences in the binarized test split (so that
  ``pn-score --expected-sentences`` notices any sentence fairseq-generate dropped).
* ``write``: merge ``pn-score --json`` output with the run's metadata into
  ``results.json`` (schema: :mod:`pn_fairseq.evaluation.results`), atomically; with ``--gen-output``
  first write the sorted hypotheses and references beside it (``test.hyp.txt``,
  ``test.ref.txt``; with ``--raw-ref`` also ``test.hyp.detok.txt``, ``test.ref.raw.txt``),
  the texts :mod:`pn_fairseq.evaluation.significance` compares.
* ``texts RUN_DIR...``: write those text files for finished runs that lack them, from their
  ``generate-test.txt`` (runs made before the files existed).
* ``check-run --save-dir DIR [decoding settings] -- fairseq-train ...``: whether the run
  directory's training and results can be reused for this command (:mod:`pn_fairseq.evaluation.row_state`);
  prints ``ACTION<TAB>why`` (``reuse``, ``decode``, ``train``), or exits 3 with the one line
  that says what differs. Before ``train`` it parses the command as fairseq-train would.
* ``same-training DONE -- fairseq-train ...``: whether the finished training recorded in DONE
  (``train.done``: its command on the first line) is this command's, by its settings
  (:func:`pn_fairseq.evaluation.row_state.differences`: where the code or the data directory's link
  lives is not a setting, so a queue's new code snapshot still reuses and resumes its runs);
  exits 3 with one line naming what differs. The language-model drivers call it.
"""
import os
import argparse
import json
import shlex
import sys

from pn_fairseq.evaluation import results, row_state, significance
from pn_fairseq.evaluation.scoring import ScoringError, count_split_sentences


def checkpoint_progress(path):
    """pn_fairseq.checkpoints.files.checkpoint_progress, imported here: it needs torch, which the
    other subcommands (check-run before training, count-test) start without."""
    from pn_fairseq.checkpoints.files import checkpoint_progress as progress

    return progress(path)


def write_results(args):
    with open(args.scores) as f:
        scores = json.load(f)
    texts = None
    if args.gen_output:
        names = significance.write_test_texts(os.path.dirname(os.path.abspath(args.output)), args.gen_output,
                                              args.raw_ref or None, args.lang)
        texts = {"hypotheses": names[0], "references": names[1]}
        if len(names) > 2:
            texts.update(hypotheses_detok=names[2], references_raw=names[3])
    updates, trained_s = checkpoint_progress(args.last_checkpoint)
    # --wall-time is the row driver's stopwatch, which misses the parts of a run before an
    # interruption; fairseq's own clock in the checkpoint counts them all.
    result = results.build_result(
        scores, row=args.row, dataset=args.dataset, paper_bleu=float(args.paper) if args.paper else None,
        updates=updates, wall_time_s=float(args.wall_time) if trained_s is None else round(trained_s, 1),
        checkpoint=args.checkpoint, run_dir=args.run_dir, averaged_checkpoints=args.averaged,
        beam=args.beam, lenpen=args.lenpen,
    )
    if args.seed is not None:
        result["seed"] = args.seed
    if args.train_command is not None:
        result.update(run_settings(args))
    if texts is not None:
        result["texts"] = texts
    if args.last_scores:
        with open(args.last_scores) as f:
            last = json.load(f)
        result["last_checkpoint"] = {"bleu": last["bleu"], "bleu_main": last["bleu_main"]}
    results.write_result(args.output, result)
    print(json.dumps(result, indent=2))


def _int_or_none(text):
    return int(text) if text else None


def run_settings(args):
    """What results.json records beside the scores so that a rerun (and ``pn-results``) can tell
    which run it is: the training command, the limits asked and the recipe's, the decoding
    settings, and how the run departs from its row's recipe."""
    limits = {"max_update": _int_or_none(args.max_update), "max_epoch": _int_or_none(args.max_epoch),
              "recipe_max_update": _int_or_none(args.recipe_max_update),
              "recipe_max_epoch": _int_or_none(args.recipe_max_epoch)}
    differences = row_state.recipe_differences(**limits, extra_args=args.extra_args)
    return {"train_command": args.train_command, **limits, "update_freq": args.update_freq, "nproc": args.nproc,
            "extra_args": args.extra_args, "decoding": decoding_of(args),
            "settings_match_recipe": not differences, "recipe_differences": differences}


def decoding_of(args):
    return row_state.decoding_settings(args.beam, args.lenpen, args.avg_last, args.avg_kind, args.scoring)


def add_decoding_args(parser, required):
    parser.add_argument("--beam", type=int, required=True)
    parser.add_argument("--lenpen", type=float, required=True)
    parser.add_argument("--avg-last", type=int, required=required, help="checkpoints the recipe averages")
    parser.add_argument("--avg-kind", choices=("epoch", "update"), required=required)
    parser.add_argument("--scoring", required=required, help="pn-score --scheme")


def check_run(args):
    """``decide``, and fairseq-train's own parsing of the command before it trains or where the
    command differs from the run's (a bad EXTRA_ARGS flag is named as such, not as a setting)."""
    try:
        try:
            action, why = row_state.decide(args.save_dir, args.command, decoding_of(args))
        except row_state.RunMismatch as mismatch:
            refused = mismatch
            action = why = None
        else:
            refused = None
        if action in (None, "train"):
            error = row_state.check_train_args(args.command)
            if error is not None:
                raise row_state.RunMismatch(f"the training command is refused ({error}): check EXTRA_ARGS")
        if refused is not None:
            raise refused
    except row_state.RunMismatch as err:
        print(err)
        return 3
    print(f"{action}\t{why}")
    return 0


def same_training(args):
    with open(args.done, encoding="utf-8") as f:
        recorded = f.readline().strip()
    differ = row_state.differences(row_state.settings(shlex.split(recorded)), row_state.settings(args.command))
    if differ:
        print(f"{args.done} records a training with other settings ({'; '.join(differ)})")
        return 3
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m pn_fairseq.cli.row_results")
    sub = parser.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("count-test")
    c.add_argument("data")
    c.add_argument("src")
    c.add_argument("tgt")
    w = sub.add_parser("write")
    for name in ("scores", "row", "dataset", "paper", "last-checkpoint", "wall-time", "checkpoint", "run-dir", "output"):
        w.add_argument("--" + name, required=name != "paper", default="")
    w.add_argument("--averaged", type=int, default=1)
    add_decoding_args(w, required=False)
    w.add_argument("--train-command", help="the training command, shell-quoted (with the arguments below: "
                   "recorded in results.json for reruns and pn-results)")
    for name in ("max-update", "max-epoch", "recipe-max-update", "recipe-max-epoch"):
        w.add_argument("--" + name, default="", help="empty: no limit")
    w.add_argument("--extra-args", default="")
    w.add_argument("--update-freq", type=int, default=1)
    w.add_argument("--nproc", type=int, default=1)
    w.add_argument("--seed", type=int, help="the run's training seed (recorded in results.json)")
    w.add_argument("--gen-output", help="fairseq-generate output: write the sorted texts beside results.json")
    w.add_argument("--raw-ref", help="with --gen-output: raw references (WMT14), for the detokenized texts")
    w.add_argument("--last-scores", help="pn-score --json of checkpoint_last.pt when an average was scored: "
                   "recorded as results.json's last_checkpoint")
    w.add_argument("--lang", default="de", help="target language for Moses detokenization (default: %(default)s)")
    t = sub.add_parser("texts")
    t.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    r = sub.add_parser("check-run")
    r.add_argument("--save-dir", required=True)
    add_decoding_args(r, required=True)
    r.add_argument("command", nargs=argparse.REMAINDER, help="-- fairseq-train DATA ...")
    d = sub.add_parser("same-training")
    d.add_argument("done", metavar="DONE")
    d.add_argument("command", nargs=argparse.REMAINDER, help="-- fairseq-train DATA ...")
    args = parser.parse_args(argv)
    if args.cmd == "same-training":
        return same_training(argparse.Namespace(done=args.done, command=[a for a in args.command[:1] if a != "--"]
                                                + args.command[1:]))
    if args.cmd == "check-run":
        if args.command[:1] == ["--"]:
            args.command = args.command[1:]
        return check_run(args)
    if args.cmd == "count-test":
        try:
            print(count_split_sentences(args.data, args.src, args.tgt))
        except ScoringError as err:
            raise SystemExit(str(err)) from None
    elif args.cmd == "texts":
        for run_dir in args.run_dirs:
            gen = os.path.join(run_dir, significance.GENERATE_FILE)
            if os.path.exists(os.path.join(run_dir, significance.HYP_FILE)):
                print(f"{run_dir}: already has {significance.HYP_FILE}")
                continue
            try:
                names = significance.write_test_texts(run_dir, gen)
            except (OSError, ScoringError, significance.SignificanceError) as err:
                raise SystemExit(f"{run_dir}: {err}") from None
            print(f"{run_dir}: wrote {', '.join(names)}")
    else:
        write_results(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
