"""``pods/ephemeralcontainers``: how ``kubectl debug`` adds a container to a running pod.

As upstream's ``EphemeralContainersREST`` (pkg/registry/core/pod/storage/storage.go) with the
``podEphemeralContainersStrategy`` (pkg/registry/core/pod/strategy.go): GET answers the Pod; PUT and PATCH
(JSON, merge, strategic merge: what ``kubectl debug`` sends) change ``spec.ephemeralContainers`` and nothing
else (``dropNonEphemeralContainerUpdates``: spec and status stay the stored ones). The new containers are
checked as ``validateEphemeralContainers`` and the change as ``ValidatePodEphemeralContainersUpdate``
(pkg/apis/core/validation/validation.go, 1.32), with their wording.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from labkit.sandbox.api import patch
from labkit.sandbox.api.semantics import Cause, _container, _not_found, _unique_name
from labkit.sandbox.api.status import invalid

if TYPE_CHECKING:
    from labkit.sandbox.api.registry import Resource

SUBRESOURCE = "ephemeralcontainers"
FIELD = "spec.ephemeralContainers"
_NOT_FOR_EPHEMERAL = "cannot be set for an Ephemeral Container"

#: EphemeralContainerCommon's fields in their Go order, and whether ``allowedEphemeralContainerFields``
#: lets an ephemeral container set them (validateFieldAllowList reports the others, in this order).
_ALLOWED_FIELDS = {
    "name": True, "image": True, "command": True, "args": True, "workingDir": True, "ports": False,
    "envFrom": True, "env": True, "resources": False, "resizePolicy": False, "restartPolicy": False,
    "volumeMounts": True, "volumeDevices": True, "livenessProbe": False, "readinessProbe": False,
    "startupProbe": False, "lifecycle": False, "terminationMessagePath": True, "terminationMessagePolicy": True,
    "imagePullPolicy": True, "securityContext": True, "stdin": True, "stdinOnce": True, "tty": True,
}  # fmt: skip


def _forbidden(field: str, detail: str) -> Cause:
    return {"reason": "FieldValueForbidden", "message": f"Forbidden: {detail}", "field": field}


def _is_set(value: Any) -> bool:
    """Go's "not its zero value" for a decoded JSON field: an empty list or object counts as unset [inferred:
    ``resources: {}``, which kubectl debug sends, is the zero ResourceRequirements upstream too]."""
    return value not in (None, "", 0, False, [], {})


def container_causes(spec: dict[str, Any]) -> list[Cause]:
    """validateEphemeralContainers: each one valid as a container, named uniquely across every container of
    the pod, targeting an existing (non-ephemeral) container, and without the fields ephemeral ones may not set."""
    others = {c.get("name") for key in ("containers", "initContainers") for c in spec.get(key) or ()}
    seen = {name for name in others if name}
    volumes = {v.get("name") for v in spec.get("volumes") or () if v.get("name")}
    causes: list[Cause] = []
    for i, ec in enumerate(spec.get("ephemeralContainers") or ()):
        field = f"{FIELD}[{i}]"
        causes += _unique_name(f"{field}.name", ec.get("name"), seen)
        causes += _container(field, ec, volumes)
        target = ec.get("targetContainerName")
        if target and target not in others:
            causes.append(_not_found(f"{field}.targetContainerName", target))
        causes += [
            _forbidden(f"{field}.{key}", _NOT_FOR_EPHEMERAL)
            for key, allowed in _ALLOWED_FIELDS.items()
            if not allowed and _is_set(ec.get(key))
        ]
        for j, mount in enumerate(ec.get("volumeMounts") or ()):
            causes += [
                _forbidden(f"{field}.volumeMounts[{j}].{key}", _NOT_FOR_EPHEMERAL)
                for key in ("subPath", "subPathExpr")
                if mount.get(key)
            ]
    return causes


def update_causes(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[Cause]:
    """ValidatePodEphemeralContainersUpdate, part 2: existing ephemeral containers stay as they are.

    Upstream appends go-cmp's diff of the two structs to "may not be changed"; labkit shows the changed
    fields as JSON instead [the diff's text is labkit's, the sentence upstream's]."""
    by_name = {c.get("name"): c for c in new}
    causes = []
    for before in old:
        name = before.get("name")
        after = by_name.get(name)
        if after is None:
            causes.append(_forbidden(FIELD, f"existing ephemeral containers {json.dumps(name)} may not be removed\n"))
        elif after != before:
            changed = sorted(k for k in {*before, *after} if before.get(k) != after.get(k))
            diff = "\n".join(f"  {k}: {json.dumps(before.get(k))} -> {json.dumps(after.get(k))}" for k in changed)
            causes.append(
                _forbidden(FIELD, f"existing ephemeral containers {json.dumps(name)} may not be changed\n{diff}")
            )
    return causes


def merged(res: Resource, live: dict[str, Any], incoming: dict[str, Any]) -> dict[str, Any]:
    """The pod as stored after a write to ``pods/ephemeralcontainers``: *live* with *incoming*'s ephemeral
    containers and nothing else of it (but the writer's managedFields); 422 when upstream refuses the change."""
    containers = (incoming.get("spec") or {}).get("ephemeralContainers") or []
    spec = {**live.get("spec", {}), "ephemeralContainers": containers}
    old = live.get("spec", {}).get("ephemeralContainers") or []
    causes = container_causes(spec) + update_causes(old, containers)
    if causes:
        raise invalid(res, live["metadata"]["name"], causes)
    if not containers:
        spec.pop("ephemeralContainers")
    new: dict[str, Any] = {**live, "metadata": dict(live["metadata"]), "spec": patch.deep_copy(spec)}
    if "managedFields" in (incoming.get("metadata") or {}):
        new["metadata"]["managedFields"] = incoming["metadata"]["managedFields"]
    return new


def create_causes(spec: dict[str, Any]) -> list[Cause]:
    """ValidatePodCreate: a pod is created without ephemeral containers; they come through the subresource."""
    return [_forbidden(FIELD, "cannot be set on create")] if spec.get("ephemeralContainers") else []
