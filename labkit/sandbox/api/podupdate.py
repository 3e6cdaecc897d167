"""What an update may change in a pod's spec: upstream's ``ValidatePodUpdate`` (pkg/apis/core/validation/validation.go).

A pod's spec is fixed once created, but for the fields below; a learner who edits a pod's manifest and applies it
again meets the refusal on k3s, so the sandbox refuses as well, with the same sentences:

- the containers and init containers can be neither added nor removed (``ValidateContainerUpdates``; the check
  stops there), but each one's ``image`` may change;
- ``activeDeadlineSeconds`` may be set where it was unset, or lowered, never removed or raised;
- ``tolerations`` may only gain new entries; ``terminationGracePeriodSeconds`` may go to 1 from a negative value;
  scheduling gates may only be removed; ephemeral containers change through their own subresource.

Anything else that differs is refused as one ``spec: Forbidden``. Upstream appends go-cmp's diff of the two specs
to that sentence; labkit appends the differing fields as JSON instead [the sentence is upstream's, the diff labkit's].

>>> old = {"containers": [{"name": "app", "image": "demo:1"}], "restartPolicy": "Always"}
>>> pod_update_causes({"containers": [{"name": "app", "image": "demo:2"}], "restartPolicy": "Always"}, old)
[]
>>> [c["message"].splitlines()[0][:60] for c in pod_update_causes({**old, "restartPolicy": "Never"}, old)]
['Forbidden: pod updates may not change fields other than `spe']
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from labkit.sandbox.api import patch

if TYPE_CHECKING:
    from labkit.sandbox.api.semantics import Cause

UPDATABLE = ",".join(
    (
        "`spec.containers[*].image`",
        "`spec.initContainers[*].image`",
        "`spec.activeDeadlineSeconds`",
        "`spec.tolerations` (only additions to existing tolerations)",
        "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
    )
)


def _cause(reason: str, field: str, message: str) -> Cause:
    return {"reason": reason, "message": message, "field": field}


def pod_update_causes(new: dict[str, Any], old: dict[str, Any]) -> list[Cause]:
    """Why upstream refuses to turn pod spec *old* into *new* (both defaulted); empty when it allows it."""
    for key in ("containers", "initContainers"):
        if len(new.get(key) or ()) != len(old.get(key) or ()):
            return [
                _cause("FieldValueForbidden", f"spec.{key}", "Forbidden: pod updates may not add or remove containers")
            ]
    causes: list[Cause] = []
    munged = patch.deep_copy(new)
    for key in ("containers", "initContainers"):
        for mine, theirs in zip(munged.get(key) or (), old.get(key) or (), strict=True):
            _take(mine, theirs, "image")
    causes += _deadline(new.get("activeDeadlineSeconds"), old.get("activeDeadlineSeconds"))
    _take(munged, old, "activeDeadlineSeconds")
    _take(munged, old, "ephemeralContainers")
    old_tolerations, new_tolerations = old.get("tolerations") or [], new.get("tolerations") or []
    if all(t in new_tolerations for t in old_tolerations):  # only additions [inferred: upstream names the entry]
        _take(munged, old, "tolerations")
    grace, old_grace = new.get("terminationGracePeriodSeconds"), old.get("terminationGracePeriodSeconds")
    if grace == 1 and isinstance(old_grace, int) and old_grace < 0:
        _take(munged, old, "terminationGracePeriodSeconds")
    if all(g in (old.get("schedulingGates") or []) for g in new.get("schedulingGates") or []):
        _take(munged, old, "schedulingGates")
    if munged != old:
        causes.append(
            _cause(
                "FieldValueForbidden",
                "spec",
                f"Forbidden: pod updates may not change fields other than {UPDATABLE}\n{_diff(old, munged)}",
            )
        )
    return causes


def _take(mine: dict[str, Any], theirs: dict[str, Any], key: str) -> None:
    """*mine*'s *key* as *theirs* has it (set or unset): a field the update may change is not compared."""
    if key in theirs:
        mine[key] = theirs[key]
    else:
        mine.pop(key, None)


def _deadline(new: Any, old: Any) -> list[Cause]:
    """activeDeadlineSeconds: unset to positive, or positive to a smaller positive (ValidatePodUpdate's two
    messages; how field.Invalid prints a nil value, ``"null"``, is inferred)."""
    field = "spec.activeDeadlineSeconds"
    if old is None or new == old:
        return []
    if new is None:
        return [
            _cause(
                "FieldValueInvalid",
                field,
                'Invalid value: "null": must not update from a positive integer to nil value',
            )
        ]
    if new > old:
        return [
            _cause("FieldValueInvalid", field, f"Invalid value: {new}: must be less than or equal to previous value")
        ]
    return []


def _diff(old: dict[str, Any], new: dict[str, Any]) -> str:
    """The spec fields that differ, one line each (labkit's form of upstream's appended go-cmp diff)."""
    keys = sorted(k for k in {*old, *new} if old.get(k) != new.get(k))
    return "\n".join(f"  spec.{k}: {json.dumps(old.get(k))} -> {json.dumps(new.get(k))}" for k in keys)
