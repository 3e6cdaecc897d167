"""The ``pods/eviction`` subresource: a delete that honours PodDisruptionBudgets (what ``kubectl drain`` posts).

Follows pkg/registry/core/pod/storage/eviction.go: a pod that is Pending, finished or already being
deleted is deleted without looking at budgets; more than one matching budget is a 500; a budget whose
status lags its generation, or that allows no disruption, answers 429 TooManyRequests
("Cannot evict pod as it would violate the pod's disruption budget.") with a DisruptionBudget cause;
otherwise ``disruptionsAllowed`` is decremented, the pod is noted in ``disruptedPods`` and deleted
with the Eviction's DeleteOptions. Success is a Status of ``Success``.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from labkit.sandbox.api.registry import RESOURCES
from labkit.sandbox.api.selectors import label_selector_from_match
from labkit.sandbox.api.status import StatusError, bad_request, forbidden_because
from labkit.timefmt import format_rfc3339

if TYPE_CHECKING:
    from labkit.sandbox.api.apicore import ApiCore

PODS = RESOURCES.served("", "pods")
PDBS = RESOURCES.served("policy", "poddisruptionbudgets")
#: Upstream's MaxDisruptedPodSize: evictions approved but not yet seen by the disruption controller.
MAX_DISRUPTED_PODS = 2000
VIOLATION = "Cannot evict pod as it would violate the pod's disruption budget."
SUCCESS = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}


def _too_many_requests(retry_after: int, cause: str) -> StatusError:
    details: dict[str, Any] = {"causes": [{"reason": "DisruptionBudget", "message": cause}]}
    if retry_after:
        details["retryAfterSeconds"] = retry_after
    return StatusError(429, "TooManyRequests", VIOLATION, details)


def _ready(pod: dict[str, Any]) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (pod.get("status") or {}).get("conditions") or ()
    )


def _budgets(core: ApiCore, pod: dict[str, Any]) -> list[dict[str, Any]]:
    """The namespace's budgets whose selector matches the pod (an empty selector matches nothing)."""
    labels = pod["metadata"].get("labels") or {}
    out = []
    for pdb in core.list(PDBS, pod["metadata"]["namespace"])["items"]:
        try:
            selector = label_selector_from_match((pdb.get("spec") or {}).get("selector"))
        except StatusError:
            continue  # an invalid selector matches no pod
        if not selector.nothing and not selector.empty and selector.matches(labels):
            out.append(pdb)
    return out


#: DeleteOptions fields an Eviction may carry, and the JSON type each must have (Go's decoder refuses others).
_OPTION_TYPES: dict[str, tuple[type, str]] = {
    "gracePeriodSeconds": (int, "int64"),
    "propagationPolicy": (str, "v1.DeletionPropagation"),
    "preconditions": (dict, "v1.Preconditions"),
    "dryRun": (list, "[]string"),
    "orphanDependents": (bool, "bool"),
}


def _checked_options(options: Any) -> dict[str, Any]:
    """The Eviction's DeleteOptions, refused with 400 as the Go decoder refuses a field of the wrong type."""
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise bad_request(
            f'Eviction in version "v1" cannot be handled as a Eviction: json: cannot unmarshal '
            f"{type(options).__name__} into Go struct field Eviction.deleteOptions of type v1.DeleteOptions"
        )
    for key, (kind, go_type) in _OPTION_TYPES.items():
        value = options.get(key)
        if value is not None and (not isinstance(value, kind) or (kind is int and isinstance(value, bool))):
            raise bad_request(
                f'Eviction in version "v1" cannot be handled as a Eviction: json: cannot unmarshal '
                f"{type(value).__name__} into Go struct field DeleteOptions.deleteOptions.{key} of type {go_type}"
            )
    return options


def _delete(core: ApiCore, ns: str, name: str, options: dict[str, Any], dry_run: bool) -> None:
    grace = options.get("gracePeriodSeconds")
    core.delete(
        PODS,
        ns,
        name,
        propagation=options.get("propagationPolicy"),
        grace_period=int(grace) if grace is not None else None,
        preconditions=options.get("preconditions"),
        dry_run=dry_run or "All" in (options.get("dryRun") or []),
    )


def evict(core: ApiCore, ns: str, name: str, eviction: Any, dry_run: bool = False) -> dict[str, Any]:
    """Evict pod *ns*/*name* as the Eviction body asks; the Status to answer, or a StatusError."""
    if not isinstance(eviction, dict) or (eviction.get("metadata") or {}).get("name") != name:
        raise bad_request("name in URL does not match name in Eviction object")
    options = _checked_options(eviction.get("deleteOptions"))
    pod = core.get(PODS, ns, name)
    phase = (pod.get("status") or {}).get("phase")
    if phase in ("Succeeded", "Failed", "Pending") or pod["metadata"].get("deletionTimestamp"):
        _delete(core, ns, name, options, dry_run)  # canIgnorePDB: it is no disruption
        return SUCCESS
    budgets = _budgets(core, pod)
    if len(budgets) > 1:
        raise StatusError(
            500,
            "InternalError",
            "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
        )
    if budgets:
        pdb = budgets[0]
        status = pdb.get("status") or {}
        unready_spare = (
            not _ready(pod) and status.get("currentHealthy", 0) >= status.get("desiredHealthy", 0) > 0
        )  # an unready pod costs the budget nothing
        if not unready_spare:
            _check_and_decrement(core, pdb, name, dry_run or "All" in (options.get("dryRun") or []))
    _delete(core, ns, name, options, dry_run)
    return SUCCESS


def _check_and_decrement(core: ApiCore, pdb: dict[str, Any], pod_name: str, dry_run: bool) -> None:
    status = pdb.get("status") or {}
    meta = pdb["metadata"]
    if int(status.get("observedGeneration") or 0) < int(meta.get("generation") or 1):
        raise _too_many_requests(10, f"The disruption budget {meta['name']} is still being processed by the server.")
    allowed = int(status.get("disruptionsAllowed") or 0)
    if allowed < 0:
        raise forbidden_because(PDBS, meta["name"], "pdb disruptions allowed is negative")
    if len(status.get("disruptedPods") or {}) > MAX_DISRUPTED_PODS:
        raise forbidden_because(
            PDBS, meta["name"], "DisruptedPods map too big - too many evictions not confirmed by PDB controller"
        )
    if allowed == 0:
        raise _too_many_requests(
            0,
            f"The disruption budget {meta['name']} needs {status.get('desiredHealthy', 0)} healthy pods "
            f"and has {status.get('currentHealthy', 0)} currently",
        )
    if dry_run:
        return
    updated = copy.deepcopy(pdb)
    new_status = updated.setdefault("status", {})
    new_status["disruptionsAllowed"] = allowed - 1
    new_status.setdefault("disruptedPods", {})[pod_name] = format_rfc3339()
    if allowed - 1 == 0:
        new_status["conditions"] = [
            c for c in new_status.get("conditions") or () if c.get("type") != "DisruptionAllowed"
        ] + [disruption_allowed_condition(0, int(new_status.get("observedGeneration") or 0))]
    core.replace(PDBS, meta["namespace"], meta["name"], updated, subresource="status")


def disruption_allowed_condition(allowed: int, generation: int) -> dict[str, Any]:
    """pdbhelper.UpdateDisruptionAllowedCondition's condition."""
    return {
        "type": "DisruptionAllowed",
        "status": "True" if allowed > 0 else "False",
        "reason": "SufficientPods" if allowed > 0 else "InsufficientPods",
        "message": "",
        "observedGeneration": generation,
        "lastTransitionTime": format_rfc3339(),
    }
