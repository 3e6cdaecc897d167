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

from labkit.sandbox.api.params import DeleteOptions, eviction_options
from labkit.sandbox.api.registry import RESOURCES
from labkit.sandbox.api.responses import created_status
from labkit.sandbox.api.selectors import label_selector_from_match
from labkit.sandbox.api.status import StatusError, forbidden_because
from labkit.timefmt import format_rfc3339

if TYPE_CHECKING:
    from labkit.sandbox.api.apicore import ApiCore

PODS = RESOURCES.served("", "pods")
PDBS = RESOURCES.served("policy", "poddisruptionbudgets")
#: Upstream's MaxDisruptedPodSize: evictions approved but not yet seen by the disruption controller.
MAX_DISRUPTED_PODS = 2000
VIOLATION = "Cannot evict pod as it would violate the pod's disruption budget."


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


def _delete(core: ApiCore, ns: str, name: str, options: DeleteOptions, dry_run: bool) -> None:
    core.delete(
        PODS,
        ns,
        name,
        propagation=options.propagation,
        grace_period=options.grace_period,
        preconditions=options.preconditions,
        dry_run=dry_run or options.dry_run,
    )


def evict(core: ApiCore, ns: str, name: str, eviction: Any, dry_run: bool = False) -> dict[str, Any]:
    """Evict pod *ns*/*name* as the Eviction body asks; the Status to answer, or a StatusError."""
    options = eviction_options(eviction, name)
    pod = core.get(PODS, ns, name)
    phase = (pod.get("status") or {}).get("phase")
    if phase in ("Succeeded", "Failed", "Pending") or pod["metadata"].get("deletionTimestamp"):
        _delete(core, ns, name, options, dry_run)  # canIgnorePDB: it is no disruption
        return created_status()
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
            _check_and_decrement(core, pdb, name, dry_run or options.dry_run)
    _delete(core, ns, name, options, dry_run)
    return created_status()


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
