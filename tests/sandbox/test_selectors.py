"""Label and field selectors: every operator, canonical strings, and the API server's error wording."""

from __future__ import annotations

from typing import Any

import pytest

from labkit.sandbox.api.selectors import (
    field_value,
    label_selector_from_match,
    parse_field_selector,
    parse_label_selector,
    validate_label_key,
    validate_label_value,
)
from labkit.sandbox.api.status import StatusError

WEB = {"app": "web", "tier": "front", "replicas": "3"}
DB = {"app": "db", "tier": "back"}
BARE: dict[str, str] = {}


@pytest.mark.parametrize(
    ("selector", "web", "db", "bare"),
    [
        ("app=web", True, False, False),
        ("app==web", True, False, False),
        ("app!=web", False, True, True),  # a missing key satisfies !=
        ("app in (web,api)", True, False, False),
        ("app notin (web,api)", False, True, True),  # and notin
        ("app", True, True, False),
        ("!app", False, False, True),
        ("replicas>2", True, False, False),
        ("replicas<3", False, False, False),
        ("tier=front,app=web", True, False, False),
        ("tier=front,app=db", False, False, False),
        ("app in (web, db), !missing", True, True, False),
        ("  app  =  web  ,  tier  ", True, False, False),  # whitespace tolerant
        ("app=", False, False, False),  # the empty value: only a present, empty label
        ("", True, True, True),  # everything
        ("app in (notin,in)", False, False, False),  # keywords are plain words inside a set
    ],
)
def test_label_operators(selector: str, web: bool, db: bool, bare: bool) -> None:
    sel = parse_label_selector(selector)
    assert (sel.matches(WEB), sel.matches(DB), sel.matches(BARE)) == (web, db, bare)


def test_label_empty_value_and_none_labels() -> None:
    assert parse_label_selector("app=").matches({"app": ""})
    assert parse_label_selector("app in (,x)").matches({"app": ""})
    assert parse_label_selector("!app").matches(None)
    assert not parse_label_selector("app").matches(None)


def test_label_numeric_operators_ignore_non_integers() -> None:
    assert not parse_label_selector("replicas>1").matches({"replicas": "many"})
    assert parse_label_selector("replicas<10").matches({"replicas": "-4"})


def test_label_to_string_is_canonical_and_round_trips() -> None:
    text = "tier notin (db, cache), app in (web,api,web), !canary, env=prod, x==1, y!=2, z, n>4"
    sel = parse_label_selector(text)
    assert sel.to_string() == "app in (api,web),!canary,env=prod,n>4,tier notin (cache,db),x==1,y!=2,z"
    assert parse_label_selector(sel.to_string()) == sel


def test_label_qualified_keys() -> None:
    sel = parse_label_selector("app.kubernetes.io/part-of=labkit,labkit.io/lab in (01-demo)")
    assert sel.matches({"app.kubernetes.io/part-of": "labkit", "labkit.io/lab": "01-demo"})


@pytest.mark.parametrize(
    ("selector", "message"),
    [
        ("app in web", "unable to parse requirement: found 'web' expected: '('"),
        ("app in (a b)", "unable to parse requirement: found 'b', expected: ',' or ')'"),
        ("app in (a,", "unable to parse requirement: found '', expected: ',', or identifier"),
        ("app in (=)", "unable to parse requirement: found '=', expected: ',', ')' or identifier"),
        ("app = = x", "unable to parse requirement: found '=', expected: identifier"),
        ("app web", "unable to parse requirement: found 'web', expected: '=', '!=', '==', 'in', notin'"),
        ("!=x", "found '!=', expected: !, identifier, or 'end of string'"),
        ("app=web,", "found '', expected: identifier after ','"),
        ("app=web x", "found 'x', expected: ',' or 'end of string'"),
        ("!app=web", "found '=', expected: ',' or 'end of string'"),
        ("(app)", "found '(', expected: !, identifier, or 'end of string'"),
        ("n>x", "unable to parse requirement: for 'Gt', 'Lt' operators, the value must be an integer"),
    ],
)
def test_label_syntax_errors_use_the_api_server_wording(selector: str, message: str) -> None:
    with pytest.raises(StatusError) as info:
        parse_label_selector(selector)
    assert (info.value.code, info.value.reason, info.value.message) == (400, "BadRequest", message)


def test_label_invalid_key_and_value() -> None:
    with pytest.raises(StatusError, match=r'^unable to parse requirement: invalid label key "-app": name part must'):
        parse_label_selector("-app=web")
    with pytest.raises(StatusError, match=r'^unable to parse requirement: invalid label value: "we\$b": at key: "app"'):
        parse_label_selector("app=we$b")
    with pytest.raises(StatusError, match="prefix part a lowercase RFC 1123 subdomain"):
        parse_label_selector("Example.com/app")


def test_label_key_and_value_validation() -> None:
    assert validate_label_key("app.kubernetes.io/name") == []
    assert validate_label_key("a" * 64) == ["name part must be no more than 63 characters"]
    assert validate_label_key("/app") == ["prefix part must be non-empty"]
    assert "with an optional DNS subdomain prefix" in validate_label_key("a/b/c")[0]
    assert validate_label_value("") == []
    assert validate_label_value("x" * 64) == ["must be no more than 63 characters"]
    assert validate_label_value("-x")[0].startswith("a valid label must be an empty string")


def test_label_selector_from_match() -> None:
    sel = label_selector_from_match(
        {
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["front", "edge"]},
                {"key": "env", "operator": "NotIn", "values": ["test"]},
                {"key": "owner", "operator": "Exists"},
                {"key": "canary", "operator": "DoesNotExist"},
            ],
        }
    )
    assert sel.to_string() == "app=web,!canary,env notin (test),owner,tier in (edge,front)"
    assert sel.matches({"app": "web", "tier": "edge", "owner": "me"})
    assert not sel.matches({"app": "web", "tier": "edge", "owner": "me", "canary": "1"})
    assert not sel.matches({"app": "web", "tier": "edge", "owner": "me", "env": "test"})
    assert not sel.matches({"app": "web", "tier": "back", "owner": "me"})


def test_label_selector_from_match_nil_and_empty() -> None:
    assert not label_selector_from_match(None).matches({"app": "web"})  # nil selects nothing
    assert label_selector_from_match({}).matches({"app": "web"})  # {} selects everything
    assert label_selector_from_match({}).empty and not label_selector_from_match(None).empty


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ({"key": "a", "operator": "Equals", "values": ["x"]}, '"Equals" is not a valid label selector operator'),
        ({"key": "a", "operator": "In", "values": []}, "for 'in', 'notin' operators, values set can't be empty"),
        ({"key": "a", "operator": "Exists", "values": ["x"]}, "values set must be empty for exists and does not exist"),
    ],
)
def test_label_selector_from_match_errors(expression: dict[str, Any], message: str) -> None:
    with pytest.raises(StatusError) as info:
        label_selector_from_match({"matchExpressions": [expression]})
    assert (info.value.code, info.value.message) == (400, message)


POD = {
    "metadata": {"name": "web-1", "namespace": "lab"},
    "spec": {"nodeName": "node-a", "hostNetwork": False},
    "status": {"phase": "Running"},
}
EVENT = {
    "metadata": {"name": "web-1.17f", "namespace": "lab"},
    "involvedObject": {"kind": "Pod", "name": "web-1", "namespace": "lab", "uid": "u-1"},
    "type": "Warning",
    "reason": "BackOff",
}


@pytest.mark.parametrize(
    ("selector", "obj", "expected"),
    [
        ("metadata.name=web-1", POD, True),
        ("metadata.name==web-1", POD, True),
        ("metadata.name!=web-1", POD, False),
        ("metadata.namespace=lab,status.phase=Running", POD, True),
        ("metadata.namespace=lab,status.phase!=Running", POD, False),
        ("spec.nodeName=", POD, False),
        ("spec.nodeName=", {"spec": {}}, True),  # a missing field compares as ""
        ("spec.hostNetwork=false", POD, True),
        ("involvedObject.name=web-1,involvedObject.kind=Pod,involvedObject.uid=u-1", EVENT, True),
        ("involvedObject.namespace=other", EVENT, False),
        ("type=Warning,reason=BackOff", EVENT, True),
        ("", POD, True),
    ],
)
def test_field_selectors(selector: str, obj: dict[str, Any], expected: bool) -> None:
    assert parse_field_selector(selector).matches(obj) is expected


def test_field_selector_escapes() -> None:
    sel = parse_field_selector(r"metadata.name=a\,b\=c\\d,type=x")
    assert [(t.field, t.op, t.value) for t in sel.terms] == [("metadata.name", "=", "a,b=c\\d"), ("type", "=", "x")]
    with pytest.raises(StatusError, match=r"^invalid field selector: invalid escape sequence: \\q$"):
        parse_field_selector(r"metadata.name=a\q")
    with pytest.raises(StatusError, match=r"^invalid field selector: unescaped character in value: =$"):
        parse_field_selector("metadata.name=a=b")


def test_field_selector_without_operator() -> None:
    with pytest.raises(StatusError) as info:
        parse_field_selector("status.phase=Running,spec.nodeName")
    assert info.value.code == 400
    assert info.value.message == (
        "invalid selector: 'status.phase=Running,spec.nodeName'; can't understand 'spec.nodeName'"
    )


def test_field_selector_exact_name() -> None:
    assert parse_field_selector("status.phase=Running,metadata.name=web").exact_name() == "web"
    assert parse_field_selector("metadata.name==web").exact_name() == "web"
    assert parse_field_selector("metadata.name!=web").exact_name() is None
    assert parse_field_selector("metadata.namespace=lab").exact_name() is None


def test_field_value_scalars() -> None:
    obj = {"a": {"n": 3, "t": True, "l": [1], "d": {}}}
    assert [field_value(obj, p) for p in ("a.n", "a.t", "a.l", "a.d", "a.n.x", "b")] == ["3", "true", "", "", "", ""]
