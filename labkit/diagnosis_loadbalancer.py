"""The load-balancer rows of :mod:`labkit.diagnosis`: the service-watcher's 403, a backend the balancer cannot
reach, and an empty registry (the seed's load-balanced demo; the log lines are those wasm-apps/load-balancer and
labkit/apps/service_watcher.py write).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from labkit.errors import Diagnosis

if TYPE_CHECKING:
    from labkit.podfacts import Facts


_WATCHER_FORBIDDEN = r'cannot (?:list|watch|get) resource "services"'
_LB_REQUEST = re.compile(r"^\S+ /v1/\S* -> (\S+)(?: \S+)? (\d{3}) \d+ms")
_LB_RETRY = r"-> .* failed: .*, trying another backend"


def watcher_forbidden(f: Facts) -> Diagnosis | None:
    hits = f.find(_WATCHER_FORBIDDEN)
    if not hits:
        return None
    user = re.search(r'User "system:serviceaccount:([^:"]+):([^"]+)"', hits[-1])
    account = f"{user.group(2)} in namespace {user.group(1)}" if user else "the pod's ServiceAccount"
    return Diagnosis(
        "the service-watcher may not list or watch Services (403 Forbidden)",
        "it watches Services in all namespaces, so its ServiceAccount needs a ClusterRole (a namespaced Role is not "
        "enough) allowing get, list and watch on services, bound to it; without one the API server refuses",
        f'apply a ClusterRole (apiGroups [""], resources [services], verbs get/list/watch) and a ClusterRoleBinding '
        f"to {account} (labkit.manifests.service_watcher builds all of it); the watcher retries with back-off and "
        "recovers on its own",
        hits[-3:],
        "watcher-forbidden",
    )


def _lb_requests(f: Facts) -> list[tuple[str, str, str]]:
    """The load balancer's forwarded requests in its log: (line, backend, status)."""
    found = []
    for line in f.logs.splitlines():
        match = _LB_REQUEST.search(line.split(" ", 1)[-1] if line[:4].isdigit() else line)  # kubectl --timestamps
        if match:
            found.append((line, match.group(1), match.group(2)))
    return found


def backend_unreachable(f: Facts) -> Diagnosis | None:
    requests, retries = _lb_requests(f), f.find(_LB_RETRY)
    last = requests[-1] if requests else None
    if not retries and not (last and last[2] == "502" and "unreachable" in last[0]):
        return None
    every = bool(last and last[2] == "502" and "unreachable" in last[0])
    return Diagnosis(
        "no backend answers the load balancer" if every else "a registered backend does not answer",
        "the load balancer connects to the ClusterIP:port it was given; a refused or timed-out connection means "
        "no ready pod behind that Service, a wrong port, or a stale registration"
        + (
            "; every backend failed, so clients get 502"
            if every
            else "; it retried another backend, so clients did not notice, but each request paid for the attempt"
        ),
        "check the backend Services have ready endpoints (kubectl get endpoints <service>) and that the registered "
        "port is the Service's port (GET /api/services); delete or unlabel dead Services so the service-watcher "
        "unregisters them",
        [*retries[-2:], *([last[0]] if every and last else [])],
        "lb-backend-unreachable",
    )


def no_backends(f: Facts) -> Diagnosis | None:
    requests = _lb_requests(f)
    if not requests or requests[-1][2] != "503":
        return None
    return Diagnosis(
        "the load balancer has no backends registered, so it answers 503",
        "its registry is in memory and starts empty; backends arrive through POST /api/register, which the "
        "service-watcher sends for every Service labelled llamaedge/target=true",
        "label the backend Services (llamaedge/target=true, weight in the llamaedge/weight annotation), check the "
        "service-watcher runs and can reach the load balancer (its log), or register by hand: "
        "POST /api/register {name, weight, ip, port}",
        [requests[-1][0]],
        "lb-no-backends",
    )
