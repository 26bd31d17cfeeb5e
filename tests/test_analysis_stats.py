"""pn-analyze stats: the ns.* statistics of hand-written fairseq JSON logs."""
import json

import pytest

from pn_fairseq.analysis.norm_stats import parse_norm_stats, split_key
from pn_fairseq.cli.analyze import main


def write_log(path, records, valid=()):
    """A fairseq-train --log-format json log: train_inner lines (values as "{:g}" strings)."""
    lines = ["2026-11-25 02:00:00 | INFO | fairseq_cli.train | task: TranslationTask"]
    for rec in records:
        stats = {"epoch": 1, "update": 0.1, "loss": "9.1"}
        stats.update({k: f"{v:g}" for k, v in rec.items()})
        lines.append(f"2026-11-25 02:00:01 | INFO | train_inner | {json.dumps(stats)}")
    for rec in valid:
        lines.append(f"2026-11-25 02:00:02 | INFO | valid | {json.dumps(rec)}")
    path.write_text("\n".join(lines) + "\n")
    return path


def bn_records():
    """Two layers, three log points; update 20 is logged twice (a resumed run: the last wins)."""
    out = []
    for u, scale in [(10, 1.0), (20, 9.0), (20, 2.0), (30, 3.0)]:
        out.append({
            "num_updates": u,
            "ns.enc0.attn.mu_dist_mean": 0.01 * scale, "ns.enc0.attn.mu_dist_max": 0.05 * scale,
            "ns.enc0.attn.g_mu_mean": 0.2 * scale, "ns.enc0.attn.g_mu_max": 0.7 * scale,
            "ns.enc.final.mu_dist_mean": 0.03 * scale, "ns.enc.final.mu_dist_max": 0.04 * scale,
        })
    return out


def test_split_key():
    assert split_key("ns.enc0.attn.g_sigma2_max") == ("enc0.attn", "g_sigma2", "max")
    assert split_key("ns.dec.final.psi2_dist_mean") == ("dec.final", "psi2_dist", "mean")
    assert split_key("ns.enc0.attn.g_mu_median") is None
    assert split_key("loss") is None


def test_parse_series(tmp_path):
    stats = parse_norm_stats(write_log(tmp_path / "train.log", bn_records()))
    assert sorted(stats) == ["enc.final", "enc0.attn"]
    series = stats["enc0.attn"]["mu_dist"]
    assert series["updates"] == [10, 20, 30]
    assert series["max"] == pytest.approx([0.05, 0.10, 0.15])
    assert series["mean"] == pytest.approx([0.01, 0.02, 0.03])
    assert stats["enc0.attn"]["g_mu"]["max"] == pytest.approx([0.7, 1.4, 2.1])


def test_cli_writes_figure_and_numbers(tmp_path, capsys):
    bn = tmp_path / "bn"
    bn.mkdir()
    write_log(bn / "train.log", bn_records())
    pn_log = write_log(tmp_path / "pn.log", [
        {"num_updates": u, "ns.enc0.attn.psi2_dist_mean": m, "ns.enc0.attn.psi2_dist_max": x}
        for u, m, x in [(10, 0.004, 0.02), (20, 0.003, 0.01)]])
    out = tmp_path / "out"
    assert main(["stats", str(bn), f"PN={pn_log}", "--out", str(out)]) == 0
    assert (out / "stats.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads((out / "stats.json").read_text())
    assert data["stats"] == ["mu_dist", "psi2_dist", "g_mu"]  # panel order
    summary = data["summary"]["bn"]["enc0.attn"]["g_mu"]
    assert summary["max_of_max"] == pytest.approx(2.1) and summary["update_of_max"] == 30
    assert summary["median_of_mean"] == pytest.approx(0.4)  # median of 0.2, 0.4, 0.6
    assert data["summary"]["PN"]["enc0.attn"]["psi2_dist"]["max_of_max"] == pytest.approx(0.02)
    assert "[stats] bn: 2 norm layer(s)" in capsys.readouterr().err

    # --layer / --stat narrow the figure and the numbers
    assert main(["stats", str(bn), "--out", str(out), "--layer", "enc.final", "--stat", "mu_dist"]) == 0
    data = json.loads((out / "stats.json").read_text())
    assert list(data["series"]["bn"]) == ["enc.final"] and data["stats"] == ["mu_dist"]


@pytest.mark.parametrize("case, expected", [
    ("missing", "no such run directory or log file"),
    ("no_log", "no train.log in this run directory"),
    ("no_stats", "train with --log-norm-stats"),
    ("bad_layer", "no layer 'enc9.ffn'"),
    ("bad_stat", "no statistic nu_update"),
])
def test_bad_input_is_one_line(tmp_path, capsys, case, expected):
    run = tmp_path / "run"
    run.mkdir()
    args = [str(run)]
    if case == "missing":
        args = [str(tmp_path / "nope")]
    elif case == "no_stats":
        write_log(run / "train.log", [{"num_updates": 10}])
    elif case != "no_log":
        write_log(run / "train.log", bn_records())
        args += ["--layer", "enc9.ffn"] if case == "bad_layer" else ["--stat", "nu_update"]
    assert main(["stats", *args, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("pn-analyze stats: error: ") and expected in err[-1]
    assert not (tmp_path / "out").exists()
