"""pn-results: results.json contract and the Table-1-style markdown."""
import json

import pytest

from pn_fairseq.evaluation import results
from pn_fairseq.cli import results as results_cli


def write_result(directory, row, dataset, bleu_main, **overrides):
    data = {
        "row": row,
        "dataset": dataset,
        "bleu": {"fairseq": bleu_main, "sacrebleu_tok_none": bleu_main, "compound_split": None,
                 "sacrebleu_detok": None},
        "bleu_main": bleu_main,
        "sacrebleu_signature": "nrefs:1|case:mixed|eff:no|tok:none|smooth:exp|version:2.6.0",
        "paper_bleu": None,
        "updates": 1000,
        "wall_time_s": 7200.0,
        "checkpoint": f"{directory}/checkpoint_avg.pt",
        "run_dir": str(directory),
    }
    data.update(overrides)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "results.json"
    path.write_text(json.dumps(data))
    return path


def test_table(tmp_path, capsys):
    runs = tmp_path / "runs"
    write_result(runs / "iwslt14" / "pn", "pn", "iwslt14", 36.3, paper_bleu=35.9)
    write_result(runs / "iwslt14" / "preln", "preln", "iwslt14", 35.1)
    write_result(runs / "wmt14-bn", "bn", "wmt14", 28.0,
                 bleu={"fairseq": 27.5, "sacrebleu_tok_none": 27.5, "compound_split": 28.0, "sacrebleu_detok": 27.1})
    write_result(runs / "m30k-pn", "pn", "multi30k", 31.02)
    write_result(runs / "preln-nowarmup", "preln-nowarmup", "iwslt14", 34.5)
    (runs / "notes").mkdir()
    (runs / "notes" / "other.json").write_text("{}")  # only files named results.json count
    out = tmp_path / "table.md"
    assert results_cli.main([str(runs), "--output", str(out)]) == 0
    text = capsys.readouterr().out
    assert out.read_text() == text
    lines = text.splitlines()
    # Only the rows and datasets with a result (no synthetic column, no Post-LN or PN-V row);
    # their other cells still show the paper's number.
    assert lines[:7] == [
        "| Model | IWSLT14 | WMT14 | Multi30k |",
        "|---|---|---|---|",
        "| Transformer-LN (Pre-LN) | 35.10 (35.5, -0.40) | — (29.5) | — |",
        "| Transformer-BN | — (34.4) | 28.00 (28.1, -0.10) | — |",
        "| Transformer-PN | 36.30 (35.9, +0.40) | — (30.1) | 31.02 |",
        "| Pre-LN, no warm-up | 34.50 (~34, +0.50) | — | — |",
        "",
    ]
    assert f"| bn | wmt14 | ? | 28.00 | 27.50 | 27.50 | 28.00 | 27.10 | 1000 | 2.00 | {runs}/wmt14-bn/checkpoint_avg.pt |" in lines


def test_explicit_files_and_paper_fallback(tmp_path):
    # A dataset without a PAPER_BLEU entry uses the file's own paper_bleu.
    path = write_result(tmp_path / "a", "postln", "synthetic", 12.0, paper_bleu=12.5)
    table = results.collect([str(path)])
    assert results.render_table(table).splitlines()[:3] == [
        "| Model | synthetic |", "|---|---|", "| Post-LN | 12.00 (12.5, -0.50) |"]


def test_missing_key_names_file_and_key(tmp_path):
    path = write_result(tmp_path / "run", "pn", "iwslt14", 35.0)
    data = json.loads(path.read_text())
    del data["bleu_main"]
    path.write_text(json.dumps(data))
    with pytest.raises(SystemExit) as info:
        results_cli.main([str(tmp_path)])
    assert str(path) in str(info.value.code) and "'bleu_main'" in str(info.value.code)


@pytest.mark.parametrize("change,expected", [
    ({"bleu": {"fairseq": 1.0, "sacrebleu_tok_none": 1.0, "sacrebleu_detok": None}}, "'bleu.compound_split'"),
    ({"row": "transformer"}, "'row' is 'transformer'"),
    ({"dataset": "wmt16"}, "'dataset' is 'wmt16'"),
    ({"updates": "1000"}, "'updates' must be an integer"),
    ({"bleu_main": None}, "'bleu_main' must be a number"),
])
def test_invalid_values(tmp_path, change, expected):
    path = write_result(tmp_path / "run", "pn", "iwslt14", 35.0)
    path.write_text(json.dumps({**json.loads(path.read_text()), **change}))
    with pytest.raises(results.ResultsError) as info:
        results.collect([str(path)])
    assert str(path) in str(info.value) and expected in str(info.value)


def test_not_json_and_duplicates(tmp_path):
    bad = tmp_path / "bad" / "results.json"
    bad.parent.mkdir()
    bad.write_text("{not json")
    with pytest.raises(results.ResultsError, match="not valid JSON") as info:
        results.collect([str(bad)])
    assert str(bad) in str(info.value)

    first = write_result(tmp_path / "r1", "pn", "iwslt14", 35.0)
    second = write_result(tmp_path / "r2", "pn", "iwslt14", 35.5)
    with pytest.raises(results.ResultsError) as info:
        results.collect([str(first), str(second)])
    assert str(first) in str(info.value) and str(second) in str(info.value)


def test_schema_keys_match_docstring():
    for key in results.RESULTS_SCHEMA_KEYS:
        assert f'"{key}"' in results.__doc__
