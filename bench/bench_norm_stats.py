"""Cost of --log-norm-stats: training steps of a transformer_pn / transformer_bn model with
and without the statistics logging, interleaved in one run, ratio of target words per second.

The target is at most 3% fewer words/s. Rounds alternate the two settings on the same model
and data so that throttling and other load hit both alike; each setting reports its fastest
round (on a shared machine the minimum is the stable statistic).

    python bench/bench_norm_stats.py --data data-bin/multi30k.de-en [--arch transformer_pn] [--rounds 6]
"""
import argparse
import time

import torch
from fairseq import options, tasks
from fairseq.logging import metrics

from pn_fairseq.models import norm_monitor

MULTI30K_MODEL = ["--encoder-layers", "3", "--decoder-layers", "3", "--encoder-embed-dim", "256",
                  "--decoder-embed-dim", "256", "--encoder-ffn-embed-dim", "512", "--decoder-ffn-embed-dim", "512",
                  "--encoder-attention-heads", "4", "--decoder-attention-heads", "4", "--share-all-embeddings"]


class _Optimizer:
    def __init__(self, params):
        self.adam = torch.optim.Adam(params, lr=1e-4)

    def backward(self, loss):
        loss.backward()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="fairseq-preprocess output (e.g. data-bin/multi30k.de-en)")
    p.add_argument("--arch", default="transformer_pn")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--steps", type=int, default=4, help="training steps per round")
    p.add_argument("--max-tokens", type=int, default=4096)
    a = p.parse_args()
    args = options.parse_args_and_arch(options.get_training_parser(), [
        a.data, "--user-dir", "pn_fairseq", "--task", "translation_pn", "--arch", a.arch, *MULTI30K_MODEL, "--cpu",
        "--max-tokens", str(a.max_tokens), "--criterion", "label_smoothed_cross_entropy", "--optimizer", "adam"])
    task = tasks.setup_task(args)
    task.load_dataset("train")
    model, criterion = task.build_model(args), task.build_criterion(args)
    itr = task.get_batch_iterator(dataset=task.dataset("train"), max_tokens=a.max_tokens, seed=1).next_epoch_itr(shuffle=False)
    batches = [next(itr) for _ in range(a.steps)]
    words = sum(int(b["ntokens"]) for b in batches)
    opt = _Optimizer(model.parameters())
    norms = norm_monitor.attach(model, False)
    best = {False: float("inf"), True: float("inf")}
    for r in range(a.rounds):
        for logging_on in (False, True) if r % 2 == 0 else (True, False):
            for n in norms.values():
                n.stats_sink = norm_monitor.log_to_fairseq_metrics if logging_on else None
            with metrics.aggregate(new_root=True) as agg:
                t0 = time.perf_counter()
                for i, b in enumerate(batches):
                    model.zero_grad()
                    task.train_step(b, model, criterion, opt, update_num=i)
                agg.get_smoothed_values()  # what a log line costs (the tensors become numbers here)
                best[logging_on] = min(best[logging_on], time.perf_counter() - t0)
        print(f"round {r + 1}/{a.rounds}: off {words / best[False]:.0f} words/s, on {words / best[True]:.0f} words/s",
              flush=True)
    ratio = best[False] / best[True]
    print(f"{a.arch}: --log-norm-stats keeps {ratio:.3f}x the words/s (target >= 0.97)")


if __name__ == "__main__":
    main()
