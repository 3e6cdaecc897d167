"""The rule comparison behind escalation prevention, case by case as upstream's policy_comparator_test.go."""

from __future__ import annotations

import pytest

from labkit.sandbox.api.escalation import breakdown, compact, compact_string, missing_rules, rule_covers

PODS_GET = {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}


def url(path: str) -> dict:
    return {"nonResourceURLs": [path], "verbs": ["get"]}


@pytest.mark.parametrize(
    ("owner", "wanted", "covered"),
    [
        ({"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}, PODS_GET, True),
        ({"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}, PODS_GET, True),
        ({"apiGroups": ["apps"], "resources": ["pods"], "verbs": ["get"]}, PODS_GET, False),
        # a subresource is covered by its name or by */<subresource>, never by its parent resource alone
        ({"apiGroups": ["apps"], "resources": ["*/scale"], "verbs": ["update"]},
         {"apiGroups": ["apps"], "resources": ["deployments/scale"], "verbs": ["update"]}, True),
        ({"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]},
         {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]}, False),
        # names: an owner limited to names covers only those; an unlimited owner covers any
        ({**PODS_GET, "resourceNames": ["a"]}, PODS_GET, False),
        ({**PODS_GET, "resourceNames": ["a", "b"]}, {**PODS_GET, "resourceNames": ["a"]}, True),
        (PODS_GET, {**PODS_GET, "resourceNames": ["c"]}, True),
        # non-resource URLs: exact, "*", or a trailing-* prefix
        (url("/healthz*"), url("/healthz/ready"), True),
        (url("*"), url("/metrics"), True),
        (url("/healthz"), url("/metrics"), False),
    ],
)  # fmt: skip
def test_rule_covers(owner, wanted, covered) -> None:
    assert all(rule_covers(owner, sub) for sub in breakdown(wanted)) is covered


def test_missing_rules_are_broken_down_compacted_and_printed_as_upstream() -> None:
    wanted = [{"apiGroups": ["", "apps"], "resources": ["pods"], "verbs": ["get", "delete"]}]
    missing = missing_rules([PODS_GET], wanted)
    assert len(missing) == 3  # get pods is held; delete pods, get and delete apps/pods are not
    assert sorted(compact_string(r) for r in compact(missing)) == [
        '{APIGroups:[""], Resources:["pods"], Verbs:["delete"]}',
        '{APIGroups:["apps"], Resources:["pods"], Verbs:["get" "delete"]}',
    ]
    assert missing_rules([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}], wanted) == []
