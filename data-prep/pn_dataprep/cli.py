"""Command line of the data-prep helpers: one subcommand per recipe tool.

    python -m pn_dataprep <command> ...      (what the data-prep/*.sh scripts run)
"""
import argparse
import os
import sys

from . import bpe, checks, extract, fetch, moses, synthetic
from .clean import CleanStats, clean_pairs, zip_strict
from pn_common.atomic import atomic_text_file
from .textio import DataPrepError, Progress, log, map_lines, read_lines, write_lines


def _cmd_tokenize(args):
    """normalize-punctuation | remove-non-printing-char | tokenizer.perl | lowercase, per flags."""
    for path in args.inputs:  # before the worker pool starts reading them
        if not os.path.exists(path):
            raise DataPrepError(f"missing input file {path}")

    def lines():
        for path in args.inputs:
            yield from read_lines(path)

    kwargs = dict(lang=args.lang, normalize_punct=args.normalize_punct,
                  remove_non_printing=args.remove_non_printing, tokenize=not args.no_tokenize,
                  aggressive=args.aggressive, lowercase=args.lowercase)
    stages = [name for name, on in (("normalize", args.normalize_punct), ("remove-non-printing", args.remove_non_printing),
                                     ("tokenize", not args.no_tokenize), ("lowercase", args.lowercase)) if on]
    write_lines(args.out, map_lines(moses.Preprocessor, kwargs, lines(), workers=args.workers),
                label=f"{'+'.join(stages) or 'copy'} -> {os.path.basename(args.out)}")


def _cmd_iwslt_train(args):
    write_lines(args.out, extract.iwslt_train_lines(read_lines(args.input)),
                label=f"strip IWSLT tags -> {os.path.basename(args.out)}")


def _cmd_segs(args):
    lines = read_lines(args.input)
    if args.raw:
        out = extract.raw_seg_lines(lines)
    else:
        out = extract.seg_lines(lines, straight_apostrophe=args.straight_apostrophe)
    n = write_lines(args.out, out, label=f"segments -> {os.path.basename(args.out)}")
    if n == 0:
        raise DataPrepError(f"{args.input} has no <seg> lines: not an xml/sgm file of the expected format")


def _cmd_clean(args):
    names = [f"{args.corpus}.{args.l1}", f"{args.corpus}.{args.l2}"]
    outs = [f"{args.out}.{args.l1}", f"{args.out}.{args.l2}"]
    stats = CleanStats()
    progress = Progress(f"clean {os.path.basename(args.corpus)} ({args.min}..{args.max} tokens, ratio {args.ratio:g})")
    pairs = zip_strict(read_lines(names[0]), read_lines(names[1]), *names)
    with atomic_text_file(outs[0]) as f_out, atomic_text_file(outs[1]) as e_out:
        for f, e in clean_pairs(pairs, args.min, args.max, args.ratio, names=names, stats=stats):
            f_out.write(f + "\n")
            e_out.write(e + "\n")
            progress.update()
    log(f"clean: input sentences {stats.read:,}, output sentences {stats.written:,}")


def _cmd_split_every(args):
    """awk '{if (NR%n != 0) print}' > kept ; awk '{if (NR%n == 0) print}' > picked."""
    with atomic_text_file(args.kept) as kept, atomic_text_file(args.picked) as picked:
        for i, line in enumerate(read_lines(args.input), 1):
            (picked if i % args.n == 0 else kept).write(line + "\n")


def _cmd_lm_text(args):
    size = extract.copy_lm_text(args.out, args.input, member=args.member)
    log(f"{args.input}{':' + args.member if args.member else ''} -> {os.path.basename(args.out)} ({size / 1e6:,.1f} MB)")


def _cmd_learn_bpe(args):
    learned = bpe.learn_joint_bpe(args.inputs, args.out, args.merges, workers=args.workers)
    log(f"BPE: {learned:,} merges learned ({args.merges:,} requested)")


def _cmd_apply_bpe(args):
    bpe.apply_bpe_file(args.codes, args.input, args.out, workers=args.workers)


def _cmd_fetch(args):
    fetch.download(args.url, args.out)


def _cmd_verify(args):
    fetch.verify(args.sums, args.dir, args.names)


def _parse_expect(spec):
    if spec in checks.EXPECTED_SIZES:
        return checks.EXPECTED_SIZES[spec]
    expected = {}
    for item in spec.split(","):
        split, _, n = item.partition("=")
        if split not in checks.SPLITS or not n.isdigit():
            raise argparse.ArgumentTypeError(f"bad --expect item {item!r}: use a dataset name or train=N,valid=N,test=N")
        expected[split] = checks.Expected(int(n))
    return expected


def _cmd_finalize(args):
    params = dict(p.split("=", 1) for p in args.param)
    checks.finalize(args.dir, args.dataset, args.src, args.tgt, expected=args.expect,
                    check=not args.no_size_check, params=params, raw_files=args.raw_file)


def _parse_expect_lm(spec):
    if spec not in checks.EXPECTED_LM_SIZES:
        raise argparse.ArgumentTypeError(f"no expected sizes for {spec!r}: use one of {', '.join(checks.EXPECTED_LM_SIZES)}")
    return checks.EXPECTED_LM_SIZES[spec]


def _cmd_finalize_lm(args):
    params = dict(p.split("=", 1) for p in args.param)
    checks.finalize_lm(args.dir, args.dataset, args.text_suffix, min_count=args.min_count, expected=args.expect,
                       check=not args.no_size_check, params=params, raw_files=args.raw_file)


def _cmd_synthetic(args):
    sizes = {"train": args.train, "valid": args.valid, "test": args.test}
    synthetic.write_corpus(args.outdir, seed=args.seed, sizes=sizes, src=args.src, tgt=args.tgt)


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m pn_dataprep", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("tokenize", help="Moses normalize/remove-non-printing/tokenize/lowercase (sacremoses)")
    p.add_argument("--lang", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--normalize-punct", action="store_true", help="normalize-punctuation.perl LANG first")
    p.add_argument("--remove-non-printing", action="store_true", help="remove-non-printing-char.perl next")
    p.add_argument("--aggressive", action="store_true", help="tokenizer.perl -a (split hyphens as @-@)")
    p.add_argument("--no-tokenize", action="store_true", help="skip the tokenizer")
    p.add_argument("--lowercase", action="store_true", help="lowercase.perl last")
    p.add_argument("inputs", nargs="+", help="input files, concatenated in this order")
    p.set_defaults(func=_cmd_tokenize)

    p = sub.add_parser("iwslt-train", help="strip the tags of an IWSLT train.tags file as prepare-iwslt14.sh")
    p.add_argument("input")
    p.add_argument("out")
    p.set_defaults(func=_cmd_iwslt_train)

    p = sub.add_parser("segs", help="<seg> lines of an xml/sgm file, as the recipes' grep/sed")
    p.add_argument("--straight-apostrophe", action="store_true", help="also sed s/’/'/g")
    p.add_argument("--raw", action="store_true", help="sacrebleu's extraction instead (for references)")
    p.add_argument("input")
    p.add_argument("out")
    p.set_defaults(func=_cmd_segs)

    p = sub.add_parser("clean", help="clean-corpus-n.perl [-ratio R] corpus l1 l2 out min max")
    p.add_argument("--ratio", type=float, default=9.0)
    for name in ("corpus", "l1", "l2", "out"):
        p.add_argument(name)
    p.add_argument("min", type=int)
    p.add_argument("max", type=int)
    p.set_defaults(func=_cmd_clean)

    p = sub.add_parser("split-every", help="every n-th line to one file, the others to another")
    p.add_argument("n", type=int)
    p.add_argument("input")
    p.add_argument("kept")
    p.add_argument("picked")
    p.set_defaults(func=_cmd_split_every)

    p = sub.add_parser("lm-text", help="copy a tokenized LM corpus file (or a zip member) unchanged, checking it is UTF-8")
    p.add_argument("--member", help="the file inside the zip archive INPUT")
    p.add_argument("input")
    p.add_argument("out")
    p.set_defaults(func=_cmd_lm_text)

    p = sub.add_parser("learn-bpe", help="joint subword-nmt learn_bpe on the concatenated inputs")
    p.add_argument("--merges", type=int, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("inputs", nargs="+")
    p.set_defaults(func=_cmd_learn_bpe)

    p = sub.add_parser("apply-bpe", help="subword-nmt apply_bpe")
    p.add_argument("--codes", required=True)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("input")
    p.add_argument("out")
    p.set_defaults(func=_cmd_apply_bpe)

    p = sub.add_parser("fetch", help="download URL to OUT (through a temporary name)")
    p.add_argument("url")
    p.add_argument("out")
    p.set_defaults(func=_cmd_fetch)

    p = sub.add_parser("verify", help="check files against a sha256sum-format list")
    p.add_argument("--sums", required=True)
    p.add_argument("--dir", required=True)
    p.add_argument("names", nargs="+")
    p.set_defaults(func=_cmd_verify)

    p = sub.add_parser("finalize", help="check a staged dataset directory and write its prep.json")
    p.add_argument("--dir", required=True)
    p.add_argument("--dataset", required=True)
    p.add_argument("--src", required=True)
    p.add_argument("--tgt", required=True)
    p.add_argument("--expect", type=_parse_expect, default=None,
                   help="iwslt14 | wmt14 | multi30k | train=N,valid=N,test=N")
    p.add_argument("--no-size-check", action="store_true")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="recorded in prep.json")
    p.add_argument("--raw-file", action="append", default=[], help="raw input whose sha256 prep.json records")
    p.set_defaults(func=_cmd_finalize)

    p = sub.add_parser("finalize-lm", help="check a staged --only-source (language modeling) directory, write prep.json")
    p.add_argument("--dir", required=True)
    p.add_argument("--dataset", required=True)
    p.add_argument("--text-suffix", required=True, help="text/<split><suffix> is the text that was binarized")
    p.add_argument("--min-count", type=int, default=1, help="the --thresholdsrc the dictionary was built with")
    p.add_argument("--expect", type=_parse_expect_lm, default=None, help=" | ".join(checks.EXPECTED_LM_SIZES))
    p.add_argument("--no-size-check", action="store_true")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="recorded in prep.json")
    p.add_argument("--raw-file", action="append", default=[], help="raw input whose sha256 prep.json records")
    p.set_defaults(func=_cmd_finalize_lm)

    p = sub.add_parser("synthetic", help="write the seeded synthetic corpus")
    p.add_argument("--outdir", required=True)
    p.add_argument("--seed", type=int, default=1)
    for split, n in synthetic.DEFAULT_SIZES.items():
        p.add_argument(f"--{split}", type=int, default=n)
    p.add_argument("--src", default="de")
    p.add_argument("--tgt", default="en")
    p.set_defaults(func=_cmd_synthetic)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except DataPrepError as err:
        log(f"error: {err}")
        return 1
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
