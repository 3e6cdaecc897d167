"""The authentication and authorization APIs the server answers itself, without storing anything.

``POST …/serviceaccounts/<name>/token`` (a TokenRequest) issues a ServiceAccount token;
``SelfSubjectAccessReview`` and ``SubjectAccessReview`` (what ``kubectl auth can-i`` sends) ask the
RBAC authorizer whether a user may do something, and ``LocalSubjectAccessReview`` asks it about the namespace
it is posted to; ``SelfSubjectRulesReview`` (``kubectl auth can-i --list``) lists what the caller may do in a
namespace, ``SelfSubjectReview`` (``kubectl auth whoami``) says who the caller is, and ``TokenReview`` (what a
webhook or an aggregated server sends) says who a token belongs to.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from labkit.sandbox.api.auth import ADMIN, NODES_GROUP, Authorizer, TokenAuthority, User, review_attributes
from labkit.sandbox.api.status import StatusError, bad_request

#: The API server's own audiences (k3s runs kube-apiserver with ``--api-audiences`` set to these): a token
#: request without audiences gets them, and every sandbox token is valid for them.
API_AUDIENCES = ("https://kubernetes.default.svc.cluster.local", "k3s")

#: TokenRequest's bounds (``ValidateTokenRequest`` in pkg/apis/authentication/validation/validation.go).
MIN_TOKEN_SECONDS = 10 * 60
MAX_TOKEN_SECONDS = 1 << 32


def _token_seconds(spec: dict[str, Any]) -> int:
    """``spec.expirationSeconds``, defaulted to an hour, refused outside upstream's bounds (422, its wording)."""
    seconds = spec.get("expirationSeconds")
    seconds = 3600 if seconds is None else seconds
    if not isinstance(seconds, int) or isinstance(seconds, bool):
        raise bad_request(f"spec.expirationSeconds must be an integer, not {seconds!r}")
    problem = ""
    if seconds < MIN_TOKEN_SECONDS:
        problem = "may not specify a duration less than 10 minutes"
    elif seconds > MAX_TOKEN_SECONDS:
        problem = "may not specify a duration larger than 2^32 seconds"
    if problem:
        message = f"Invalid value: {seconds}: {problem}"
        raise StatusError(
            422,
            "Invalid",
            f'TokenRequest.authentication.k8s.io "" is invalid: spec.expirationSeconds: {message}',
            {
                "group": "authentication.k8s.io",
                "kind": "TokenRequest",
                "causes": [{"reason": "FieldValueInvalid", "message": message, "field": "spec.expirationSeconds"}],
            },
        )
    return seconds


def token_request(tokens: TokenAuthority, service_account: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    """The TokenRequest answer: a token for ``service_account`` valid ``spec.expirationSeconds`` (1 h, >= 10 min)."""
    meta = service_account["metadata"]
    spec = body.get("spec") or {}
    seconds = _token_seconds(spec)
    token, exp = tokens.issue(meta["namespace"], meta["name"], meta["uid"], seconds)
    return {
        "kind": "TokenRequest",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"name": meta["name"], "namespace": meta["namespace"], "creationTimestamp": None},
        "spec": {
            "audiences": spec.get("audiences") or list(API_AUDIENCES),
            "expirationSeconds": seconds,
            "boundObjectRef": None,
        },
        "status": {"token": token, "expirationTimestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(exp))},
    }


def access_review(authorizer: Authorizer, requester: User, kind: str, body: dict[str, Any]) -> dict[str, Any]:
    """The review with its ``status.allowed``: for ``requester`` (Self…) or the user the spec names (Subject…,
    Local…: pkg/registry/authorization/localsubjectaccessreview/rest.go authorizes the spec as a
    SubjectAccessReview's once validation kept it to its namespace)."""
    spec = body.get("spec") or {}
    user = requester
    if kind in ("SubjectAccessReview", "LocalSubjectAccessReview"):
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
    return {**body, "metadata": {"creationTimestamp": None, **(body.get("metadata") or {})}, "status": status}


def _user_info(user: User) -> dict[str, Any]:
    """A ``UserInfo`` as upstream serializes it: uid and extra only when set."""
    info: dict[str, Any] = {"username": user.name}
    if user.uid:
        info["uid"] = user.uid
    info["groups"] = list(user.groups)
    if user.extra:
        info["extra"] = user.extra
    return info


def token_review(
    tokens: TokenAuthority, sa_exists: Callable[[str, str, str], bool], body: dict[str, Any]
) -> dict[str, Any]:
    """Who ``spec.token`` belongs to, as pkg/registry/authentication/tokenreview/storage.go answers: the token
    authenticated for ``spec.audiences`` (by default the API's); a token nobody accepts is no error of the request
    but ``status.error``, bearertoken's "invalid bearer token" (upstream's ``authenticated: false`` is omitted)."""
    spec = body.get("spec") or {}
    if not spec.get("token"):
        raise bad_request("token is required for TokenReview in authentication")
    wanted = list(spec.get("audiences") or API_AUDIENCES)
    # sandbox tokens carry no audience claim: each is good for the API's audiences only (audience-agnostic,
    # as upstream wraps its static token authenticators)
    audiences = [a for a in wanted if a in API_AUDIENCES]
    user = tokens.authenticate(spec["token"], sa_exists) if audiences else None
    status: dict[str, Any] = {"error": "invalid bearer token", "user": {}}
    if user is not None:
        status = {"audiences": audiences, "authenticated": True, "user": _user_info(user)}
    return {**body, "metadata": {"creationTimestamp": None, **(body.get("metadata") or {})}, "status": status}


def self_subject_review(user: User) -> dict[str, Any]:
    """``kubectl auth whoami``: the caller as the API server sees it (after impersonation)."""
    info = _user_info(user)
    return {
        "kind": "SelfSubjectReview",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"creationTimestamp": None},
        "status": {"userInfo": info},
    }


def rules_review(authorizer: Authorizer, user: User, body: dict[str, Any]) -> dict[str, Any]:
    """``kubectl auth can-i --list``: the caller's RBAC rules in ``spec.namespace`` (selfsubjectrulesreview/rest.go).

    Rules are listed as RBAC's ``RulesFor`` gives them, one entry per rule; a node's list is marked incomplete
    with the Node authorizer's error, as the union of ``Node,RBAC`` answers it.
    """
    namespace = (body.get("spec") or {}).get("namespace") or ""
    if not namespace:
        raise bad_request("no namespace on request")
    resource_rules: list[dict[str, Any]] = []
    non_resource_rules: list[dict[str, Any]] = []
    for rule in authorizer.rules_for(user, namespace):
        verbs = list(rule.get("verbs") or [])
        if rule.get("resources"):
            entry = {"verbs": verbs}
            entry.update({k: list(rule[k]) for k in ("apiGroups", "resources", "resourceNames") if rule.get(k)})
            resource_rules.append(entry)
        if rule.get("nonResourceURLs"):
            non_resource_rules.append({"verbs": verbs, "nonResourceURLs": list(rule["nonResourceURLs"])})
    status: dict[str, Any] = {
        "resourceRules": resource_rules,
        "nonResourceRules": non_resource_rules,
        "incomplete": False,
    }
    if NODES_GROUP in user.groups and user.name.startswith("system:node:"):
        status["incomplete"] = True
        status["evaluationError"] = "node authorizer does not support user rule resolution"
    return {
        "kind": "SelfSubjectRulesReview",
        "apiVersion": "authorization.k8s.io/v1",
        "metadata": {"creationTimestamp": None},
        "spec": {"namespace": namespace},
        "status": status,
    }


def review(authorizer: Authorizer, requester: User, kind: str, body: dict[str, Any]) -> dict[str, Any]:
    """The answer to a POST of one of the review kinds (they are answered, never stored)."""
    if kind == "SelfSubjectReview":
        return self_subject_review(requester)
    if kind == "SelfSubjectRulesReview":
        return rules_review(authorizer, requester, body)
    return access_review(authorizer, requester, kind, body)
