"""The package layering docs/development.md "Layout" describes, read off every import statement.

Bottom to top: ``pn_common`` (standard library only), then ``pn_dataprep`` and the plugin, which
never import each other; inside ``pn_fairseq`` a package imports only from its own rank or below
(norms know nothing of models or tools, models nothing of tools); only the tools (analysis and
above) ``import pn_fairseq`` as a whole, to register the model. Function-level imports count.
"""
import ast
import pathlib
import sys

from conftest import REPO

PLUGIN_RANKS = {  # pn_fairseq.<package>: rank; docs/development.md "Layout" lists them in this order
    "hooks": 1,
    "norms": 2,
    "optim": 3,
    "tasks": 3,
    "models": 4,
    "checkpoints": 5,
    "evaluation": 6,
    "analysis": 7,
    "gpucheck": 8,
    "cli": 9,
}
SOURCES = {"pn_common": REPO / "pn_common", "pn_dataprep": REPO / "data-prep" / "pn_dataprep",
           "pn_fairseq": REPO / "pn_fairseq"}


def module_name(top, path):
    rel = path.relative_to(SOURCES[top]).with_suffix("")
    parts = [top, *rel.parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts), parts[-1] == "__init__"


def imports(top, path):
    """Every module ``path`` imports, as absolute dotted names (``from X import y`` gives X.y too,
    since y may be a submodule)."""
    name, is_pkg = module_name(top, path)
    package = name if is_pkg else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


def rank(dotted):
    """The plugin rank of a ``pn_fairseq.*`` name (None for the package itself)."""
    parts = dotted.split(".")
    return PLUGIN_RANKS.get(parts[1]) if len(parts) > 1 else None


def all_edges():
    for top, root in SOURCES.items():
        for path in sorted(root.rglob("*.py")):
            name, _ = module_name(top, path)
            for target in imports(top, path):
                yield path.relative_to(REPO), name, target


def violations():
    stdlib = sys.stdlib_module_names
    found = []
    for path, name, target in all_edges():
        head = target.split(".")[0]
        if name.startswith("pn_common") and head not in stdlib and head != "pn_common":
            found.append(f"{path}: pn_common imports {target} (standard library only)")
        elif name.startswith("pn_dataprep") and head == "pn_fairseq":
            found.append(f"{path}: data preparation imports the plugin ({target})")
        elif name.startswith("pn_fairseq") and head == "pn_dataprep":
            found.append(f"{path}: the plugin imports data preparation ({target})")
        elif name.startswith("pn_fairseq.") and head == "pn_fairseq":
            own, other = rank(name), rank(target)
            if other is None and target != "pn_fairseq":
                continue  # pn_fairseq.<something not a package>: caught by the ls test below
            whole = target == "pn_fairseq" and own < PLUGIN_RANKS["analysis"]  # only tools register all
            if whole or (own is not None and other is not None and other > own):
                found.append(f"{path}: {name} (rank {own}) imports {target} (rank {other})")
    return found


def test_no_module_imports_from_a_package_above_it():
    assert violations() == []


def test_the_scan_sees_imports_at_every_level_and_relative_ones(tmp_path, monkeypatch):
    # A module of norms importing models inside a function, relatively, must be reported.
    fake = tmp_path / "pn_fairseq"
    (fake / "norms").mkdir(parents=True)
    (fake / "norms" / "__init__.py").write_text("")
    (fake / "norms" / "bad.py").write_text("def f():\n    from ..models import layers\n")
    (fake / "models").mkdir()
    (fake / "models" / "ok.py").write_text("from ..norms import bad\nfrom pn_fairseq.hooks import errors\n")
    monkeypatch.setitem(SOURCES, "pn_fairseq", fake)
    monkeypatch.setitem(SOURCES, "pn_common", tmp_path / "none")
    monkeypatch.setitem(SOURCES, "pn_dataprep", tmp_path / "none")
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    assert violations() == ["pn_fairseq/norms/bad.py: pn_fairseq.norms.bad (rank 2) imports pn_fairseq.models (rank 4)",
                            "pn_fairseq/norms/bad.py: pn_fairseq.norms.bad (rank 2) imports pn_fairseq.models.layers (rank 4)"]


def test_the_plugin_holds_packages_only_and_each_says_what_it_may_import():
    entries = sorted(p.name for p in SOURCES["pn_fairseq"].iterdir() if p.name != "__pycache__")
    assert entries == ["__init__.py", *sorted(PLUGIN_RANKS)]
    for package in PLUGIN_RANKS:
        init = SOURCES["pn_fairseq"] / package / "__init__.py"
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        assert len(doc.splitlines()) >= 3, f"{init}: a docstring saying what the package holds"
    layout = (REPO / "docs" / "development.md").read_text().split("## Layout", 1)[1]
    positions = [layout.index(f"pn_fairseq/{package}/") for package in PLUGIN_RANKS]
    assert positions == sorted(positions), "docs/development.md's Layout lists the packages bottom to top"
