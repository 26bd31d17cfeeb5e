"""pn-average-checkpoints on small hand-built fairseq-like checkpoints."""
import argparse
import collections
import datetime
import os

import pytest
import torch

from pn_fairseq.checkpoints import files as checkpoints
from pn_fairseq.cli import average_checkpoints as avg

BASE = torch.tensor([[0.5, -1.25], [3.0, 0.0]])


def make_checkpoint(path, scale, num_updates=None, counter=None, marker=None, model_overrides=None, drop=()):
    """A checkpoint shaped like fairseq-train's, with ``scale`` setting every float value."""
    model = collections.OrderedDict(
        [
            ("encoder.layers.0.fc1.weight", BASE * scale),
            ("encoder.layers.0.self_attn_layer_norm.running_psi2", torch.full((2,), 2.0 * scale)),
            ("encoder.layers.0.self_attn_layer_norm.running_nu", torch.full((2,), -1.0 * scale)),
            ("encoder.layers.0.final_layer_norm.running_mean", torch.full((2,), 0.25 * scale)),
            ("encoder.layers.0.final_layer_norm.running_var", torch.full((2,), 4.0 * scale)),
            ("encoder.layers.0.final_layer_norm.num_batches_tracked",
             torch.tensor(counter if counter is not None else int(scale * 100), dtype=torch.int64)),
        ]
    )
    model.update(model_overrides or {})
    for name in drop:
        del model[name]
    state = {
        "args": argparse.Namespace(arch="transformer_pn_iwslt_de_en", marker=marker),
        "cfg": {"model": argparse.Namespace(marker=marker), "common": {"seed": 1}},
        "model": model,
        "extra_state": {"marker": marker},
    }
    if num_updates is not None:
        state["optimizer_history"] = [{"optimizer_name": "FairseqAdam", "num_updates": num_updates}]
    torch.save(state, path)
    return str(path)


def load(path):
    # The output must itself be loadable by a weights_only loader (fairseq-generate).
    return torch.load(path, map_location="cpu", weights_only=True)


def error_of(argv):
    with pytest.raises(SystemExit) as info:
        avg.main(argv)
    assert info.value.code not in (0, None)
    return str(info.value.code)


def test_averages_floats_and_takes_counters_from_newest(tmp_path, capsys):
    # Given out of order: the newest (most updates) is the middle one.
    paths = [
        make_checkpoint(tmp_path / "a.pt", 1, num_updates=100, marker="a"),
        make_checkpoint(tmp_path / "c.pt", 6, num_updates=300, marker="c"),
        make_checkpoint(tmp_path / "b.pt", 2, num_updates=200, marker="b"),
    ]
    out = tmp_path / "avg.pt"
    assert avg.main(["--inputs", *paths, "--output", str(out)]) == 0
    state = load(out)
    model = state["model"]
    # mean of scales 1, 2, 6 is 3: every float tensor is exactly 3x its base value.
    assert torch.equal(model["encoder.layers.0.fc1.weight"], BASE * 3)
    assert torch.equal(model["encoder.layers.0.self_attn_layer_norm.running_psi2"], torch.full((2,), 6.0))
    assert torch.equal(model["encoder.layers.0.self_attn_layer_norm.running_nu"], torch.full((2,), -3.0))
    assert torch.equal(model["encoder.layers.0.final_layer_norm.running_mean"], torch.full((2,), 0.75))
    assert torch.equal(model["encoder.layers.0.final_layer_norm.running_var"], torch.full((2,), 12.0))
    counter = model["encoder.layers.0.final_layer_norm.num_batches_tracked"]
    assert counter.dtype == torch.int64 and counter.item() == 600  # newest's, not the mean 300
    # Everything but "model" is the newest checkpoint's.
    assert state["args"].marker == "c" and state["cfg"]["model"].marker == "c"
    assert state["extra_state"] == {"marker": "c"}
    assert state["optimizer_history"][-1]["num_updates"] == 300
    assert list(model) == list(torch.load(paths[1], weights_only=True)["model"])
    assert "newest (updates 300)" in capsys.readouterr().out


def test_dtypes_preserved_and_accumulated_wide(tmp_path):
    # fp16 60000 + 60000 overflows fp16, and 1 + 2**-40 vanishes in float32: the average
    # is exact only when summed in float32 (float64 for float64).
    fine = 1.0 + 2.0 ** -40
    paths = [
        make_checkpoint(tmp_path / f"checkpoint{i}.pt", 1, model_overrides={
            "half": torch.full((3,), 60000.0, dtype=torch.float16),
            "double": torch.full((2,), fine, dtype=torch.float64),
            "flag": torch.tensor([i == 3, True]),
        })
        for i in (1, 2, 3)
    ]
    out = tmp_path / "avg.pt"
    avg.main(["--inputs", *paths, "--output", str(out)])
    model = load(out)["model"]
    assert model["half"].dtype == torch.float16
    assert torch.equal(model["half"], torch.full((3,), 60000.0, dtype=torch.float16))
    assert model["double"].dtype == torch.float64 and model["double"][0].item() == fine
    # No optimizer history: ages come from the file names, checkpoint3 is the newest.
    assert model["flag"].tolist() == [True, True]


def test_tied_weights_stay_tied(tmp_path):
    paths = []
    for i, scale in enumerate((1.0, 3.0)):
        shared = BASE * scale
        paths.append(make_checkpoint(tmp_path / f"t{i}.pt", scale, num_updates=i, model_overrides={
            "decoder.embed_tokens.weight": shared, "decoder.output_projection.weight": shared}))
    out = tmp_path / "avg.pt"
    avg.main(["--inputs", *paths, "--output", str(out)])
    model = load(out)["model"]
    assert torch.equal(model["decoder.embed_tokens.weight"], BASE * 2)
    assert model["decoder.embed_tokens.weight"].data_ptr() == model["decoder.output_projection.weight"].data_ptr()


def test_epoch_selection_with_upper_bound(tmp_path, capsys):
    for epoch in range(1, 6):
        make_checkpoint(tmp_path / f"checkpoint{epoch}.pt", epoch, num_updates=epoch * 10)
    make_checkpoint(tmp_path / "checkpoint_best.pt", 100, num_updates=1)
    make_checkpoint(tmp_path / "checkpoint_last.pt", 100, num_updates=50)
    assert checkpoints.last_n_checkpoints(str(tmp_path), 3, update_based=False) == [
        str(tmp_path / f"checkpoint{e}.pt") for e in (5, 4, 3)]
    out = tmp_path / "out" / "avg.pt"
    avg.main(["--inputs", str(tmp_path), "--num-epoch-checkpoints", "3",
              "--checkpoint-upper-bound", "4", "--output", str(out)])
    model = load(out)["model"]
    assert torch.equal(model["encoder.layers.0.fc1.weight"], BASE * 3)  # epochs 2, 3, 4
    assert model["encoder.layers.0.final_layer_norm.num_batches_tracked"].item() == 400
    assert "checkpoint5.pt" not in capsys.readouterr().out


def test_update_selection_with_upper_bound(tmp_path):
    for epoch, updates, scale in ((1, 100, 1), (1, 200, 2), (2, 300, 4), (3, 400, 8)):
        make_checkpoint(tmp_path / f"checkpoint_{epoch}_{updates}.pt", scale, num_updates=updates)
    make_checkpoint(tmp_path / "checkpoint2.pt", 1000, num_updates=300)
    assert checkpoints.last_n_checkpoints(str(tmp_path), 2, update_based=True, upper_bound=300) == [
        str(tmp_path / "checkpoint_2_300.pt"), str(tmp_path / "checkpoint_1_200.pt")]
    out = tmp_path / "avg.pt"
    avg.main(["--inputs", str(tmp_path), "--num-update-checkpoints", "2",
              "--checkpoint-upper-bound", "300", "--output", str(out)])
    assert torch.equal(load(out)["model"]["encoder.layers.0.fc1.weight"], BASE * 3)


def test_too_few_checkpoints(tmp_path):
    make_checkpoint(tmp_path / "checkpoint1.pt", 1)
    make_checkpoint(tmp_path / "checkpoint2.pt", 2)
    message = error_of(["--inputs", str(tmp_path), "--num-epoch-checkpoints", "3",
                        "--output", str(tmp_path / "avg.pt")])
    assert str(tmp_path) in message and "found 2" in message and "3 were requested" in message
    assert not (tmp_path / "avg.pt").exists()


def test_not_a_checkpoint(tmp_path):
    good = make_checkpoint(tmp_path / "good.pt", 1)
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint\n")
    message = error_of(["--inputs", good, str(text), "--output", str(tmp_path / "avg.pt")])
    assert str(text) in message and "not a loadable torch checkpoint" in message

    no_model = tmp_path / "no_model.pt"
    torch.save({"weights": torch.zeros(2)}, no_model)
    message = error_of(["--inputs", good, str(no_model), "--output", str(tmp_path / "avg.pt")])
    assert str(no_model) in message and "no 'model'" in message
    assert not (tmp_path / "avg.pt").exists()
    assert not [name for name in os.listdir(tmp_path) if name.endswith(".tmp")]


def test_mismatched_parameter_names(tmp_path):
    first = make_checkpoint(tmp_path / "first.pt", 1)
    other = make_checkpoint(tmp_path / "other.pt", 2, model_overrides={"decoder.extra.weight": torch.zeros(1)},
                            drop=["encoder.layers.0.self_attn_layer_norm.running_nu"])
    message = error_of(["--inputs", first, other, "--output", str(tmp_path / "avg.pt")])
    assert str(other) in message and str(first) in message
    assert "missing encoder.layers.0.self_attn_layer_norm.running_nu" in message
    assert "extra decoder.extra.weight" in message


def test_mismatched_shapes(tmp_path):
    first = make_checkpoint(tmp_path / "first.pt", 1)
    other = make_checkpoint(tmp_path / "other.pt", 1, model_overrides={
        "encoder.layers.0.fc1.weight": torch.zeros(3, 2)})
    message = error_of(["--inputs", first, other, "--output", str(tmp_path / "avg.pt")])
    assert str(other) in message and "encoder.layers.0.fc1.weight" in message and "(3, 2)" in message


def test_loading_keeps_weights_only(tmp_path):
    """Namespace loads (allow-listed), but any other pickled class is still refused."""
    good = make_checkpoint(tmp_path / "good.pt", 1)
    state = {"model": {"w": torch.ones(1)}, "extra_state": {"when": datetime.date(2020, 1, 1)}}
    unsafe = tmp_path / "unsafe.pt"
    torch.save(state, unsafe)
    message = error_of(["--inputs", good, str(unsafe), "--output", str(tmp_path / "avg.pt")])
    assert str(unsafe) in message and "FAIRSEQ_CHECKPOINT_GLOBALS" in message


def test_directory_without_count_and_bad_flags(tmp_path):
    make_checkpoint(tmp_path / "checkpoint1.pt", 1)
    message = error_of(["--inputs", str(tmp_path), "--output", str(tmp_path / "avg.pt")])
    assert str(tmp_path) in message and "--num-epoch-checkpoints" in message
    with pytest.raises(SystemExit) as info:
        avg.main(["--inputs", str(tmp_path / "checkpoint1.pt"), "--checkpoint-upper-bound", "3",
                  "--output", str(tmp_path / "avg.pt")])
    assert info.value.code == 2  # argparse usage error


def test_help_documents_counter_rule(capsys):
    with pytest.raises(SystemExit):
        avg.main(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "take the NEWEST checkpoint's value" in help_text
