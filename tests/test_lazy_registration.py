"""The plugin registers with fairseq when fairseq is imported, whichever comes first, and the
light tools import neither fairseq nor torch (pn_fairseq.hooks.after_import)."""
import ast
import contextlib
import json
import pathlib
import subprocess
import sys

import pytest

from pn_fairseq.hooks.after_import import _AfterImportFinder, call_after_import

REGISTERED = """
import json, sys
from fairseq.models import ARCH_MODEL_REGISTRY, MODEL_REGISTRY
from fairseq.optim import OPTIMIZER_REGISTRY
from fairseq.optim.lr_scheduler import LR_SCHEDULER_REGISTRY
from fairseq.tasks import TASK_REGISTRY
import fairseq, torch
print(json.dumps({
    "model": "transformer_pn" in MODEL_REGISTRY, "arch": "transformer_pnv" in ARCH_MODEL_REGISTRY,
    "task": "translation_pn" in TASK_REGISTRY, "optimizer": "radam" in OPTIMIZER_REGISTRY,
    "scheduler": "epoch_step" in LR_SCHEDULER_REGISTRY,
    "allow_list": any(g is __import__("argparse").Namespace for g in torch.serialization.get_safe_globals()),
    "loader": type(fairseq.__loader__).__name__, "spec_loader": type(fairseq.__spec__.loader).__name__,
}))
"""
EVERYTHING = {"model": True, "arch": True, "task": True, "optimizer": True, "scheduler": True, "allow_list": True,
              "loader": "SourceFileLoader", "spec_loader": "SourceFileLoader"}


def python(code):
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_import_pn_fairseq_then_torch_load_reads_fairseq_checkpoints_without_fairseq():
    proc = python("import argparse, sys, pn_fairseq, torch\n"
                  "print(any(g is argparse.Namespace for g in torch.serialization.get_safe_globals()), "
                  "'fairseq' in sys.modules)")
    assert proc.stdout.split() == ["True", "False"]


@pytest.mark.parametrize("first", ["import pn_fairseq, sys; assert 'fairseq' not in sys.modules",
                                   "import fairseq, pn_fairseq"])
def test_registered_whichever_is_imported_first(first):
    proc = python(first + "\n" + REGISTERED)
    assert json.loads(proc.stdout) == EVERYTHING
    if first.startswith("import pn_fairseq"):
        assert proc.stderr == ""  # fairseq's import-time INFO lines stay quiet (import_logging)


@pytest.mark.parametrize("module", ["pn_fairseq.models.layers", "pn_fairseq.optim.radam", "pn_fairseq.tasks.translation_pn",
                                    "pn_fairseq.checkpoints.fold", "pn_fairseq.models.help_text"])
def test_any_module_imported_first_registers_everything(module):
    # each starts fairseq's import half-way through a package the registration imports (was:
    # "Cannot register model architecture for unknown model type (transformer_pn)")
    proc = python(f"import {module}\n" + REGISTERED)
    assert json.loads(proc.stdout) == EVERYTHING


def _module_level_fairseq_import(tree):
    return any(isinstance(node, ast.Import) and any(a.name.split(".")[0] == "fairseq" for a in node.names)
               or isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "fairseq"
               for node in tree.body)


def test_fairseq_is_the_first_import_of_every_package_whose_modules_import_it():
    """What keeps the test above true for modules written later: a module that imports fairseq at
    module level sits in a package whose __init__ imports fairseq before any of its modules."""
    root = pathlib.Path(__file__).resolve().parents[1] / "pn_fairseq"
    packages = set()
    for path in root.rglob("*.py"):
        if path.name != "__init__.py" and _module_level_fairseq_import(ast.parse(path.read_text())):
            packages.add(path.parent)
    assert {p.name for p in packages} == {"models", "optim", "tasks"}
    for package in packages:
        imports = [n for n in ast.parse((package / "__init__.py").read_text()).body
                   if isinstance(n, (ast.Import, ast.ImportFrom))]
        assert isinstance(imports[0], ast.Import) and imports[0].names[0].name == "fairseq", package
    # and what those modules take from each other, they take from the module that defines it: a
    # package that set fairseq's import off is still half-run (was: `from ..tasks import TranslationPNTask`)
    for path in root.rglob("*.py"):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ImportFrom) and node.level and node.module in {p.name for p in packages}:
                target = path.parent.parent if node.level == 2 else path.parent
                for alias in node.names:
                    assert (target / node.module / f"{alias.name}.py").exists(), (path, node.module, alias.name)


@pytest.mark.parametrize("module", ["pn_fairseq", "pn_fairseq.cli.score", "pn_fairseq.cli.results",
                                    "pn_fairseq.cli.plot", "pn_fairseq.cli.row_results", "pn_fairseq.cli.analyze"])
def test_light_tools_import_neither_fairseq_nor_torch(module):
    proc = python(f"import sys, {module}; print(sorted(m for m in ('fairseq', 'torch') if m in sys.modules))")
    assert proc.stdout.strip() == "[]"


def _package(tmp_path, name, body):
    (tmp_path / name).mkdir()
    (tmp_path / name / "__init__.py").write_text(body)
    return name


@pytest.fixture
def fresh_path(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    saved = sys.meta_path[:]
    yield tmp_path
    sys.meta_path[:] = saved


def test_callback_runs_once_after_the_package_has_run_inside_around(fresh_path):
    name = _package(fresh_path, "pn_toy_pkg_a", "import sys\nsys._pn_toy_events.append('package')\nVALUE = 42\n")
    events = sys._pn_toy_events = []

    @contextlib.contextmanager
    def around():
        events.append("enter")
        yield
        events.append("exit")

    def callback():
        events.append(("callback", sys.modules[name].VALUE))

    try:
        assert call_after_import(name, callback, around=around) is False
        assert events == []  # nothing imported yet
        __import__(name)
        __import__(name)
        assert events == ["enter", "package", ("callback", 42), "exit"]
        assert not any(isinstance(f, _AfterImportFinder) and f.name == name for f in sys.meta_path)  # one shot
        assert call_after_import(name, callback, around=around) is True  # already imported: at once
        assert events[-3:] == ["enter", ("callback", 42), "exit"]
    finally:
        del sys._pn_toy_events
        sys.modules.pop(name, None)


def test_a_failing_package_import_fails_as_usual_and_calls_nothing(fresh_path):
    name = _package(fresh_path, "pn_toy_pkg_b", "raise ImportError('broken install')\n")
    called = []
    call_after_import(name, lambda: called.append(1))
    call_after_import("pn_toy_pkg_missing", lambda: called.append(2))
    with pytest.raises(ImportError, match="broken install"):
        __import__(name)
    with pytest.raises(ModuleNotFoundError):
        __import__("pn_toy_pkg_missing")
    assert called == [] and name not in sys.modules
