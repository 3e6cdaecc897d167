"""Server-side apply of dicts or YAML, dry-run first, labelled so a lab's cleanup finds what it made."""

from __future__ import annotations

import copy
from typing import Any, Protocol

import yaml

from labkit import resources
from labkit.cluster import Cluster, api_call
from labkit.config import LAB_LABEL, PART_OF_LABEL, PART_OF_VALUE
from labkit.errors import ApiError, InvalidManifest

#: labkit's field manager for server-side apply: re-running a cell re-applies as the same owner.
FIELD_MANAGER = "labkit"


def _documents(objects_or_yaml: Any) -> list[dict[str, Any]]:
    """The documents to apply, each checked for apiVersion, kind and metadata.name."""
    if isinstance(objects_or_yaml, str):
        try:
            docs = [d for d in yaml.safe_load_all(objects_or_yaml) if d is not None]
        except yaml.YAMLError as e:
            raise InvalidManifest(
                f"the YAML does not parse: {e}",
                "fix the line and column named above (indentation, a missing ':' or '-')",
            ) from e
    elif isinstance(objects_or_yaml, (list, tuple)):
        docs = [resources.as_dict(o) for o in objects_or_yaml]
    else:
        docs = [resources.as_dict(objects_or_yaml)]
    for i, doc in enumerate(docs, 1):
        if not isinstance(doc, dict):
            raise InvalidManifest(
                f"document {i} is a {type(doc).__name__}, not a Kubernetes object",
                "each document needs apiVersion, kind and metadata.name",
            )
        missing = [k for k in ("apiVersion", "kind") if not doc.get(k)]
        if not (doc.get("metadata") or {}).get("name"):
            missing.append("metadata.name")
        if missing:
            raise InvalidManifest(
                f"document {i} ({doc.get('kind') or 'no kind'}) lacks {', '.join(missing)}",
                "add them; server-side apply needs a name (generateName is not enough)",
            )
    if not docs:
        raise InvalidManifest("there is nothing to apply (no documents)", "pass a dict, a list of dicts or YAML text")
    return docs


class LabRef(Protocol):
    """What :func:`apply` reads of a lab: its name (the ``labkit.io/lab`` label) and its namespace.

    :class:`labkit.operations.namespaces.Lab` is one; so is anything with these two attributes.
    """

    @property
    def name(self) -> str: ...

    @property
    def namespace(self) -> str: ...


def _describe_obj(body: dict[str, Any]) -> str:
    return f"{body['kind']}/{body['metadata']['name']}"


def apply(
    cluster: Cluster, objects_or_yaml: Any, *, namespace: str | None = None, lab: LabRef | str | None = None
) -> list[dict[str, Any]]:
    """Server-side apply (field manager ``labkit``, forced) of dicts or YAML text; returns the applied objects.

    Objects labkit creates get the labkit labels (and ``labkit.io/lab`` with *lab*), so cleanup finds them;
    objects that existed before without them stay unlabelled (labkit never deletes what it did not create).
    Every document is validated by a server dry-run first, so a bad one leaves nothing half-applied.
    Applying again is a no-op.

    >>> apply(cluster, [runtime_class(), deployment], lab=my_lab)          # doctest: +SKIP
    """
    lab_name = lab if lab is None or isinstance(lab, str) else lab.name
    namespace = namespace or (None if lab is None or isinstance(lab, str) else lab.namespace)
    labels = {PART_OF_LABEL: PART_OF_VALUE, **({LAB_LABEL: lab_name} if lab_name else {})}
    planned = []
    for doc in _documents(objects_or_yaml):
        body = copy.deepcopy(doc)
        res = resources.resource(cluster, body["kind"], body["apiVersion"])
        meta = body.setdefault("metadata", {})
        ns = None
        if res.namespaced:
            ns = meta.get("namespace") or namespace or "default"
            if namespace and meta.get("namespace") and meta["namespace"] != namespace:
                raise InvalidManifest(
                    f"{_describe_obj(body)} says namespace {meta['namespace']!r} but apply was asked for {namespace!r}",
                    "drop metadata.namespace or make the two agree",
                )
            meta["namespace"] = ns
        else:
            meta.pop("namespace", None)
        if not _foreign(cluster, res, meta["name"], ns):
            meta["labels"] = {**(meta.get("labels") or {}), **labels}
        planned.append((res, body, ns))

    new_namespaces = {b["metadata"]["name"] for r, b, _ in planned if r.kind == "Namespace"}
    failures = []
    for res, body, ns in planned:
        if ns is not None and ns in new_namespaces and resources.get_object(cluster, "Namespace", ns, None) is None:
            continue  # its namespace comes with this apply: the server cannot dry-run into it yet
        try:
            _server_side_apply(cluster, res, body, ns, dry_run=True)
        except ApiError as e:
            failures.append((body, e))
    if failures:
        first = failures[0][1]
        message = "; ".join(f"{_describe_obj(b)}: {e.status.get('message') or e.reason}" for b, e in failures)
        raise ApiError(
            {**first.status, "message": f"{message} — nothing was applied"},
            fix="change the field the message names and apply again",
        )
    return [_server_side_apply(cluster, res, body, ns) for res, body, ns in planned]


def _foreign(cluster: Cluster, res: Any, name: str, namespace: str | None) -> bool:
    """True for an object that exists without labkit's label, e.g. the RuntimeClass k3s creates for a detected
    shim: labkit applies to it but does not label it, so no cleanup ever deletes what labkit did not create."""
    live = resources.get_object(cluster, res.kind, name, namespace)
    return live is not None and ((live.get("metadata") or {}).get("labels") or {}).get(PART_OF_LABEL) != PART_OF_VALUE


def _server_side_apply(
    cluster: Cluster, res: Any, body: dict[str, Any], namespace: str | None, *, dry_run: bool = False
) -> dict[str, Any]:
    extra = {"dry_run": "All"} if dry_run else {}
    result = api_call(
        resources.dynamic(cluster).server_side_apply,
        res,
        body=body,
        namespace=namespace,
        field_manager=FIELD_MANAGER,
        force_conflicts=True,
        **extra,
    )
    applied: dict[str, Any] = result.to_dict()
    return applied
