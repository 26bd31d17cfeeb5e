"""pn-analyze report: one self-contained page for a demo-sized run tree."""
import base64
import json
import re
import subprocess

from matplotlib.figure import Figure

from conftest import BIN, REPO
from pn_fairseq.cli.analyze import main
from test_analysis_batch_sweep import result
from test_analysis_stats import write_log


def png(path, color):
    fig = Figure(figsize=(2, 1.5))
    fig.subplots().plot([0, 1], [1, 0], color=color)
    fig.savefig(path, format="png")
    return path


def demo_tree(root):
    """Like demo-out/synthetic: two run directories, a results table, a plot."""
    for row, bleu, losses in [("preln", 27.35, [(50, 9.0), (100, 6.5)]), ("pn", 28.05, [(50, 8.8), (100, 6.0)])]:
        run = root / row
        run.mkdir(parents=True)
        (run / "results.json").write_text(json.dumps(result(row, bleu)))
        write_log(run / "train.log", [{"num_updates": u, "loss": v + 0.5} for u, v in losses],
                  valid=[{"epoch": 1, "valid_loss": f"{v:g}", "valid_num_updates": str(u)} for u, v in losses])
    png(root / "valid_loss.png", "red")
    (root / "analysis").mkdir()
    png(root / "analysis" / "stats.png", "blue")


def test_page_holds_table_curves_and_every_figure(tmp_path, capsys):
    demo_tree(tmp_path / "demo")
    out = tmp_path / "demo"  # written into the tree itself, as make demo does
    for _ in range(2):  # the second run must not pick up the first one's own figure
        assert main(["report", str(tmp_path / "demo"), "--out", str(out)]) == 0
    page = (out / "report.html").read_text()
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(out / "report.html")
    # every PNG found, and the loss curves drawn here, embedded as data URIs
    for figure in (out / "valid_loss.png", out / "analysis" / "stats.png", out / "report.png"):
        assert "data:image/png;base64," + base64.b64encode(figure.read_bytes()).decode() in page
    assert page.count("<img ") == 3
    # self-contained: no external resources
    assert not re.search(r"(src|href)=\"(?!data:)", page)
    # the table: one row per results.json, with its BLEU
    table = page[page.index('<table id="results">'):page.index("</table>")]
    assert table.count("<tr>") == 3
    assert "<td>preln</td>" in table and "27.35" in table and "28.05" in table
    # the numbers behind the loss figure are the logged ones
    data = json.loads((out / "report.json").read_text())
    assert data["loss_curves"]["pn"]["valid_loss"] == {"updates": [50, 100], "values": [8.8, 6.0]}
    assert data["loss_curves"]["preln"]["train_loss"]["values"] == [9.5, 7.0]
    assert sorted(data["figures"]) == ["analysis/stats.png", "valid_loss.png"]


def test_bad_input_through_the_console_script(tmp_path):
    """The installed pn-analyze: one error line, exit status 2, no traceback."""
    (tmp_path / "empty").mkdir()
    proc = subprocess.run([str(BIN / "pn-analyze"), "report", str(tmp_path / "empty"), "--out", str(tmp_path / "o")],
                          cwd=REPO, capture_output=True, text=True)
    lines = [line for line in proc.stderr.splitlines() if "tensorboardX" not in line]  # fairseq's import notice
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert lines == [f"pn-analyze report: error: {tmp_path / 'empty'}: nothing to report "
                     "(no results.json, train.log or *.png below it)"]
