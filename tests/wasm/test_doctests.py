"""The examples in the docstrings (wasm, image, host, sandbox event bodies) run and hold."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "labkit.wasm.inspection",
    "labkit.wasm.oci",
    "labkit.host.local",
    "labkit.sandbox.eventbody",
    "labkit.sandbox.api.status",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0
