"""The authentication and authorization APIs the server answers itself, without storing anything.

``POST …/serviceaccounts/<name>/token`` (a TokenRequest) issues a ServiceAccount token;
``SelfSubjectAccessReview`` and ``SubjectAccessReview`` (what ``kubectl auth can-i`` sends) ask the
RBAC authorizer whether a user may do something.
"""

from __future__ import annotations

import time
from typing import Any

from labkit.sandbox.api.auth import ADMIN, Authorizer, TokenAuthority, User, review_attributes


def token_request(tokens: TokenAuthority, service_account: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    """The TokenRequest answer: a token for ``service_account`` valid ``spec.expirationSeconds`` (1 h)."""
    meta = service_account["metadata"]
    spec = body.get("spec") or {}
    seconds = int(spec.get("expirationSeconds") or 3600)
    token, exp = tokens.issue(meta["namespace"], meta["name"], meta["uid"], seconds)
    return {
        "kind": "TokenRequest",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"name": meta["name"], "namespace": meta["namespace"], "creationTimestamp": None},
        "spec": {
            "audiences": spec.get("audiences") or ["https://kubernetes.default.svc.cluster.local", "k3s"],
            "expirationSeconds": seconds,
            "boundObjectRef": None,
        },
        "status": {"token": token, "expirationTimestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(exp))},
    }


def access_review(authorizer: Authorizer, requester: User, body: dict[str, Any]) -> dict[str, Any]:
    """The review with its ``status.allowed``: for ``requester`` (Self…) or the user the spec names."""
    spec = body.get("spec") or {}
    user = requester
    if body.get("kind") == "SubjectAccessReview":
        groups = tuple(spec.get("groups") or ())
        user = User(spec.get("user", ""), groups)
        if user.name.startswith("system:serviceaccount:"):
            _, _, sa_namespace, sa_name = user.name.split(":", 3)
            user = User(user.name, groups, (sa_namespace, sa_name))
    verb, group, resource, ns, name = review_attributes(spec)
    allowed = authorizer.allowed(user, verb, group, resource, ns, name)
    status: dict[str, Any] = {"allowed": allowed}
    if allowed and user is not ADMIN and not user.is_admin:
        status["reason"] = "RBAC: allowed by a RoleBinding or ClusterRoleBinding"
    return {**body, "metadata": body.get("metadata") or {"creationTimestamp": None}, "status": status}
