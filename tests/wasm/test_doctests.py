"""The examples in the wasm/image/host docstrings run and hold."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["labkit.wasm.inspection", "labkit.wasm.oci", "labkit.host.local"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0
