"""OCI images for wasm modules, built and read without Docker.

Two layouts, both written as an ``oci-archive`` tar (OCI layout + a Docker
``manifest.json``) that ``skopeo``, ``ctr images import`` and the sandbox's
image store read:

- ``runwasi``: the module itself is the one layer, with media type
  ``application/vnd.bytecodealliance.wasm.component.layer.v0+wasm`` and no
  rootfs diff ids — what runwasi's ``oci-tar-builder`` makes.
- ``compat``: an ordinary gzip tar layer holding ``/<name>.wasm``, plus the
  ``module.wasm.image/variant=compat-smart`` annotation crun's wasm handler reads.

A third kind is read here but built by :mod:`labkit.apps`: ``python``, a ``linux/<arch>`` image whose
Entrypoint is a Python interpreter and a program that its layer holds (the ``io.labkit.program`` label),
which sandbox nodes run natively when the program is one labkit ships.

Archives are byte-for-byte reproducible: fixed timestamps (``SOURCE_DATE_EPOCH``
or 1970), sorted tar entries, root ownership, gzip mtime 0.

``io.containerd.image.name`` holds the *normalised* reference
(``docker.io/library/wasi-demo:latest``), the name the kubelet looks up for a pod's
``image: wasi-demo:latest``; runwasi's builder writes the name as given.

Observed with Debian's containerd 1.6.20 (tests/wasm/test_host.py):
``ctr images import --all-platforms`` imports and unpacks the compat archive; the
runwasi archive fails with ``ctr: mismatched image rootfs and manifest layers``
(containerd needs >= 1.6.25 / 1.7.7 to unpack wasm layers), and is stored only
with ``--no-unpack``. Without ``--all-platforms`` both fail with
``ctr: image might be filtered out``.

>>> img = build_image(module_path("wasi-demo"), "wasi-demo", "latest", "compat", "demo.tar")  # doctest: +SKIP
>>> read_image(img.path).entrypoint                                                            # doctest: +SKIP
['/wasi-demo.wasm']
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import tarfile
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from labkit.errors import ImageError
from labkit.wasm.inspection import MAGIC, check_header, load_bytes

WASM_LAYER_MEDIA_TYPE = "application/vnd.bytecodealliance.wasm.component.layer.v0+wasm"
WASM_ARTIFACT_CONFIG_MEDIA_TYPE = "application/vnd.wasm.config.v0+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_INDEX = "application/vnd.docker.distribution.manifest.list.v2+json"
ANNOTATION_IMAGE_NAME = "io.containerd.image.name"
ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
ANNOTATION_VARIANT = "module.wasm.image/variant"
RUNWASI_LAYERS_LABEL = "containerd.runwasi.layers"
#: The config label of a labkit Python program image: the program's path in the image (labkit.apps).
PROGRAM_LABEL = "io.labkit.program"
LAYOUTS = ("runwasi", "compat")
WASM_PLATFORM = {"architecture": "wasm", "os": "wasip1"}

# The distribution/reference grammar, as containerd and docker apply it.
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
NAME_RE = re.compile(rf"^(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*$")
TAG_RE = re.compile(r"^[\w][\w.-]{0,127}$")
DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")


@dataclass(frozen=True)
class BuiltImage:
    """An archive :func:`build_image` wrote; ``digest`` is the manifest digest."""

    path: Path
    digest: str
    ref: str
    layout: str
    size: int


@dataclass
class ImageInfo:
    """One image read from an archive by :func:`read_images`."""

    refs: list[str]
    digest: str
    platform: str
    layout: str  # runwasi | compat | artifact | native | python (a labkit program, labkit.apps)
    entrypoint: list[str]
    env: list[str]
    annotations: dict[str, str]
    module: bytes | None
    config: dict[str, Any]
    manifest: dict[str, Any]
    blobs: dict[str, bytes] = field(repr=False, default_factory=dict)

    @property
    def size(self) -> int:
        """Bytes of content (manifest, config, layers), as ``ctr images ls`` counts."""
        return sum(len(b) for b in self.blobs.values())


# --------------------------------------------------------------------------- references


def validate_name(name: str) -> str:
    """Check *name* against the OCI/docker reference grammar; return it.

    >>> validate_name("ghcr.io/second-state/llama-api-server")
    'ghcr.io/second-state/llama-api-server'
    """
    if not name or len(name) > 255 or not NAME_RE.match(name):
        hint = " (put the tag in --tag, not in the name)" if ":" in name.rsplit("/", 1)[-1] else ""
        raise ImageError(
            f"{name!r} is not a valid image name{hint}",
            "use lowercase letters, digits and . _ - separators, optionally a registry and "
            "path first, e.g. wasi-demo or ghcr.io/me/wasi-demo",
        )
    return name


def validate_tag(tag: str) -> str:
    """Check *tag* against the reference grammar (``[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}``)."""
    if not TAG_RE.match(tag or ""):
        raise ImageError(
            f"{tag!r} is not a valid image tag",
            "a tag is 1-128 characters of letters, digits, _ . - and must not start with . or -, e.g. latest or v1.0",
        )
    return tag


def split_ref(ref: str) -> tuple[str, str | None, str | None]:
    """Split ``name[:tag][@digest]`` into its three parts (tag and digest may be None)."""
    name, _, digest = ref.partition("@")
    last = name.rsplit("/", 1)[-1]
    tag = None
    if ":" in last:
        name, tag = name.rsplit(":", 1)
    return name, tag, digest or None


def normalize_ref(ref: str) -> str:
    """Normalise a reference the way containerd's CRI does.

    >>> normalize_ref("wasi-demo:latest")
    'docker.io/library/wasi-demo:latest'
    >>> normalize_ref("ghcr.io/containerd/runwasi/wasi-demo-app")
    'ghcr.io/containerd/runwasi/wasi-demo-app:latest'
    """
    name, tag, digest = split_ref(ref.strip())
    first, _, rest = name.partition("/")
    if not rest or not ("." in first or ":" in first or first == "localhost" or first != first.lower()):
        name = f"docker.io/{name}"
        first, _, rest = name.partition("/")
    if first == "docker.io" and "/" not in rest:
        name = f"docker.io/library/{rest}"
    validate_name(name)
    if tag is not None:
        validate_tag(tag)
    if digest is not None and not DIGEST_RE.match(digest):
        raise ImageError(f"{digest!r} in {ref!r} is not a sha256 digest", "use name@sha256:<64 hex digits>")
    if tag is None and digest is None:
        tag = "latest"
    return name + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")


# --------------------------------------------------------------------------- writing


def source_date_epoch() -> int:
    """``SOURCE_DATE_EPOCH`` if set (reproducible-builds convention), else 0."""
    value = os.environ.get("SOURCE_DATE_EPOCH", "0")
    try:
        return int(value)
    except ValueError:
        raise ImageError(
            f"SOURCE_DATE_EPOCH={value!r} is not an integer", "set it to seconds since 1970, or unset it"
        ) from None


def canonical_json(obj: Any) -> bytes:
    """JSON with sorted keys and no spaces: equal objects give equal digests."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def descriptor(media_type: str, data: bytes, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": sha256_digest(data), "size": len(data), **extra}


def deterministic_tar(files: dict[str, tuple[bytes, int]], mtime: int = 0) -> bytes:
    """A tar of ``{path: (content, mode)}`` with sorted entries, root owner and fixed mtime.

    Parent directories are added as entries too, so unpackers create them with 0755.
    """
    dirs = {str(Path(p).parent) for p in files} - {"."}
    for d in list(dirs):
        dirs.update(str(parent) for parent in Path(d).parents if str(parent) != ".")
    entries: list[tuple[str, bytes | None, int]] = [(d + "/", None, 0o755) for d in dirs]
    entries += [(p, content, mode) for p, (content, mode) in files.items()]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for path, content, mode in sorted(entries):
            info = tarfile.TarInfo(path)
            info.mode, info.mtime = mode, mtime
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            if content is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    return buf.getvalue()


def deterministic_gzip(data: bytes) -> bytes:
    """gzip with mtime 0 and no file name in the header (GzipFile keeps the header stable across Pythons)."""
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=9) as gz:
        gz.write(data)
    return buf.getvalue()


def _layer_and_config(
    layout: str, module: bytes, file_name: str, entrypoint: list[str], env: list[str], created: str
) -> tuple[dict[str, Any], bytes, dict[str, Any]]:
    """The layer descriptor, layer bytes and image config for *layout*."""
    config: dict[str, Any] = {
        "created": created,  # umoci stat panics without it
        **WASM_PLATFORM,
        "config": {"Entrypoint": entrypoint, **({"Env": env} if env else {})},
    }
    if layout == "runwasi":
        layer = module
        layer_desc = descriptor(WASM_LAYER_MEDIA_TYPE, layer)
        # runwasi labels the config with a hash of the layer digests so configs stay
        # unique although rootfs.diff_ids is empty (opencontainers/image-spec#1173).
        config["config"]["Labels"] = {RUNWASI_LAYERS_LABEL: hashlib.sha256(layer_desc["digest"].encode()).hexdigest()}
        config["rootfs"] = {"type": "layers", "diff_ids": []}
    else:
        tar = deterministic_tar({file_name: (module, 0o755)})
        layer = deterministic_gzip(tar)
        layer_desc = descriptor(OCI_LAYER_GZIP, layer)
        config["rootfs"] = {"type": "layers", "diff_ids": [sha256_digest(tar)]}
        config["history"] = [{"created": created, "created_by": f"labkit image build: COPY {file_name} /{file_name}"}]
    return layer_desc, layer, config


def build_image(
    module: str | Path | bytes,
    name: str,
    tag: str,
    layout: str = "runwasi",
    output: str | Path = "image.tar",
    *,
    entrypoint: list[str] | None = None,
    env: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
) -> BuiltImage:
    """Package a wasm module as an OCI image archive at *output*; return what was written.

    *name* is a repository (``wasi-demo`` or ``ghcr.io/me/wasi-demo``), *tag* a tag.
    The entrypoint defaults to ``[<last name part>.wasm]`` (runwasi) or
    ``[/<last name part>.wasm]`` (compat). The archive is written to a temporary
    file beside *output* and renamed, so a failure leaves no partial archive.
    """
    if layout not in LAYOUTS:
        raise ImageError(f"unknown image layout {layout!r}", f"use one of: {', '.join(LAYOUTS)}")
    validate_name(name)
    validate_tag(tag)
    data, origin = load_bytes(module)
    check_header(data, origin)
    ref = normalize_ref(f"{name}:{tag}")
    file_name = f"{name.rsplit('/', 1)[-1]}.wasm"
    entry = list(entrypoint) if entrypoint else [file_name if layout == "runwasi" else f"/{file_name}"]
    created = datetime.fromtimestamp(source_date_epoch(), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    env_list = [f"{k}={v}" for k, v in (env or {}).items()]

    layer_desc, layer, config = _layer_and_config(layout, data, file_name, entry, env_list, created)
    manifest_annotations = {ANNOTATION_IMAGE_NAME: ref, ANNOTATION_REF_NAME: tag, **(annotations or {})}
    if layout == "compat":
        manifest_annotations.setdefault(ANNOTATION_VARIANT, "compat-smart")
    archive, digest = image_archive(ref, tag, config, layer_desc, layer, manifest_annotations, dict(WASM_PLATFORM))
    path = write_atomically(Path(output), archive)
    return BuiltImage(path=path, digest=digest, ref=ref, layout=layout, size=len(archive))


def image_archive(
    ref: str,
    tag: str,
    config: dict[str, Any],
    layer_desc: dict[str, Any],
    layer: bytes,
    annotations: dict[str, str],
    platform: dict[str, str],
) -> tuple[bytes, str]:
    """An ``oci-archive`` tar of one single-layer image (OCI layout plus Docker's ``manifest.json``) and its
    manifest digest; shared by the wasm images here and the Python program images of :mod:`labkit.apps`."""
    config_bytes = canonical_json(config)
    names = {ANNOTATION_IMAGE_NAME: ref, ANNOTATION_REF_NAME: tag}
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, config_bytes),
        "layers": [layer_desc],
        "annotations": annotations,
    }
    manifest_bytes = canonical_json(manifest)
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [descriptor(OCI_MANIFEST, manifest_bytes, platform=platform, annotations=names)],
    }
    blobs = {sha256_digest(b): b for b in (layer, config_bytes, manifest_bytes)}
    blob_path = {d: f"blobs/sha256/{d.split(':', 1)[1]}" for d in blobs}
    docker_manifest = [
        {
            "Config": blob_path[manifest["config"]["digest"]],
            "RepoTags": [ref],
            "Layers": [blob_path[layer_desc["digest"]]],
        }
    ]
    files = {blob_path[d]: (b, 0o644) for d, b in blobs.items()}
    files["index.json"] = (canonical_json(index), 0o644)
    files["oci-layout"] = (canonical_json({"imageLayoutVersion": "1.0.0"}), 0o644)
    files["manifest.json"] = (canonical_json(docker_manifest), 0o644)
    return deterministic_tar(files), sha256_digest(manifest_bytes)


def write_atomically(output: Path, data: bytes) -> Path:
    """Write *data* to *output* through a temp file in the same directory and a rename."""
    output = output.expanduser()
    if output.is_dir():
        raise ImageError(f"output {output} is a directory", f"give a file name, e.g. {output / 'image.tar'}")
    parent = output.parent
    if not parent.is_dir():
        raise ImageError(
            f"cannot write {output}: directory {parent} does not exist", f"create it first: mkdir -p {parent}"
        )
    try:
        fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{output.name}.", suffix=".partial")
    except OSError as exc:
        raise ImageError(
            f"cannot write {output}: {exc.strerror}",
            f"choose a writable directory for -o, or fix the permissions of {parent}",
        ) from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, output)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return output.resolve()


# --------------------------------------------------------------------------- reading


class _Archive:
    """Blobs of an OCI-layout tar, each checked against its digest when read."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.tar = tarfile.open(path, mode="r:*")  # noqa: SIM115 - read_images closes it in a with-block
        except FileNotFoundError:
            raise ImageError(
                f"image archive {path} does not exist", "check the path; build one with `labkit image build`"
            ) from None
        except (tarfile.TarError, OSError):
            # tarfile's own message lists every compression it tried as a Python list: nothing a learner can use.
            raise ImageError(
                f"{path} is not an OCI image archive: it is not even a tar file. An OCI image archive is a tar "
                "of an OCI image layout (oci-layout, index.json and blobs/sha256/...)",
                "pass one written by `labkit image build`, oci-tar-builder, `skopeo copy ... oci-archive:FILE` "
                "or `ctr images export`",
            ) from None
        self.members = {m.name.removeprefix("./"): m for m in self.tar.getmembers() if m.isfile()}

    def file(self, name: str) -> bytes | None:
        member = self.members.get(name)
        if member is None:
            return None
        handle = self.tar.extractfile(member)
        return handle.read() if handle else None

    def blob(self, desc: dict[str, Any]) -> bytes:
        digest = desc.get("digest", "")
        algo, _, hexpart = digest.partition(":")
        data = self.file(f"blobs/{algo}/{hexpart}")
        if data is None:
            raise ImageError(
                f"{self.path} lacks blob {digest} that its index or manifest lists",
                "rebuild the archive; it is incomplete",
            )
        if algo == "sha256" and sha256_digest(data) != digest:
            raise ImageError(
                f"blob {digest} in {self.path} is corrupt: its content hashes to {sha256_digest(data)}",
                "rebuild or re-download the archive",
            )
        return data

    def json(self, data: bytes, what: str) -> dict[str, Any]:
        try:
            parsed: dict[str, Any] = json.loads(data)
        except ValueError:
            raise ImageError(f"{what} in {self.path} is not valid JSON", "rebuild the archive") from None
        return parsed


def _layer_files(data: bytes, media_type: str) -> tarfile.TarFile:
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    elif "zstd" in media_type:
        raise ImageError(
            "zstd-compressed layers are not supported by labkit's image reader", "rebuild the image with gzip layers"
        )
    return tarfile.open(fileobj=io.BytesIO(data), mode="r:")


def _layer_file(archive: _Archive, layers: list[dict[str, Any]], path: str) -> bytes | None:
    """The file at *path* in the image's rootfs (tar layers; upper layers win, as when unpacked)."""
    wanted = path.split("#", 1)[0].lstrip("/").removeprefix("./")
    for desc in reversed(layers):
        if desc.get("mediaType") in (WASM_LAYER_MEDIA_TYPE, "application/wasm"):
            continue
        with _layer_files(archive.blob(desc), desc.get("mediaType", "")) as tar:
            for member in tar.getmembers():
                if member.isfile() and member.name.lstrip("/").removeprefix("./") == wanted:
                    handle = tar.extractfile(member)
                    return handle.read() if handle else b""
    return None


def _module_from_layers(
    archive: _Archive, layers: list[dict[str, Any]], entrypoint: list[str]
) -> tuple[str, bytes | None]:
    """Find the wasm module: a wasm layer (runwasi/artifact) or the entrypoint file in tar layers (compat)."""
    for desc in layers:
        if desc.get("mediaType") in (WASM_LAYER_MEDIA_TYPE, "application/wasm"):
            data = archive.blob(desc)
            return ("runwasi" if desc["mediaType"] == WASM_LAYER_MEDIA_TYPE else "artifact"), data
    found = _layer_file(archive, layers, entrypoint[0]) if entrypoint else None
    # An entrypoint that is not wasm (a native binary): an ordinary Linux image.
    return ("compat", found) if found is not None and found.startswith(MAGIC) else ("native", None)


def _python_program(archive: _Archive, layers: list[dict[str, Any]], settings: dict[str, Any]) -> bytes | None:
    """The program of a labkit Python program image (see :mod:`labkit.apps`), else None.

    Such an image's config names its program in the :data:`PROGRAM_LABEL` label, its Entrypoint is
    ``[<a python3 interpreter>, <program>]``, and its one layer holds the program (not the interpreter).
    """
    program = (settings.get("Labels") or {}).get(PROGRAM_LABEL)
    entrypoint = list(settings.get("Entrypoint") or [])
    if not program or len(entrypoint) != 2 or entrypoint[1] != program:
        return None
    if not re.fullmatch(r"python3?(\.\d+)?", PurePosixPath(entrypoint[0]).name):
        return None
    return _layer_file(archive, layers, program)


def _ref_names(annotations: dict[str, str], docker_tags: list[str]) -> list[str]:
    name = annotations.get(ANNOTATION_IMAGE_NAME)
    if name:
        return [normalize_ref(name)]
    ref_name = annotations.get(ANNOTATION_REF_NAME, "")
    if "/" in ref_name or ":" in ref_name:  # a full reference, not only a tag
        return [normalize_ref(ref_name)]
    return [normalize_ref(t) for t in docker_tags]


def _manifest_descriptors(archive: _Archive, index: dict[str, Any]) -> list[dict[str, Any]]:
    """Image manifest descriptors of an index, following nested indexes one level down."""
    found = []
    for desc in index.get("manifests", []):
        if desc.get("mediaType") in (OCI_INDEX, DOCKER_INDEX):
            nested = archive.json(archive.blob(desc), f"index {desc['digest']}")
            for inner in nested.get("manifests", []):
                found.append({**inner, "annotations": {**desc.get("annotations", {}), **inner.get("annotations", {})}})
        else:
            found.append(desc)
    return found


def read_images(archive: str | Path) -> list[ImageInfo]:
    """Every image in an OCI-layout archive (``oci-archive`` tar), digests verified."""
    arc = _Archive(Path(archive))
    with arc.tar:
        index_bytes = arc.file("index.json")
        if index_bytes is None:
            hint = " (it is a docker-archive)" if "manifest.json" in arc.members else ""
            raise ImageError(
                f"{arc.path} has no index.json, so it is not an OCI image archive{hint}",
                f"convert it: skopeo copy docker-archive:{arc.path} oci-archive:{arc.path.with_suffix('.oci.tar')}",
            )
        docker = arc.file("manifest.json")
        docker_tags = [t for entry in (json.loads(docker) if docker else []) for t in entry.get("RepoTags") or []]
        images = []
        for desc in _manifest_descriptors(arc, arc.json(index_bytes, "index.json")):
            manifest_bytes = arc.blob(desc)
            manifest = arc.json(manifest_bytes, f"manifest {desc.get('digest')}")
            config_bytes = arc.blob(manifest["config"])
            config = (
                arc.json(config_bytes, "the image config")
                if manifest["config"].get("mediaType") != WASM_ARTIFACT_CONFIG_MEDIA_TYPE
                else {}
            )
            settings = config.get("config") or {}
            entrypoint = list(settings.get("Entrypoint") or []) + list(settings.get("Cmd") or [])
            layout, module = _module_from_layers(arc, manifest.get("layers", []), entrypoint)
            program = _python_program(arc, manifest.get("layers", []), settings) if layout == "native" else None
            if program is not None:
                layout, module = "python", program
            platform = desc.get("platform") or {
                "os": config.get("os", ""),
                "architecture": config.get("architecture", ""),
            }
            blobs = {desc["digest"]: manifest_bytes, manifest["config"]["digest"]: config_bytes}
            blobs.update({layer["digest"]: arc.blob(layer) for layer in manifest.get("layers", [])})
            images.append(
                ImageInfo(
                    refs=_ref_names({**manifest.get("annotations", {}), **desc.get("annotations", {})}, docker_tags),
                    digest=desc["digest"],
                    platform=f"{platform.get('os', '')}/{platform.get('architecture', '')}",
                    layout=layout,
                    entrypoint=list(settings.get("Entrypoint") or []),
                    env=list(settings.get("Env") or []),
                    annotations=dict(manifest.get("annotations") or {}),
                    module=module,
                    config=config,
                    manifest=manifest,
                    blobs=blobs,
                )
            )
    if not images:
        raise ImageError(f"{arc.path} holds no image manifests", "rebuild the archive with `labkit image build`")
    return images


def read_image(archive: str | Path) -> ImageInfo:
    """The one image in *archive* (see :func:`read_images`); an error if there are several."""
    images = read_images(archive)
    if len(images) > 1:
        raise ImageError(
            f"{archive} holds {len(images)} images, read_image() reads one",
            "use read_images() and pick one by platform or ref",
        )
    return images[0]
