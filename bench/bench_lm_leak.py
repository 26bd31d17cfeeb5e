"""Does training exploit the future-token leak of batch statistics in a causal LM? (issue 35)

A small ``transformer_lm_pn`` (2 layers, d 64, 2 heads, vocabulary 64, dropout 0) trained with
Adam on i.i.d. uniform random tokens drawn fresh every batch, for each norm case of
:data:`pn_fairseq.analysis.causality.CASES` and each batch size: nothing can be learned
honestly, so the best honest loss is ln 64 = 4.159 nats. A training-mode loss below it is
leakage through the batch statistics (the model reads later tokens of its own sequence off
them); the eval-mode loss on fresh batches (running statistics) is what the model really
predicts. Also the forward probe (:func:`future_leak`: largest logit change at positions <= 7
when only later tokens change), at 4 x 16 tokens.

    python bench/bench_lm_leak.py --out docs/figures/lm-leak   # writes lm-leak.json, prints a table

Not a speed benchmark: it lives here because it is a measurement script run by hand, with its
results in docs/language-models.md (one thread: OMP_NUM_THREADS=1).
"""
import argparse
import json
import logging
import os
import time

from pn_fairseq.analysis.causality import CASES, WARMUP, build_lm, future_leak, random_token_losses
from pn_fairseq.analysis.output import write_json


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="directory for lm-leak.json")
    p.add_argument("--batches", default="1,4,16,64", help="sequences of --length tokens per batch")
    p.add_argument("--length", type=int, default=16)
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--last", type=int, default=300, help="training-mode loss averaged over these last steps")
    p.add_argument("--cases", default=",".join(CASES), help="comma-separated labels of CASES")
    a = p.parse_args()
    logging.disable(logging.WARNING)  # the build-time causality warning, once per model
    os.makedirs(a.out, exist_ok=True)
    cases = [c.strip() for c in a.cases.split(",")]
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        raise SystemExit(f"bench_lm_leak: unknown case(s) {unknown}; known: {', '.join(CASES)}")
    rows = []
    for label in cases:
        norm, extra, updates = CASES[label]
        model, task = build_lm(norm, extra)
        probe = {"train": future_leak(model, task, 7, True, updates), "eval": future_leak(model, task, 7, False)}
        for batch in (int(b) for b in a.batches.split(",")):
            start = time.time()
            # PN "in warm-up" trains in warm-up throughout (W = steps); "after warm-up" with W = 0,
            # i.e. psi2_{t-1} from the first step.
            w = "0" if updates else str(a.steps)
            train_extra = [w if x == str(WARMUP) else x for x in extra]
            r = random_token_losses(norm, train_extra, batch=batch, length=a.length, steps=a.steps, last=a.last)
            r.update(case=label, batch=batch, probe_train=probe["train"], probe_eval=probe["eval"],
                     seconds=round(time.time() - start, 1))
            rows.append(r)
            print(f"{label:32s} {batch * a.length:5d} tokens  train {r['train_loss']:.4f}  eval {r['eval_loss']:.4f}  "
                  f"ln V {r['ln_v']:.4f}  probe {probe['train']:.2e}/{probe['eval']:.2e}  ({r['seconds']} s)", flush=True)
            write_json(os.path.join(a.out, "lm-leak.json"), {"settings": vars(a), "rows": rows})
    print(json.dumps({"written": os.path.join(a.out, "lm-leak.json")}))


if __name__ == "__main__":
    main()
