"""RBAC escalation prevention: nobody grants, through a Role or a binding, more than they hold.

Upstream (``pkg/registry/rbac/{role,clusterrole,rolebinding,clusterrolebinding}/policybased/storage.go``):

- writing a Role or ClusterRole whose rules the writer does not hold all of is refused, unless the writer may
  ``escalate`` that role (``RoleEscalationAuthorized``);
- writing a binding to a role whose rules the writer does not hold is refused, unless the writer may ``bind``
  that role (``BindingAuthorized`` in ``pkg/registry/rbac/escalation_check.go``);
- ``system:masters`` may do both (``EscalationAllowed``), and so may an update that only changes the fields
  the garbage collector needs (``IsOnlyMutatingGCFields``: ownerReferences and finalizers).

The rule comparison and the message are those of ``pkg/registry/rbac/validation``: ``Covers`` breaks the wanted
rules into single (verb, group, resource, name) rules (``BreakdownRule``), ``CompactRules`` joins the missing ones
per resource again, and ``ConfirmNoEscalation`` lists them, sorted, in ``CompactString`` form.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from labkit.sandbox.api.registry import RESOURCES, Resource
from labkit.sandbox.api.status import forbidden_because, not_found

if TYPE_CHECKING:
    from labkit.sandbox.api.auth import Authorizer, User

RBAC_GROUP = "rbac.authorization.k8s.io"
Rule = dict[str, Any]
#: Called with the object about to be written and the live one (None on create); raises to refuse the write.
Guard = Callable[[dict[str, Any], dict[str, Any] | None], None]
#: What an aggregationRule may gather: anything (``fullAuthority`` in clusterrole/policybased/storage.go).
FULL_AUTHORITY: list[Rule] = [
    {"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]},
    {"verbs": ["*"], "nonResourceURLs": ["*"]},
]


def breakdown(rule: Rule) -> list[Rule]:
    """One rule per (group, resource, name, verb) and per (URL, verb), as ``BreakdownRule``."""
    out: list[Rule] = []
    verbs = rule.get("verbs") or []
    for group in rule.get("apiGroups") or []:
        for resource in rule.get("resources") or []:
            for verb in verbs:
                names = rule.get("resourceNames") or []
                if names:
                    out += [
                        {"apiGroups": [group], "resources": [resource], "resourceNames": [n], "verbs": [verb]}
                        for n in names
                    ]
                else:
                    out.append({"apiGroups": [group], "resources": [resource], "verbs": [verb]})
    for url in rule.get("nonResourceURLs") or []:
        out += [{"nonResourceURLs": [url], "verbs": [verb]} for verb in verbs]
    return out


def _has_all(owned: Iterable[str], wanted: Iterable[str]) -> bool:
    return set(wanted) <= set(owned)


def _resources_cover(owned: list[str], wanted: list[str]) -> bool:
    if "*" in owned or _has_all(owned, wanted):
        return True
    # a subresource is covered by "*/<subresource>" (resourceCoversAll)
    return all(w in owned or ("/" in w and "*/" + w.split("/", 1)[1] in owned) for w in wanted)


def _urls_cover(owned: list[str], wanted: list[str]) -> bool:
    def one(url: str) -> bool:
        return any(o == "*" or o == url or (o.endswith("*") and url.startswith(o[:-1])) for o in owned)

    return all(one(url) for url in wanted)


def rule_covers(owner: Rule, sub: Rule) -> bool:
    """``ruleCovers`` (policy_comparator.go): does *owner* grant everything *sub* does?"""
    verbs, groups = owner.get("verbs") or [], owner.get("apiGroups") or []
    names, wanted_names = owner.get("resourceNames") or [], sub.get("resourceNames") or []
    return (
        ("*" in verbs or _has_all(verbs, sub.get("verbs") or []))
        and ("*" in groups or _has_all(groups, sub.get("apiGroups") or []))
        and _resources_cover(owner.get("resources") or [], sub.get("resources") or [])
        and _urls_cover(owner.get("nonResourceURLs") or [], sub.get("nonResourceURLs") or [])
        and (not names or (bool(wanted_names) and _has_all(names, wanted_names)))
    )


def missing_rules(owned: list[Rule], wanted: list[Rule]) -> list[Rule]:
    """The broken-down rules of *wanted* that no rule of *owned* covers (``Covers``)."""
    return [sub for rule in wanted for sub in breakdown(rule) if not any(rule_covers(o, sub) for o in owned)]


def compact(rules: list[Rule]) -> list[Rule]:
    """``CompactRules``: single-resource rules that differ only in their verbs become one."""
    simple: dict[tuple[str, str, str], Rule] = {}
    out: list[Rule] = []
    for rule in rules:
        groups, resources, names = rule.get("apiGroups") or [], rule.get("resources") or [], rule.get("resourceNames")
        if rule.get("nonResourceURLs") or len(groups) != 1 or len(resources) != 1 or len(names or []) > 1:
            out.append(rule)
            continue
        key = (groups[0], resources[0], (names or [""])[0])
        if key in simple:
            simple[key]["verbs"] = [*simple[key]["verbs"], *(rule.get("verbs") or [])]
        else:
            simple[key] = {**rule, "verbs": list(rule.get("verbs") or [])}
    return out + list(simple.values())


def _go_quoted(values: Iterable[str]) -> str:
    """Go's ``%q`` of a ``[]string``: ``["a" "b"]``."""
    return "[" + " ".join(json.dumps(v) for v in values) + "]"


def compact_string(rule: Rule) -> str:
    """``CompactString`` (pkg/apis/rbac/v1/evaluation_helpers.go), for escalation messages.

    >>> compact_string({"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]})
    '{APIGroups:[""], Resources:["pods"], Verbs:["get" "list"]}'
    """
    parts = [
        f"{label}:{_go_quoted(rule[key])}"
        for label, key in (
            ("APIGroups", "apiGroups"),
            ("Resources", "resources"),
            ("NonResourceURLs", "nonResourceURLs"),
            ("ResourceNames", "resourceNames"),
            ("Verbs", "verbs"),
        )
        if rule.get(key)
    ]
    return "{" + ", ".join(parts) + "}"


def confirm_no_escalation(authorizer: Authorizer, user: User, namespace: str | None, rules: list[Rule]) -> str:
    """``ConfirmNoEscalation``: "" when *user* holds every rule in *namespace*, else upstream's message."""
    missing = missing_rules(authorizer.rules_for(user, namespace), rules)
    if not missing:
        return ""
    listed = "\n".join(sorted({compact_string(rule) for rule in compact(missing)}))
    return (
        f"user {json.dumps(user.name)} (groups={_go_quoted(user.groups)}) "
        f"is attempting to grant RBAC permissions not currently held:\n{listed}"
    )


def _only_gc_fields(new: dict[str, Any], live: dict[str, Any] | None) -> bool:
    """``IsOnlyMutatingGCFields``: the update changes nothing but ownerReferences and finalizers."""
    if live is None:
        return False

    def rest(obj: dict[str, Any]) -> dict[str, Any]:
        meta = {k: v for k, v in obj.get("metadata", {}).items() if k not in ("ownerReferences", "finalizers")}
        meta.pop("resourceVersion", None)
        meta.pop("managedFields", None)
        return {**obj, "metadata": meta}

    return rest(new) == rest(live)


def guard(authorizer: Authorizer, user: User, resource: Resource, namespace: str | None) -> Guard | None:
    """The check for a write of *resource* by *user*; None when there is nothing to check."""
    if resource.group != RBAC_GROUP or user.is_admin:
        return None
    if resource.plural in ("roles", "clusterroles"):

        def check_role(new: dict[str, Any], live: dict[str, Any] | None) -> None:
            name = new.get("metadata", {}).get("name", "")
            if _only_gc_fields(new, live) or authorizer.allowed(
                user, "escalate", RBAC_GROUP, resource.plural, namespace, (live or {}).get("metadata", {}).get("name")
            ):
                return
            reason = confirm_no_escalation(authorizer, user, namespace, new.get("rules") or [])
            if (
                not reason
                and new.get("aggregationRule")
                and confirm_no_escalation(authorizer, user, namespace, FULL_AUTHORITY)
            ):
                reason = "must have cluster-admin privileges to use the aggregationRule"
            if reason:
                raise forbidden_because(resource, name, reason)

        return check_role

    def check_binding(new: dict[str, Any], live: dict[str, Any] | None) -> None:
        name = new.get("metadata", {}).get("name", "")
        ref = new.get("roleRef") or {}
        kind, role_name = ref.get("kind"), ref.get("name") or ""
        if _only_gc_fields(new, live) or kind not in ("Role", "ClusterRole"):
            return  # an unknown kind fails validation
        plural = "roles" if kind == "Role" else "clusterroles"
        if authorizer.allowed(user, "bind", ref.get("apiGroup") or "", plural, namespace, role_name):
            return
        rules = authorizer.role_rules(kind, role_name, namespace)
        if rules is None:  # GetRoleReferenceRules passes the getter's NotFound on
            raise not_found(RESOURCES.served(RBAC_GROUP, plural), role_name)
        reason = confirm_no_escalation(authorizer, user, namespace, rules)
        if reason:
            raise forbidden_because(resource, name, reason)

    return check_binding
