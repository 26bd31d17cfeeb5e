"""README.md and docs/*.md point only at things that exist: every relative link and image resolves
to a file (and every #anchor to a heading of the target page, by GitHub's slug rules), and every
scripts/... or configs/... path, every other repository path, every `python -m pn_fairseq...`
module and every pn-* console script the pages name exists. The checker is tested first on pages
written here, with their problems known in advance."""
import glob
import itertools
import re
from pathlib import Path

import pytest

from conftest import REPO

# Repository folders whose paths the pages may name; a path under any other prefix (checkpoints/,
# data-bin/, demo-out/, OUT/...) is something a command makes, not something that must exist.
CHECKED_PREFIXES = ("scripts", "configs", "pn_fairseq", "pn_common", "tests", "bench", "data-prep", "docs",
                    "results")
FENCE = re.compile(r"^```.*?^```[ \t]*$", re.M | re.S)
INLINE_CODE = re.compile(r"`(?:[^`\n]|\n(?!\n))+`")  # a span may wrap a line, not a paragraph
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(([^()\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t]*#*[ \t]*$", re.M)
PATH = re.compile(r"(?<![\w/.{-])((?:%s)/(?:\{[^{}\s`]*\}|[^\s`'\"(),;|:\[\]{}#])*)"
                  % "|".join(map(re.escape, CHECKED_PREFIXES)))
MODULE = re.compile(r"python3? -m ((?:pn_fairseq|pn_dataprep|pn_common)(?:\.\w+)*)")
PN_WORD = re.compile(r"(?<![\w/.-])(pn-[a-z0-9]+(?:-[a-z0-9]+)*)(?![\w/-]|\.[a-z])")
ENV = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=\S*$")
PREFIX_WORDS = {"nice", "setsid", "exec", "time", "env", "command"}


def pages(root=REPO):
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def without_code(text):
    """Prose only: fenced blocks and inline code spans blanked (a link inside them is no link)."""
    text = FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    return INLINE_CODE.sub("``", text)


def slug(heading):
    """GitHub's anchor for a heading: the rendered text, lower-cased, every character other than a
    letter, digit, underscore, hyphen or space dropped, spaces turned into hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = text.replace("`", "").replace("*", "").strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path):
    """Every anchor of a page: a repeated heading gets -1, -2, ... as on GitHub."""
    seen, result = {}, set()
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    for match in HEADING.finditer(text):
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        result.add(base if count == 0 else f"{base}-{count}")
    return result


def link_problems(page, root=REPO):
    problems = []
    for target in LINK.findall(without_code(page.read_text(encoding="utf-8"))):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        resolved = (page.parent / file_part) if file_part else page
        where = f"{page.relative_to(root)}: {target}"
        if not resolved.exists():
            problems.append(f"{where}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            problems.append(f"{where}: no heading with the anchor #{anchor} in {resolved.relative_to(root)}")
    return problems


def expand_braces(pattern):
    """bash's brace expansion of one word, e.g. scripts/{a,b}/{c,d}.sh -> four paths."""
    match = re.search(r"\{([^{}]*,[^{}]*)\}", pattern)
    if not match:
        return [pattern]
    head, tail = pattern[:match.start()], pattern[match.end():]
    return list(itertools.chain.from_iterable(expand_braces(head + alt + tail)
                                              for alt in match.group(1).split(",")))


def path_exists(path, root):
    """A named path exists; a placeholder (<row>, $row, [..]) checks the folder in front of it."""
    parts = path.rstrip(".").split("/")
    for i, part in enumerate(parts):
        if re.search(r"[<>$]|\.\.\.", part) or part in {"X", "N", "DIR"}:
            parts = parts[:i]
            break
    concrete = "/".join(parts)
    return bool(glob.glob(str(root / concrete))) if "*" in concrete else (root / concrete).exists()


def path_problems(page, root=REPO):
    text = page.read_text(encoding="utf-8")
    problems = []
    for word in sorted(set(PATH.findall(text))):
        word = word.rstrip(".")
        missing = [p for p in expand_braces(word) if not path_exists(p, root)]
        if missing:
            problems.append(f"{page.relative_to(root)}: {word}: {', '.join(missing)} does not exist")
    for module in sorted(set(MODULE.findall(text))):
        top, *rest = module.split(".")
        base = root / ("data-prep" if top == "pn_dataprep" else "") / top
        target = base.joinpath(*rest)
        if not (target.with_suffix(".py").exists() or (target / "__init__.py").exists()):
            problems.append(f"{page.relative_to(root)}: python -m {module}: no such module")
    return problems


def console_scripts(root=REPO):
    setup = (root / "setup.py").read_text(encoding="utf-8")
    return set(re.findall(r"[\"']([\w-]+)\s*=\s*[\w.]+:\w+[\"']", setup))


def row_names(root=REPO):
    return {p.stem for p in (root / "configs").glob("*/*.conf") if p.stem != "common"}


def commands(code):
    """The command words of shell code: the first word of each pipeline part, after variable
    assignments and wrappers such as nice or setsid."""
    for line in code.splitlines():
        line = line.split(" #", 1)[0]
        for part in re.split(r"\|\|?|&&|;|\$\(|\bdo\b|\bthen\b", line):
            words = part.split()
            while words and (ENV.match(words[0]) or words[0] in PREFIX_WORDS):
                words.pop(0)
            if words:
                yield words[0].strip("\"'")


def console_script_problems(page, root=REPO):
    """A pn-* word used as a command must be a console script of setup.py; any other pn-* word a
    console script or a row (a configs/<dataset>/<row>.conf)."""
    scripts, rows = console_scripts(root), row_names(root)
    text = page.read_text(encoding="utf-8")
    used_as_command = set()
    for block in FENCE.findall(text):
        used_as_command.update(w for w in commands("\n".join(block.splitlines()[1:-1])) if w.startswith("pn-"))
    for span in INLINE_CODE.findall(FENCE.sub("", text)):
        words = span.strip("`").split()
        if len(words) > 1 and words[0].startswith("pn-"):
            used_as_command.add(words[0])
    problems = [f"{page.relative_to(root)}: {word} is run as a command but is no console script of setup.py"
                for word in sorted(used_as_command - scripts)]
    named = set(PN_WORD.findall(FENCE.sub("", text)))
    problems += [f"{page.relative_to(root)}: {word} is neither a console script nor a row"
                 for word in sorted(named - scripts - rows - used_as_command)]
    return problems


# ------------------------------------------------------------------------------------------
# The checker, on pages whose problems are known


def test_slugs_follow_githubs_rules():
    assert slug("PowerNorm's Table 1 at Multi30k scale (three seeds of every row)") == \
        "powernorms-table-1-at-multi30k-scale-three-seeds-of-every-row"
    assert slug("Scale: update frequency, several workers, resume") == "scale-update-frequency-several-workers-resume"
    assert slug("Analyses (pn-analyze)") == "analyses-pn-analyze"
    assert slug("Decoding: `pn-fold` and the *folded* model") == "decoding-pn-fold-and-the-folded-model"
    assert slug("The norm_type flag: A / B") == "the-norm_type-flag-a--b"


def test_repeated_headings_get_numbered_anchors(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("# Title\n\n## Seeds\n\n```\n## not a heading\n```\n\n### Seeds\n\n## Seeds\n")
    assert anchors(page) == {"title", "seeds", "seeds-1", "seeds-2"}


def make_repo(tmp_path):
    (tmp_path / "docs" / "figures").mkdir(parents=True)
    (tmp_path / "docs" / "figures" / "a.png").write_bytes(b"png")
    (tmp_path / "scripts" / "multi30k").mkdir(parents=True)
    for row in ("pn", "preln"):
        (tmp_path / "scripts" / "multi30k" / f"{row}.sh").write_text("")
    (tmp_path / "configs" / "multi30k").mkdir(parents=True)
    for name in ("common", "pn", "pn-nogroup"):
        (tmp_path / "configs" / "multi30k" / f"{name}.conf").write_text("")
    (tmp_path / "pn_fairseq" / "cli").mkdir(parents=True)
    (tmp_path / "pn_fairseq" / "cli" / "row_results.py").write_text("")
    (tmp_path / "setup.py").write_text('entry_points={"console_scripts": ["pn-score = pn_fairseq.cli.score:main"]}\n')
    (tmp_path / "docs" / "a.md").write_text("# A page\n\n## Seeds and significance\n\n## Seeds and significance\n")
    return tmp_path


def test_good_pages_have_no_problems(tmp_path):
    root = make_repo(tmp_path)
    page = root / "README.md"
    page.write_text(
        "# R\n\n## Local heading\n\n[a](docs/a.md#seeds-and-significance-1) ![f](docs/figures/a.png) "
        "[here](#local-heading) [web](https://example.org/x) `[not a link](nowhere.md)`\n\n"
        "```bash\nCPU=1 nice bash scripts/multi30k/{pn,preln}.sh && pn-score --gen-output g.txt\n"
        "python -m pn_fairseq.cli.row_results texts DIR\n[inside code](nowhere.md)\n```\n\n"
        "`configs/multi30k/{common,<row>}.conf`, `scripts/multi30k/$row.sh`, `scripts/multi30k/*.sh`; "
        "the `pn-nogroup` row and pn-score; `pn-folded.pt`; checkpoints/multi30k/pn/ is made by a run.\n")
    assert link_problems(page, root) == []
    assert path_problems(page, root) == []
    assert console_script_problems(page, root) == []


def test_each_broken_reference_is_reported(tmp_path):
    root = make_repo(tmp_path)
    page = root / "docs" / "b.md"
    page.write_text(
        "# B\n\n[gone](missing.md) [bad anchor](a.md#seeds-and-significance-2) [self](#nowhere) "
        "![img](figures/b.png) [ok](../README.md)\n\n"
        "```bash\nbash scripts/multi30k/{pn,bn}.sh\npn-scores --gen-output g.txt\npython -m pn_fairseq.cli.nothing\n```\n\n"
        "`configs/wmt14/pn.conf` and the pn-nogrup row.\n")
    (root / "README.md").write_text("# R\n")
    assert link_problems(page, root) == [
        "docs/b.md: missing.md: no such file",
        "docs/b.md: a.md#seeds-and-significance-2: no heading with the anchor #seeds-and-significance-2 in docs/a.md",
        "docs/b.md: #nowhere: no heading with the anchor #nowhere in docs/b.md",
        "docs/b.md: figures/b.png: no such file",
    ]
    assert path_problems(page, root) == [
        "docs/b.md: configs/wmt14/pn.conf: configs/wmt14/pn.conf does not exist",
        "docs/b.md: scripts/multi30k/{pn,bn}.sh: scripts/multi30k/bn.sh does not exist",
        "docs/b.md: python -m pn_fairseq.cli.nothing: no such module",
    ]
    assert console_script_problems(page, root) == [
        "docs/b.md: pn-scores is run as a command but is no console script of setup.py",
        "docs/b.md: pn-nogrup is neither a console script nor a row",
    ]


def test_console_scripts_are_read_from_setup_py():
    assert {"pn-score", "pn-results", "pn-plot", "pn-analyze", "pn-fold", "pn-average-checkpoints"} <= console_scripts()


# ------------------------------------------------------------------------------------------
# The project's own pages


@pytest.mark.parametrize("page", pages(), ids=lambda p: str(p.relative_to(REPO)))
def test_links_and_images_resolve(page):
    problems = link_problems(page)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("page", pages(), ids=lambda p: str(p.relative_to(REPO)))
def test_named_paths_and_modules_exist(page):
    problems = path_problems(page)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("page", pages(), ids=lambda p: str(p.relative_to(REPO)))
def test_named_console_scripts_exist(page):
    problems = console_script_problems(page)
    assert not problems, "\n".join(problems)


def test_readme_is_a_short_manual_and_the_index_lists_every_page():
    assert len((REPO / "README.md").read_text(encoding="utf-8").splitlines()) <= 320
    index = (REPO / "docs" / "README.md").read_text(encoding="utf-8")
    linked = {Path(t.partition("#")[0]).name for t in LINK.findall(without_code(index))}
    assert {p.name for p in pages()[1:] if p.name != "README.md"} <= linked
