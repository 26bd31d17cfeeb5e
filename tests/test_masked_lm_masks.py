"""masked_lm_pn masks every epoch afresh with data-loader workers, and a resumed run as a
straight one (pn_fairseq/tasks/masked_lm_pn.py).

fairseq 0.12's persistent workers keep epoch 1's copy of MaskTokensDataset, so with
``--num-workers 1`` (fairseq's default) every epoch got epoch 1's masks, and a run resumed in
epoch E got epoch E's: the BERT rows of 2026-12-06 trained on static masks. The expected masks
here come from the dataset itself in this process (``set_epoch(e)``, then indexing), where no
worker is involved.
"""
import pytest

from bert_corpus import TINY, build_corpus
from conftest import REPO, run
from test_roberta_pn import parse
from test_scale_cli import STEP_KEYS, train_steps

EPOCHS = 3


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return build_corpus(tmp_path_factory.mktemp("mlm-masks"))


def new_task(corpus, *extra):
    from fairseq import tasks

    task = tasks.setup_task(parse(corpus, "roberta_pn", *extra))
    task.load_dataset("train")
    return task


def iterator(task, epoch, num_workers):
    return task.get_batch_iterator(task.dataset("train"), max_sentences=64, seed=1, epoch=epoch,
                                   num_workers=num_workers)


def masked_inputs(batches):
    """{sample id: its masked source tokens} over one epoch's batches."""
    seen = {}
    for sample in batches:
        for i, row in zip(sample["id"].tolist(), sample["net_input"]["src_tokens"]):
            seen[i] = row[row.ne(1)].tolist()  # 1: fairseq's pad index
    return seen


def expected(task, epoch, ids):
    """What MaskTokensDataset gives in this process for ``epoch``: the masked source of each id."""
    dataset = task.dataset("train")
    dataset.set_epoch(epoch)
    out = {}
    for i in ids:
        src = dataset[i]["net_input.src_tokens"]
        out[i] = src[src.ne(1)].tolist()
    return out


@pytest.mark.parametrize("num_workers", [0, 1])
def test_every_epoch_gets_its_own_masks(corpus, num_workers):
    task = new_task(corpus)
    itr = iterator(task, 1, num_workers)
    per_epoch = [masked_inputs(itr.next_epoch_itr(shuffle=True)) for _ in range(EPOCHS)]
    reference = new_task(corpus)
    for epoch, seen in enumerate(per_epoch, start=1):
        assert len(seen) == len(task.dataset("train")), "an epoch must see every sample once"
        assert seen == expected(reference, epoch, seen), f"epoch {epoch}: not epoch {epoch}'s masks"
    differing = sum(per_epoch[0][i] != per_epoch[1][i] for i in per_epoch[0])
    # 15% of ~13 tokens masked per sample: nearly every sample's mask moves between epochs.
    assert differing > 0.8 * len(per_epoch[0])


def test_resumed_run_masks_as_a_straight_one(corpus):
    """A process that starts in epoch 2 (a resume from checkpoint_last.pt) with a worker."""
    straight = iterator(new_task(corpus), 1, 1)
    straight_epochs = [masked_inputs(straight.next_epoch_itr(shuffle=True)) for _ in range(2)]
    resumed = masked_inputs(iterator(new_task(corpus), 2, 1).next_epoch_itr(shuffle=True))
    assert resumed == straight_epochs[1]


def test_persistent_workers_bring_back_static_masks(corpus):
    """``--persistent-workers`` restores fairseq's default and with it the bug the task avoids:
    the worker masks epoch 2 as epoch 1 (so the first test fails without the task's default)."""
    assert iterator(new_task(corpus), 1, 1).persistent_workers is False
    itr = iterator(new_task(corpus, "--persistent-workers"), 1, 1)
    assert itr.persistent_workers is True
    first, second = (masked_inputs(itr.next_epoch_itr(shuffle=True)) for _ in range(2))
    assert second == first


def fairseq_train(corpus, save_dir, *extra):
    """fairseq-train on the tiny corpus with fairseq's default --num-workers 1; its log."""
    return run("fairseq-train", corpus, "--user-dir", REPO / "pn_fairseq", "--task", "masked_lm_pn",
               "--arch", "roberta_pn_prenorm", "--norm-type", "power", "--pn-warmup-updates", "4", *TINY,
               "--optimizer", "adam", "--lr", "1e-3", "--criterion", "masked_lm", "--batch-size", "128", "--seed", "3",
               "--cpu", "--save-dir", save_dir, "--no-epoch-checkpoints", "--log-format", "json", "--log-interval", "1",
               "--no-progress-bar", *extra)


# The masked-LM criterion logs no nll_loss.
MLM_STEP_KEYS = tuple(k for k in STEP_KEYS if k != "nll_loss")


def test_fairseq_train_resumed_at_an_epoch_end_is_exact(corpus, tmp_path):
    """Two epochs in one process against one epoch, stop, resume for the second: the same loss
    at every update. With epoch 1's masks in the straight run's second epoch (the persistent
    worker) the losses of epoch 2 differ."""
    straight = train_steps(fairseq_train(corpus, tmp_path / "straight", "--max-epoch", 2), MLM_STEP_KEYS)
    first = train_steps(fairseq_train(corpus, tmp_path / "resumed", "--max-epoch", 1), MLM_STEP_KEYS)
    second_log = fairseq_train(corpus, tmp_path / "resumed", "--max-epoch", 2)
    assert "Loaded checkpoint" in second_log
    second = train_steps(second_log, MLM_STEP_KEYS)
    per_epoch = len(first)
    assert per_epoch >= 3 and sorted(second) == list(range(per_epoch + 1, 2 * per_epoch + 1))
    assert {int(straight[n]["epoch"]) for n in second} == {2}
    for n, record in {**first, **second}.items():
        assert record == straight[n], f"update {n}: {record} != {straight[n]}"
