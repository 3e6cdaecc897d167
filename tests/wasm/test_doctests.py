"""The examples in the wasm/image/host docstrings run and hold."""

from __future__ import annotations

import doctest
import importlib
import sys

import pytest

MODULES = ["labkit.wasm.inspect", "labkit.wasm.oci", "labkit.host.local"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    importlib.import_module(name)
    module = sys.modules[name]  # labkit.wasm.inspect the attribute is the function, not the module
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0
