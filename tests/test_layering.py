"""The core never depends on trio or on the transports (DESIGN.md, section 1)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pubsub_rpc

PACKAGE = Path(pubsub_rpc.__file__).parent
FORBIDDEN = {"trio", "transports"}


def test_importing_the_core_in_a_fresh_interpreter_does_not_import_trio() -> None:
    code = (
        "import json, pkgutil, importlib, sys\n"
        "import pubsub_rpc\n"
        "for module in pkgutil.iter_modules(pubsub_rpc.__path__, 'pubsub_rpc.'):\n"
        "    importlib.import_module(module.name)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    loaded = json.loads(done.stdout)
    assert "pubsub_rpc._server" in loaded  # the submodules really were imported
    offenders = [name for name in loaded if name.split(".")[0] in FORBIDDEN]
    assert offenders == []


def imported_names(tree: ast.AST) -> set[str]:
    """Top-level names of every module a core file imports, statically or by a literal string.

    The core has no subpackages, so ``from .. import x`` (level 2 or more) reaches the
    repository root: it is recorded as ``x``, the sibling package it names.
    """
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module or "")
        elif isinstance(node, ast.ImportFrom) and node.level > 1:
            names.update([node.module] if node.module else [alias.name for alias in node.names])
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if called in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                names.add(node.args[0].value)
    return {name.split(".")[0] for name in names}


def test_no_core_module_imports_trio_or_transports() -> None:
    sources = sorted(PACKAGE.glob("**/*.py"))
    assert len(sources) >= 8
    for path in sources:
        names = imported_names(ast.parse(path.read_text(), filename=str(path)))
        assert not names & FORBIDDEN, f"{path.name} imports {sorted(names & FORBIDDEN)}"


def test_the_scanner_sees_every_kind_of_import() -> None:
    for source in (
        "import trio.lowlevel",
        "from trio import lowlevel",
        "from transports import tcp",
        "from .. import transports",
        "from ..transports.tcp import Adapter",
        "import importlib\nimportlib.import_module('trio')",
        "__import__('trio')",
    ):
        assert imported_names(ast.parse(source)) & FORBIDDEN, source
    assert imported_names(ast.parse("from . import _wire\nfrom ._framing import encode")) == set()
