"""Python programs labkit ships to run as native (non-wasm) pods, and their OCI images.

A sandbox node runs such an image as a subprocess of its kubelet (``labkit/sandbox/kubelet/native.py``).
What makes an image one of these, honestly and checkably:

- it is an ordinary ``linux/<arch>`` OCI image whose one gzip layer holds the program at
  ``/app/<file>.py`` (mode 0755, a ``#!/usr/local/bin/python3`` line first);
- its config's ``Entrypoint`` is ``["/usr/local/bin/python3", "/app/<file>.py"]`` and its label
  ``io.labkit.program`` names the program (``labkit.wasm.oci.PROGRAM_LABEL``);
- and, checked by the node before it runs anything, the program's bytes are those of a program in
  :data:`PROGRAMS` as installed with labkit (:func:`shipped`). Any other image whose entrypoint is not wasm
  is an unknown Linux image, which the sandbox refuses with the words it always used.

The interpreter is not in the image: the node runs the program with its own Python (the one running
labkit), so the image is small and has no ELF file. On a real cluster the image would need a Python base
layer (e.g. ``python:3.11-slim`` with the program copied to ``/app``).

>>> build_app_image("echo-server", "0.1.0", tmp_path / "echo.tar").ref     # doctest: +SKIP
'labkit.local/echo-server:0.1.0'
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

from labkit.errors import ImageError
from labkit.imagestore import default_platform
from labkit.wasm.oci import (
    ANNOTATION_IMAGE_NAME,
    ANNOTATION_REF_NAME,
    OCI_LAYER_GZIP,
    PROGRAM_LABEL,
    BuiltImage,
    descriptor,
    deterministic_gzip,
    deterministic_tar,
    image_archive,
    normalize_ref,
    sha256_digest,
    source_date_epoch,
    validate_tag,
    write_atomically,
)

#: app name -> its program file in this package
PROGRAMS = {"echo-server": "echo_server.py", "service-watcher": "service_watcher.py"}
#: where the program sits in the image, and the interpreter the Entrypoint names (python:3 images have it there)
APP_DIR = "/app"
INTERPRETER = "/usr/local/bin/python3"
REGISTRY = "labkit.local"


def program_file(app: str) -> Path:
    """The installed file of *app*'s program."""
    if app not in PROGRAMS:
        raise ImageError(f"labkit ships no program {app!r}", f"use one of: {', '.join(sorted(PROGRAMS))}")
    return Path(__file__).with_name(PROGRAMS[app])


def shipped(program: bytes) -> str | None:
    """The app whose installed program is byte for byte *program*, else None."""
    digest = hashlib.sha256(program).digest()
    for app in PROGRAMS:
        if hashlib.sha256(program_file(app).read_bytes()).digest() == digest:
            return app
    return None


def image_ref(app: str, version: str) -> str:
    """``labkit.local/<app>:<version>``, normalised as containerd names it."""
    return normalize_ref(f"{REGISTRY}/{app}:{version}")


def build_app_image(app: str, version: str, output: str | Path) -> BuiltImage:
    """Write *app*'s OCI image archive (``labkit.local/<app>:<version>``) to *output*, reproducibly."""
    validate_tag(version)
    program = program_file(app).read_bytes()
    path_in_image = f"{APP_DIR}/{PROGRAMS[app]}"
    ref = image_ref(app, version)
    created = datetime.fromtimestamp(source_date_epoch(), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    tar = deterministic_tar({path_in_image.lstrip("/"): (program, 0o755)})
    layer = deterministic_gzip(tar)
    os_name, arch = default_platform().split("/", 1)
    config = {
        "created": created,
        "architecture": arch,
        "os": os_name,
        "config": {
            "Entrypoint": [INTERPRETER, path_in_image],
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Labels": {PROGRAM_LABEL: path_in_image},
        },
        "rootfs": {"type": "layers", "diff_ids": [sha256_digest(tar)]},
        "history": [{"created": created, "created_by": f"labkit app image: COPY {PROGRAMS[app]} {path_in_image}"}],
    }
    archive, digest = image_archive(
        ref,
        version,
        config,
        descriptor(OCI_LAYER_GZIP, layer),
        layer,
        {ANNOTATION_IMAGE_NAME: ref, ANNOTATION_REF_NAME: version},
        {"architecture": arch, "os": os_name},
    )
    path = write_atomically(Path(output), archive)
    return BuiltImage(path=path, digest=digest, ref=ref, layout="python", size=len(archive))
