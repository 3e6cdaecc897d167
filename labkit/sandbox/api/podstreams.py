"""The connect subresources, routed: ``pods/portforward``, ``pods/exec``, ``pods/proxy``, ``services/proxy``.

kube-apiserver serves them as "connect" endpoints that hand the request to a kubelet or a pod. The sandbox's
API server serves them itself (:mod:`portforward`, :mod:`podexec`, :mod:`podproxy`), so ``server.py`` only asks
this module first.

Authorization, as upstream's: exec and portforward need ``create`` on ``pods/exec`` / ``pods/portforward``
whatever the method, since a WebSocket GET is authorized as ``create`` too
(``AuthorizePodWebsocketUpgradeCreatePermission``, on by default since 1.30); proxy needs the verb of the
method (GET get, POST create, PUT update, PATCH patch, DELETE delete, HEAD and OPTIONS get [inferred]) on
``pods/proxy`` or ``services/proxy``.

``pods/attach`` is not served (404, the answer for a path the server does not serve); ``pods/ephemeralcontainers``
is no connect subresource and is served with the object's writes (:mod:`ephemeral`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from labkit.sandbox.api import impersonation, podexec, podproxy, portforward
from labkit.sandbox.api.registry import RESOURCES
from labkit.sandbox.api.status import forbidden_request, method_not_allowed

if TYPE_CHECKING:
    from aiohttp import web

    from labkit.sandbox.api.apicore import ApiCore
    from labkit.sandbox.api.auth import Authorizer, User

PODS = RESOURCES.served("", "pods")
_PROXY_VERBS = {
    "GET": "get",
    "HEAD": "get",
    "OPTIONS": "get",
    "POST": "create",
    "PUT": "update",
    "PATCH": "patch",
    "DELETE": "delete",
}


class PodStreams:
    """The connect subresources of one API server; ``commands`` runs exec in native containers once set."""

    def __init__(self, core: ApiCore, authorizer: Authorizer) -> None:
        self.core, self.authorizer = core, authorizer
        self.commands: podexec.ContainerCommands | None = None

    def _authorize(self, request: web.Request, verb: str, resource: str, namespace: str, name: str) -> None:
        user: User = request[impersonation.CALLER]
        if not self.authorizer.allowed(user, verb, "", resource, namespace, name):
            raise forbidden_request(user.name, verb, "", resource, namespace, name)

    async def serve(self, request: web.Request, group: str, version: str, rest: list[str]) -> web.StreamResponse | None:
        """The answer when *rest* (the path after ``/api/v1``) names a connect subresource, else None."""
        if group or version != "v1" or len(rest) < 5 or rest[0] != "namespaces":
            return None
        namespace, plural, name, sub = rest[1], rest[2], rest[3], rest[4]
        if plural == "pods" and sub in ("exec", "portforward") and len(rest) == 5:
            if request.method not in ("GET", "POST"):
                raise method_not_allowed()
            self._authorize(request, "create", f"pods/{sub}", namespace, name)
            pod = self.core.get(PODS, namespace, name)
            if sub == "exec":
                return await podexec.serve(request, pod, self.commands)
            return await portforward.serve(request, pod)
        if plural not in ("pods", "services") or sub != "proxy":
            return None
        verb = _PROXY_VERBS.get(request.method)
        if verb is None:
            raise method_not_allowed()
        scheme, target, port = podproxy.split_scheme_name_port(name)
        self._authorize(request, verb, f"{plural}/proxy", namespace, target)
        path = "/".join(request.rel_url.raw_path.split("/")[8:])  # '', api, v1, namespaces, ns, plural, name, proxy
        if plural == "pods":
            ip, number = podproxy.pod_target(self.core.get(PODS, namespace, target), port)
        else:
            ip, number = podproxy.service_target(self.core, namespace, target, port)
        return await podproxy.forward(request, ip, number, scheme, path)
