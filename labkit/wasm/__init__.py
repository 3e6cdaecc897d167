"""Wasm modules and images: build the kit's apps, inspect modules, package OCI images.

``labkit.wasm.inspect`` is the function; the parser lives in ``labkit.wasm.inspection``.
"""

from labkit.wasm.apps import BuiltApp, build_apps, module_path, shipped_modules, stale_modules
from labkit.wasm.inspection import Export, Import, Limits, ModuleInfo, inspect
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
