"""labkit's public face (labkit/__init__.py): every name resolves, type checkers see the lazy ones, none
shadows a module, and ``import labkit`` stays free of the slow ``kubernetes`` client."""

from __future__ import annotations

import ast
import importlib
import json
import subprocess
import sys
import types
from pathlib import Path

import pytest

import labkit

INIT = Path(labkit.__file__)


def _type_checking_names() -> set[str]:
    """The names the ``if TYPE_CHECKING:`` block of labkit/__init__.py imports."""
    tree = ast.parse(INIT.read_text())
    blocks = [
        node
        for node in tree.body
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"
    ]
    assert len(blocks) == 1, "one TYPE_CHECKING block"
    return {
        alias.asname or alias.name
        for node in blocks[0].body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }


def test_every_public_name_resolves_and_all_is_sorted():
    assert labkit.__all__ == sorted(labkit.__all__)
    for name in labkit.__all__:
        assert getattr(labkit, name) is not None, name
    assert set(labkit.__all__) <= set(dir(labkit))


def test_lazy_names_are_the_type_checking_names():
    assert set(labkit._LAZY) == _type_checking_names()
    assert set(labkit._LAZY) <= set(labkit.__all__)


def test_no_public_name_is_shadowed_by_or_shadows_a_module():
    package = INIT.parent
    for name in labkit.__all__:
        is_module = (package / f"{name}.py").is_file() or (package / name / "__init__.py").is_file()
        if is_module:  # a public subpackage: the name must be that module, not a function of the same name
            assert isinstance(getattr(labkit, name), types.ModuleType), name
            assert getattr(labkit, name) is importlib.import_module(f"labkit.{name}")
        else:
            assert not isinstance(getattr(labkit, name), types.ModuleType), name


def test_a_misspelt_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="conect"):
        labkit.conect  # type: ignore[attr-defined]  # noqa: B018


def test_import_labkit_loads_no_kubernetes():
    code = (
        "import json, sys, labkit; print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'kubernetes')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=INIT.parent.parent
    )
    assert json.loads(done.stdout) == []
