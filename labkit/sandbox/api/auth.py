"""Who is calling, and may they? Bearer tokens and RBAC evaluation.

The admin token (written into the sandbox kubeconfig) is ``system:admin`` in
``system:masters`` and may do anything, as on k3s. ServiceAccount tokens are
HMAC-signed by the daemon's secret, so they survive a daemon restart and need no
table; requests made with them are checked against Roles, ClusterRoles and
their bindings exactly as the RBAC authorizer does (allow-only rules, union).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

SA_TOKEN_PREFIX = "lksa"
#: Node credentials (``system:node:<name>`` in ``system:nodes``), signed like ServiceAccount tokens.
NODE_TOKEN_PREFIX = "lknode"


@dataclass(frozen=True)
class User:
    name: str
    groups: tuple[str, ...] = ()
    #: (namespace, name) for service accounts
    service_account: tuple[str, str] | None = None
    extra: dict[str, list[str]] = field(default_factory=dict, hash=False, compare=False)
    uid: str = ""

    @property
    def is_admin(self) -> bool:
        return "system:masters" in self.groups


ADMIN = User("system:admin", ("system:masters", "system:authenticated"))


def service_account_user(namespace: str, name: str) -> User:
    return User(
        f"system:serviceaccount:{namespace}:{name}",
        ("system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"),
        (namespace, name),
    )


NODES_GROUP = "system:nodes"
_READ = ["get", "list", "watch"]
#: What a kubelet may do with its node credentials, granted first and without RBAC lookups, as
#: ``--authorization-mode=Node,RBAC`` does (upstream's Node authorizer narrows it further, to the objects
#: of the node's own pods). The daemon also binds them as the ClusterRole ``system:node``, so RBAC shows them.
NODE_RULES: list[dict[str, Any]] = [
    {"apiGroups": [""], "resources": ["pods"], "verbs": [*_READ, "delete"]},
    {"apiGroups": [""], "resources": ["pods/status"], "verbs": ["get", "patch", "update"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch", "update"]},
    {"apiGroups": [""], "resources": ["nodes"], "verbs": [*_READ, "create", "patch", "update"]},
    {"apiGroups": [""], "resources": ["nodes/status"], "verbs": ["get", "patch", "update"]},
    {"apiGroups": [""], "resources": ["configmaps", "secrets", "services", "endpoints"], "verbs": _READ},
    {"apiGroups": ["node.k8s.io"], "resources": ["runtimeclasses"], "verbs": [*_READ, "create"]},
    {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update", "patch"]},
    # the pods' projected ServiceAccount tokens (bootstrappolicy/policy.go NodeRules: create serviceaccounts/token)
    {"apiGroups": [""], "resources": ["serviceaccounts/token"], "verbs": ["create"]},
]


def node_user(name: str) -> User:
    """A kubelet's identity, as the Node authorizer expects it."""
    return User(f"system:node:{name}", (NODES_GROUP, "system:authenticated"))


class TokenAuthority:
    """Issues and verifies tokens. ``secret`` is the daemon's signing key."""

    def __init__(self, secret: bytes, admin_token: str) -> None:
        self._secret = secret
        self._admin_token = admin_token
        #: node tokens already verified (they never expire and the key never changes while the daemon runs), so
        #: a kubelet's every request costs no HMAC and JSON decode; only genuine tokens get in, one per node
        self._nodes: dict[str, User] = {}

    def issue(self, namespace: str, name: str, uid: str, expires_in: int = 3600 * 24 * 365) -> tuple[str, int]:
        """A ServiceAccount token and its expiry (unix seconds)."""
        exp = int(time.time()) + expires_in
        payload = (
            base64.urlsafe_b64encode(
                json.dumps({"ns": namespace, "sa": name, "uid": uid, "exp": exp}, separators=(",", ":")).encode()
            )
            .decode()
            .rstrip("=")
        )
        return f"{SA_TOKEN_PREFIX}.{payload}.{self._sign(payload)}", exp

    def issue_node(self, node: str) -> str:
        """A node's kubelet credential: it names the node and never expires (the node's own file is mode 0600)."""
        payload = base64.urlsafe_b64encode(json.dumps({"node": node}).encode()).decode().rstrip("=")
        return f"{NODE_TOKEN_PREFIX}.{payload}.{self._sign(NODE_TOKEN_PREFIX + payload)}"

    def _sign(self, payload: str) -> str:
        return hmac.new(self._secret, payload.encode(), hashlib.sha256).hexdigest()[:43]

    def authenticate(self, token: str, sa_exists: Callable[[str, str, str], bool]) -> User | None:
        """The user behind *token*, or None. ``sa_exists(ns, name, uid)`` rejects tokens of deleted accounts."""
        if hmac.compare_digest(token, self._admin_token):
            return ADMIN
        known = self._nodes.get(token)
        if known is not None:
            return known
        parts = token.split(".")
        if len(parts) == 3 and parts[0] == NODE_TOKEN_PREFIX:
            user = self._node(parts[1], parts[2])
            if user is not None:
                self._nodes[token] = user
            return user
        if len(parts) != 3 or parts[0] != SA_TOKEN_PREFIX or not hmac.compare_digest(parts[2], self._sign(parts[1])):
            return None
        try:
            claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
        except ValueError:
            return None
        if claims.get("exp", 0) < time.time() or not sa_exists(claims["ns"], claims["sa"], claims.get("uid", "")):
            return None
        user = service_account_user(claims["ns"], claims["sa"])
        # the account's uid, as a ServiceAccount token's claims give it (TokenReview, whoami)
        return replace(user, uid=claims["uid"]) if claims.get("uid") else user

    def _node(self, payload: str, signature: str) -> User | None:
        if not hmac.compare_digest(signature, self._sign(NODE_TOKEN_PREFIX + payload)):
            return None
        try:
            claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        except ValueError:
            return None
        return node_user(claims["node"]) if isinstance(claims, dict) and claims.get("node") else None


def _subject_matches(subject: dict[str, Any], user: User, binding_namespace: str = "") -> bool:
    kind = subject.get("kind")
    if kind == "User":
        return subject.get("name") == user.name
    if kind == "Group":
        return subject.get("name") in user.groups
    if kind == "ServiceAccount":
        # a RoleBinding's ServiceAccount without a namespace is one of its own namespace (appliesToUser in
        # pkg/registry/rbac/validation/rule.go)
        namespace = subject.get("namespace") or binding_namespace
        return bool(namespace) and user.name == f"system:serviceaccount:{namespace}:{subject.get('name')}"
    return False


def _rule_allows(rule: dict[str, Any], verb: str, group: str, resource: str, name: str | None) -> bool:
    def has(values: Iterable[str] | None, wanted: str) -> bool:
        values = values or ()
        return "*" in values or wanted in values

    if not has(rule.get("verbs"), verb) or not has(rule.get("apiGroups"), group):
        return False
    resources = rule.get("resources") or ()
    base = resource.split("/", 1)[0]
    if not ("*" in resources or resource in resources or (f"{base}/*" in resources and "/" in resource)):
        return False
    names = rule.get("resourceNames") or ()
    return not names or (name is not None and name in names)


class Authorizer:
    """RBAC over objects read through ``lookup(resource_plural_key, namespace) -> list[dict]``."""

    def __init__(self, lookup: Callable[[str, str | None], list[dict[str, Any]]]) -> None:
        self._lookup = lookup

    def _rules(self, user: User, namespace: str | None) -> Iterable[dict[str, Any]]:
        roles = {r["metadata"]["name"]: r for r in self._lookup("clusterroles", None)}
        for binding in self._lookup("clusterrolebindings", None):
            if any(_subject_matches(s, user) for s in binding.get("subjects") or ()):
                yield from (roles.get(binding["roleRef"]["name"]) or {}).get("rules") or ()
        if namespace:
            local = {r["metadata"]["name"]: r for r in self._lookup("roles", namespace)}
            for binding in self._lookup("rolebindings", namespace):
                if any(_subject_matches(s, user, namespace) for s in binding.get("subjects") or ()):
                    ref = binding["roleRef"]
                    role = (roles if ref.get("kind") == "ClusterRole" else local).get(ref["name"]) or {}
                    yield from role.get("rules") or ()

    def rules_for(self, user: User, namespace: str | None) -> list[dict[str, Any]]:
        """Every RBAC rule that applies to *user* in *namespace* (``RulesFor``): cluster-wide ones, then local ones."""
        return list(self._rules(user, namespace))

    def role_rules(self, kind: str, name: str, namespace: str | None) -> list[dict[str, Any]] | None:
        """The rules of the Role (in *namespace*) or ClusterRole a roleRef names; None when it does not exist."""
        if kind == "ClusterRole":
            roles = self._lookup("clusterroles", None)
        elif kind == "Role" and namespace:
            roles = self._lookup("roles", namespace)
        else:
            return None
        role = next((r for r in roles if r["metadata"]["name"] == name), None)
        return None if role is None else list(role.get("rules") or ())

    def allowed(
        self, user: User, verb: str, group: str, resource: str, namespace: str | None, name: str | None = None
    ) -> bool:
        """True when some rule grants *verb* on *resource* (``pods`` or ``pods/log``)."""
        if user.is_admin:
            return True
        if NODES_GROUP in user.groups and any(_rule_allows(rule, verb, group, resource, name) for rule in NODE_RULES):
            return True
        return any(_rule_allows(rule, verb, group, resource, name) for rule in self._rules(user, namespace))


def review_attributes(spec: dict[str, Any]) -> tuple[str, str, str, str | None, str | None]:
    """(verb, group, resource[/sub], namespace, name) from a SubjectAccessReview spec."""
    attrs = spec.get("resourceAttributes") or {}
    resource = attrs.get("resource", "")
    if attrs.get("subresource"):
        resource = f"{resource}/{attrs['subresource']}"
    return (
        attrs.get("verb", ""),
        attrs.get("group", ""),
        resource,
        attrs.get("namespace") or None,
        attrs.get("name") or None,
    )
