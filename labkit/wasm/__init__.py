"""Wasm modules and images: build the kit's apps, inspect modules, package OCI images.

``labkit.wasm.inspect`` is the function (the parser's module is ``labkit.wasm.inspect``
in ``sys.modules``; import names from it with ``from labkit.wasm.inspect import ...``).
"""

from labkit.wasm.apps import BuiltApp, build_apps, module_path, shipped_modules, stale_modules
from labkit.wasm.inspect import Export, Import, Limits, ModuleInfo, inspect
from labkit.wasm.oci import BuiltImage, ImageInfo, build_image, normalize_ref, read_image, read_images

__all__ = [
    "BuiltApp",
    "BuiltImage",
    "Export",
    "ImageInfo",
    "Import",
    "Limits",
    "ModuleInfo",
    "build_apps",
    "build_image",
    "inspect",
    "module_path",
    "normalize_ref",
    "read_image",
    "read_images",
    "shipped_modules",
    "stale_modules",
]
