"""The module paths keyed state was written under before the code became one package.

Savepoints and checkpoints hold ``SymbolState`` as cloudpickle wrote it, and a pickle names
each class by module path: state written before the move says ``udfs.symbol_state.SymbolState``
(and ``udfs.order_book...`` inside), and state from before ``5ac3811`` even
``flink_jobs.hot_path_state.SymbolState``. ``install`` puts an import hook first on
``sys.meta_path`` that answers exactly those old names with the modules they now are, so such
state restores into today's classes (``tests/unit/udfs/test_symbol_state_blob.py``, and the
savepoint upgrade test resumes a savepoint taken by the pre-move job). Every other old path
(``common.config``, ``batch.train``, ...) stays an ImportError: nothing of theirs lives in state.

``btcpred/__init__.py`` installs the hook, so any process that has imported the package (a
Flink worker has, before it reads state: the job's functions come first) resolves old names.
Remove an entry only when no savepoint in use and no blob under ``tests/data/state/`` names it.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from importlib.machinery import ModuleSpec
from types import ModuleType

PACKAGE_ALIASES = {"udfs": "btcpred.udfs"}  # old package -> new; each submodule follows
MODULE_ALIASES = {
    "flink_jobs": "btcpred.flink_jobs",  # only as the parent of the next line (pure-Python pickle imports it)
    "flink_jobs.hot_path_state": "btcpred.udfs.symbol_state",  # SymbolState's home until 5ac3811
}


def new_path(old: str) -> str | None:
    """Where an old module path lives now, or None if it is not one state may name."""
    if old in MODULE_ALIASES:
        return MODULE_ALIASES[old]
    head, _, rest = old.partition(".")
    if head in PACKAGE_ALIASES:
        return PACKAGE_ALIASES[head] + (f".{rest}" if rest else "")
    return None


class _Alias(importlib.abc.Loader):
    """Loads an old name as the already-importable new module itself (one module object, one class)."""

    def __init__(self, target: str) -> None:
        self.target = target
        self._spec: ModuleSpec | None = None

    def create_module(self, spec) -> ModuleType:
        module = importlib.import_module(self.target)
        self._spec = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        module.__spec__ = self._spec  # the import system stamped the alias's spec on it; give its own back


class LegacyPathFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path=None, target=None):
        new = new_path(fullname)
        if new is None:
            if fullname.partition(".")[0] in MODULE_ALIASES:  # else found again under the aliased parent's path
                raise ModuleNotFoundError(f"No module named {fullname!r} (an old path no state names)", name=fullname)
            return None
        return importlib.util.spec_from_loader(fullname, _Alias(new))


def install() -> None:
    if not any(isinstance(finder, LegacyPathFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, LegacyPathFinder())
