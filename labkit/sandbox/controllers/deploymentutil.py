"""Deployment helpers (upstream's deployment/util): the pod-template-hash, the rollout annotations and
maxSurge/maxUnavailable as pod counts.

>>> scaled_value("25%", 10, round_up=True), scaled_value("25%", 10, round_up=False), scaled_value(2, 10, round_up=True)
(3, 2, 2)
>>> len(pod_template_hash({"metadata": {"labels": {"app": "web"}}})) <= 10
True
"""

from __future__ import annotations

import copy
import json
import math
from typing import Any

from labkit.sandbox.api.store import NAME_ALPHABET
from labkit.sandbox.controllers.conditions import parse_time

HASH_LABEL = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
#: Deployment annotations that stay on the Deployment (kubectl's bookkeeping and the controller's own).
NOT_COPIED_TO_RS = {
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    "deployment.kubernetes.io/revision-history",
}


def fnv32a(data: bytes) -> int:
    """The 32-bit FNV-1a hash (what upstream hashes pod templates with)."""
    h = 0x811C9DC5
    for byte in data:
        h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    return h


def pod_template_hash(template: dict[str, Any], collision_count: int = 0) -> str:
    """The ``pod-template-hash`` of *template*: FNV-1a of its canonical JSON (plus the collision count),
    its decimal digits spelled in Kubernetes' safe alphabet as upstream's SafeEncodeString does."""
    data = json.dumps(without_hash(template), sort_keys=True, separators=(",", ":")).encode()
    if collision_count:
        data += str(collision_count).encode()
    return "".join(NAME_ALPHABET[ord(digit) % len(NAME_ALPHABET)] for digit in str(fnv32a(data)))


def without_hash(template: dict[str, Any]) -> dict[str, Any]:
    """*template* without its pod-template-hash label (what makes two templates the same)."""
    template = copy.deepcopy(template)
    labels = (template.get("metadata") or {}).get("labels")
    if labels:
        labels.pop(HASH_LABEL, None)
    return template


def scaled_value(value: int | str | None, total: int, *, round_up: bool) -> int:
    """An IntOrString (``2`` or ``"25%"``) resolved against *total*: percentages round up for maxSurge,
    down for maxUnavailable."""
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if text.endswith("%") and text[:-1].isdigit():
        exact = int(text[:-1]) * total / 100
        return math.ceil(exact) if round_up else math.floor(exact)
    if text.isdigit():
        return int(text)
    raise ValueError(f'invalid value for IntOrString: invalid type: string is not a percentage: "{text}"')


def surge_and_unavailable(d: dict[str, Any]) -> tuple[int, int]:
    """maxSurge and maxUnavailable as pod counts (upstream's ResolveFenceposts; Recreate: 0 and 0)."""
    spec = d["spec"]
    if (spec.get("strategy") or {}).get("type") == "Recreate":
        return 0, 0
    rolling = (spec.get("strategy") or {}).get("rollingUpdate") or {}
    replicas = int(spec.get("replicas", 1))
    surge = scaled_value(rolling.get("maxSurge", "25%"), replicas, round_up=True)
    unavailable = scaled_value(rolling.get("maxUnavailable", "25%"), replicas, round_up=False)
    if surge == 0 and unavailable == 0:
        unavailable = 1  # a rollout must be able to make progress
    return surge, unavailable


def revision(rs: dict[str, Any]) -> int:
    """The ReplicaSet's revision annotation (0 when absent or unreadable)."""
    try:
        return int((rs["metadata"].get("annotations") or {}).get(REVISION, "0"))
    except ValueError:
        return 0


def created(obj: dict[str, Any]) -> tuple[float, str]:
    """A sort key: creation time, then name."""
    return parse_time(obj["metadata"].get("creationTimestamp")) or 0.0, obj["metadata"]["name"]


def spec_replicas(rs: dict[str, Any] | None) -> int:
    """``spec.replicas`` of *rs* (0 for no ReplicaSet)."""
    return int(rs["spec"].get("replicas", 0)) if rs else 0


def status_count(rs: dict[str, Any] | None, field: str) -> int:
    """A ``status`` counter of *rs* (0 when omitted or for no ReplicaSet)."""
    return int((rs.get("status") or {}).get(field, 0)) if rs else 0
