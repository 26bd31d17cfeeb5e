"""One self-contained HTML page per experiment directory (``pn-analyze report``).

Gathers what exists under a directory: every ``results.json`` (one table), the seeds and
paired-bootstrap tables ``pn-results`` prints for them (the same code: :func:`seeds_and_significance`),
for language-model rows (``results-lm.json``) the perplexity tables ``pn-results`` prints and the
validation perplexity against updates ``pn-plot --valid-ppl`` draws (:func:`language_models`), for
masked-LM rows (``results-mlm.json``) the validation-loss tables and figure of ``pn-results`` and
``pn-plot --valid-mlm`` (:func:`masked_language_models`), the
loss curves of every run's ``train.log`` (drawn by the caller into one PNG, each run in its
row's colour) and every PNG found. Images are embedded as base64 data URIs and the style is
inline, so the page is one file that opens anywhere, offline.
"""
import base64
import dataclasses
import datetime
import html
import io
import os

from pn_fairseq.evaluation.lm_results import FILENAME as LM_RESULTS
from pn_fairseq.evaluation.mlm_results import FILENAME as MLM_RESULTS

from . import AnalysisError
from .logs import loss_curves

TABLE_COLUMNS = [
    ("run", "run directory"),
    ("row", "row"),
    ("dataset", "dataset"),
    ("bleu_main", "BLEU"),
    ("bleu_fairseq", "fairseq BLEU4"),
    ("sacrebleu", "sacreBLEU (tok none)"),
    ("paper_bleu", "paper BLEU"),
    ("updates", "updates"),
    ("wall_time_min", "train time (min)"),
    ("checkpoint", "checkpoint scored"),
]


def _walk(root):
    for directory, dirs, names in os.walk(root):
        dirs.sort()
        yield directory, sorted(names)


def gather(root, exclude=()):
    """What ``root`` holds: ``{"results": [...], "logs": [(label, path)], "figures": [path],
    "warnings": [str]}``; ``exclude``: absolute paths to leave out (the page's own figure)."""
    from pn_fairseq.evaluation.results import ResultsError, load_result

    if not os.path.isdir(root):
        raise AnalysisError(f"{root}: no such directory")
    exclude = {os.path.abspath(p) for p in exclude}
    found = {"results": [], "logs": [], "figures": [], "warnings": []}
    for directory, names in _walk(root):
        rel = os.path.relpath(directory, root)
        label = os.path.basename(os.path.abspath(root)) if rel == "." else rel
        if "results.json" in names:
            path = os.path.join(directory, "results.json")
            try:
                found["results"].append(_table_row(label, load_result(path)))
            except ResultsError as err:
                found["warnings"].append(f"skipped {err}")
        if "train.log" in names:
            found["logs"].append((label, os.path.join(directory, "train.log")))
        for name in names:
            path = os.path.join(directory, name)
            if name.lower().endswith(".png") and os.path.abspath(path) not in exclude:
                found["figures"].append(path)
        if LM_RESULTS in names:
            found["lm_results"] = True
        if MLM_RESULTS in names:
            found["mlm_results"] = True
    if not (found["results"] or found["logs"] or found["figures"] or found.get("lm_results")
            or found.get("mlm_results")):
        raise AnalysisError(f"{root}: nothing to report (no results.json, train.log or *.png below it)")
    if found["results"]:
        found["sections"], found["comparisons"] = seeds_and_significance(root, found["warnings"])
    if found.pop("lm_results", False):
        found["lm"] = language_models(root, found["warnings"])
    if found.pop("mlm_results", False):
        found["mlm"] = masked_language_models(root, found["warnings"])
    return found


def language_models(root, warnings):
    """What ``pn-results ROOT`` prints of the language-model runs (the perplexity table per dataset,
    the comparison with preln paired by seed) and the numbers of the validation-perplexity figure:
    ``{"sections": [Section], "comparisons": {dataset: report}, "valid_curves": {dataset: [...]},
    "ppl_per_row": {dataset: [...]}}``, or None with a warning when the results cannot be read."""
    from pn_fairseq.evaluation import lm_tables

    try:
        groups, _ = lm_tables.collect([root])
    except (OSError, lm_tables.LMResultsError) as err:
        warnings.append(f"language-model tables left out: {err}")
        return None
    comparisons = lm_tables.compare_all(groups)
    return {"sections": lm_tables.sections(groups, comparisons), "comparisons": comparisons,
            "valid_curves": lm_tables.valid_curves(groups), "ppl_per_row": lm_tables.ppl_per_row(groups),
            "n_runs": sum(g.n for g in groups.values())}


def masked_language_models(root, warnings):
    """What ``pn-results ROOT`` prints of the masked-LM runs (against its default reference row) and
    the numbers ``pn-plot --valid-mlm`` draws: ``{"sections": [Section], "reach": {dataset: report},
    "figure": {dataset: ...}, "n_runs"}``, or None with a warning when the results cannot be read."""
    from pn_fairseq.evaluation import mlm_tables

    try:
        groups, _ = mlm_tables.collect([root])
    except (OSError, mlm_tables.MLMResultsError) as err:
        warnings.append(f"masked-LM tables left out: {err}")
        return None
    reports = mlm_tables.reach_all(groups)
    return {"sections": mlm_tables.sections(groups, reports), "reach": reports,
            "figure": mlm_tables.figure_data(groups, reports), "n_runs": sum(g.n for g in groups.values())}


def seeds_and_significance(root, warnings):
    """What ``pn-results ROOT`` adds to its table, by its own functions: per dataset the seeds
    table (when a row has several seeds or lacks some) and the paired bootstrap of every row
    against preln (when the dataset has preln and the runs kept their texts).

    Returns ``([pn_fairseq.evaluation.results.Section], {dataset: compare_dataset report})``; a problem that
    stops them (e.g. two results for one seed) is appended to ``warnings`` instead.
    """
    from pn_fairseq.evaluation import results, significance
    from pn_fairseq.evaluation.scoring import ScoringError

    try:
        table, _ = results.collect_runs([root], warn=warnings.append)
        comparisons = results.compare_all(table)
    except (OSError, results.ResultsError, ScoringError, significance.SignificanceError) as err:
        warnings.append(f"seeds and significance tables left out: {err}")
        return [], {}
    sections = []
    for dataset in results.DATASETS:
        if any(d == dataset for _, d in table):
            sections += results.dataset_sections(table, dataset, comparisons.get(dataset))
    return sections, comparisons


def run_rows(found):
    """``{run label: row}`` from the runs' results.json: the key of each run's colour."""
    return {r["run"]: r["row"] for r in found["results"]}


def _table_row(label, result):
    bleu = result["bleu"]
    return {
        "run": label, "row": result["row"], "dataset": result["dataset"], "bleu_main": result["bleu_main"],
        "bleu_fairseq": bleu.get("fairseq"), "sacrebleu": bleu.get("sacrebleu_tok_none"),
        "paper_bleu": result["paper_bleu"], "updates": result["updates"],
        "wall_time_min": round(result["wall_time_s"] / 60, 1), "checkpoint": os.path.basename(result["checkpoint"]),
    }


def curves_of(logs):
    """Loss curves of the logs that have any: ``{label: loss_curves(path)}``."""
    curves = {}
    for label, path in logs:
        curve = loss_curves(path)
        if curve["train_loss"][0] or curve["valid_loss"][0]:
            curves[label] = curve
    return curves


def numbers(root, found, curves):
    """What the page shows, as JSON-ready data: the table rows, warnings, figure paths
    (relative to ``root``) and the loss curves (``{label: {"train_loss"|"valid_loss":
    {"updates", "values"}}}``)."""
    return {
        "dir": os.path.abspath(root), "results": found["results"], "warnings": found["warnings"],
        "seeds_and_significance": [dataclasses.asdict(s) for s in found.get("sections", [])],
        "significance": found.get("comparisons", {}),
        "figures": [os.path.relpath(p, root) for p in found["figures"]],
        "loss_curves": {label: {name: {"updates": c[0], "values": c[1]} for name, c in curve.items()}
                        for label, curve in curves.items()},
        "language_models": None if not found.get("lm") else {
            "sections": [dataclasses.asdict(s) for s in found["lm"]["sections"]],
            "comparisons": found["lm"]["comparisons"], "valid_curves": found["lm"]["valid_curves"],
            "ppl_per_row": found["lm"]["ppl_per_row"]},
        "masked_language_models": None if not found.get("mlm") else {
            "sections": [dataclasses.asdict(s) for s in found["mlm"]["sections"]],
            "reach": found["mlm"]["reach"], "figure": found["mlm"]["figure"]},
    }


def _data_uri(path):
    with open(path, "rb") as f:
        return "data:image/png;base64," + base64.b64encode(f.read()).decode("ascii")


def _figure_uri(fig):
    # Drawn into the page only: a PNG written into the tree would be found as a figure next time.
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _language_models_html(lm):
    from pn_fairseq.evaluation.curves import valid_ppl_figure

    parts = ['<h2 id="language-models">Language models: test perplexity (lower is better)</h2>',
             "<p>As <code>pn-results</code> prints them for the results-lm.json files here.</p>"]
    parts += [_section_html(section) for section in lm["sections"]]
    if lm["valid_curves"]:
        uri = _figure_uri(valid_ppl_figure(lm["valid_curves"]))
        parts.append(f'<figure><img alt="validation perplexity" src="{uri}">'
                     "<figcaption>Validation perplexity against updates (as <code>pn-plot --valid-ppl</code> draws "
                     "it): a line per row, the mean over its seeds with a min-max band; lower is better."
                     "</figcaption></figure>")
    return "\n".join(parts)


def _masked_lm_html(mlm):
    from pn_fairseq.evaluation.curves import valid_mlm_figure

    parts = ['<h2 id="masked-language-models">Masked language models: validation loss (lower is better)</h2>',
             "<p>As <code>pn-results</code> prints them for the results-mlm.json files here.</p>"]
    parts += [_section_html(section) for section in mlm["sections"]]
    if mlm["figure"]:
        uri = _figure_uri(valid_mlm_figure(mlm["figure"]))
        parts.append(f'<figure><img alt="validation masked-LM loss" src="{uri}">'
                     "<figcaption>Validation masked-LM loss against updates (as <code>pn-plot --valid-mlm</code> "
                     "draws it): a line per row, the mean over its seeds with a min-max band; dashed: the reference "
                     "row's final loss, a star where each row reaches it.</figcaption></figure>")
    return "\n".join(parts)


def _cell(value):
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.2f}"
    return html.escape(str(value))


STYLE = """
body { font-family: sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #bbb; padding: 4px 10px; text-align: right; }
th { background: #eee; } td:first-child, td:nth-child(2), td:nth-child(3) { text-align: left; }
figure { margin: 1.5em 0; } img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: 0.9em; color: #555; } .warn { color: #a40; }
table.sections td:first-child { text-align: left; } table.sections td:last-child { text-align: left; }
"""


def _section_html(section):
    """A :class:`pn_fairseq.evaluation.results.Section` as HTML: the cells pn-results prints, escaped."""
    parts = [f"<h3>{html.escape(section.title)}</h3>"] if section.title else []
    if section.header:
        parts.append('<table class="sections"><tr>' + "".join(f"<th>{html.escape(h)}</th>" for h in section.header)
                     + "</tr>")
        parts += ["<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in section.rows]
        parts.append("</table>")
    if section.text:
        parts.append(f"<p>{html.escape(section.text)}</p>")
    if section.items:
        parts.append("<ul>" + "".join(f"<li>{html.escape(item)}</li>" for item in section.items) + "</ul>")
    return "\n".join(parts)


def render(root, found, loss_figure=None):
    """The page as a string. ``loss_figure``: path of the loss-curve PNG, or None."""
    title = f"Experiment report: {os.path.abspath(root)}"
    parts = [f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>",
             f"<style>{STYLE}</style></head><body>", f"<h1>{html.escape(title)}</h1>",
             f"<p>Generated {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')} by <code>pn-analyze report</code>: "
             f"{len(found['results'])} result(s), "
             + (f"{found['lm']['n_runs']} language-model result(s), " if found.get("lm") else "")
             + (f"{found['mlm']['n_runs']} masked-LM result(s), " if found.get("mlm") else "")
             + f"{len(found['logs'])} training log(s), "
             f"{len(found['figures'])} figure(s).</p>"]
    parts.append("<h2>Results</h2>")
    if found["results"]:
        parts.append('<table id="results"><tr>' + "".join(f"<th>{html.escape(h)}</th>" for _, h in TABLE_COLUMNS)
                     + "</tr>")
        for row in found["results"]:
            parts.append("<tr>" + "".join(f"<td>{_cell(row[k])}</td>" for k, _ in TABLE_COLUMNS) + "</tr>")
        parts.append("</table>")
    else:
        parts.append("<p>No results.json found"
                     + (" (language-model results below)" if found.get("lm") or found.get("mlm") else "")
                     + ".</p>")
    for warning in found["warnings"]:
        parts.append(f'<p class="warn">{html.escape(warning)}</p>')
    if found["results"]:
        parts.append('<h2 id="seeds-and-significance">Seeds and significance</h2>')
        if found.get("sections"):
            parts.append("<p>As <code>pn-results</code> prints them for these runs.</p>")
            parts += [_section_html(section) for section in found["sections"]]
        else:
            parts.append("<p>No row with several (or lacking) seeds, and no row tested against preln "
                         "(none in a dataset, or no texts beside results.json).</p>")
    if found.get("lm"):
        parts.append(_language_models_html(found["lm"]))
    if found.get("mlm"):
        parts.append(_masked_lm_html(found["mlm"]))
    parts.append("<h2>Loss curves</h2>")
    if loss_figure:
        parts.append(f'<figure><img alt="loss curves" src="{_data_uri(loss_figure)}">'
                     "<figcaption>Train (dashed) and validation (solid) loss of every run's train.log; "
                     "each row has the same colour in every figure the project draws."
                     "</figcaption></figure>")
    else:
        parts.append("<p>No training log with loss values found.</p>")
    parts.append("<h2>Figures</h2>")
    for path in found["figures"]:
        rel = html.escape(os.path.relpath(path, root))
        parts.append(f'<figure><img alt="{rel}" src="{_data_uri(path)}"><figcaption>{rel}</figcaption></figure>')
    if not found["figures"]:
        parts.append("<p>No other PNG found.</p>")
    parts.append("</body></html>\n")
    return "\n".join(parts)
