"""Run a function right after a package is first imported (or at once if it already is).

The plugin registers its models, tasks and optimizers with fairseq, and importing fairseq costs
about 3.5 s of CPU (its package import loads all its models and tasks, on top of torch's 3 s).
The plugin's light tools (``pn-score``, ``pn-results``, ``pn-plot``, the row driver's
bookkeeping) need none of it, yet ``import pn_fairseq.cli.score`` runs the package's
``__init__`` first. So the registration waits for fairseq: under ``--user-dir`` fairseq is
already imported and it happens at once; a script that imports ``pn_fairseq`` and then fairseq
gets it the moment fairseq's own ``__init__`` has run, before the script's next line.

The mechanism is the standard post-import hook: a one-shot finder at the front of
``sys.meta_path`` finds the package through the finders behind it and wraps its loader, so that
``exec_module`` runs the package and then the callback. The loader is put back afterwards, so
the package's ``__loader__`` and ``__spec__.loader`` are the ones Python gave it.
"""
import contextlib
import importlib.abc
import importlib.util
import sys


class _ThenCall(importlib.abc.Loader):
    """Loader proxy: the package's own loader does the work; ``callback`` runs after it."""

    def __init__(self, loader, callback, around):
        self._loader = loader
        self._callback = callback
        self._around = around

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        with self._around():
            try:
                self._loader.exec_module(module)
            finally:
                module.__loader__ = self._loader
                if getattr(module, "__spec__", None) is not None:
                    module.__spec__.loader = self._loader
            self._callback()

    def __getattr__(self, name):  # get_resource_reader, is_package, get_code, ...
        if name.startswith("_"):  # also keeps copy/pickle of a half-built proxy out of recursion
            raise AttributeError(name)
        return getattr(self._loader, name)


class _AfterImportFinder(importlib.abc.MetaPathFinder):
    def __init__(self, name, callback, around):
        self.name = name
        self.callback = callback
        self.around = around

    def find_spec(self, fullname, path=None, target=None):
        if fullname != self.name:
            return None
        # One shot: out of the way before asking the other finders, so that it neither recurses
        # nor wraps a second import of the package (after a failed first one, say).
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)  # the finders behind this one, as Python asks them
        if spec is None:
            return None  # Python then raises its usual ModuleNotFoundError
        spec.loader = _ThenCall(spec.loader, self.callback, self.around)
        return spec


def call_after_import(name: str, callback, around=contextlib.nullcontext) -> bool:
    """Call ``callback()`` once ``name`` (a top-level package) is imported: now, if it already
    is (returns True); otherwise right after its first import finishes (returns False).

    ``around``: a context-manager factory entered around the callback, and around the package's
    own import when that is still to come (the plugin quiets fairseq's import-time logging)."""
    if name in sys.modules:
        with around():
            callback()
        return True
    if not any(isinstance(f, _AfterImportFinder) and f.name == name and f.callback is callback for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterImportFinder(name, callback, around))
    return False
