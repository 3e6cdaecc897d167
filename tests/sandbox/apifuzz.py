"""Hypothesis strategies for requests to every route of the sandbox API server, and the check each answer
must pass: no 5xx, a failure is a Kubernetes Status with its own code, and a refused request changes nothing.

Shared by tests/sandbox/test_api_fuzz.py and benchmarks/bench_safety.py (fuzz examples per second).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

import yaml
from hypothesis import strategies as st

from labkit.sandbox.api.registry import RESOURCES, Resource

if TYPE_CHECKING:
    from tests.sandbox.apiserver_harness import LiveApi

NAMES = ["default", "kube-system", "fuzz", "fuzz-2", "labkit-server-0", "x" * 64, "UPPER", "a.b", ""]
NON_RESOURCE = [
    "/", "/api", "/apis", "/api/v1", "/apis/apps", "/apis/apps/v1", "/apis/nope", "/apis/apps/v9", "/version",
    "/healthz", "/readyz", "/livez", "/openapi/v2", "/openapi/v3", "/openapi/v3/api/v1", "/openapi/v3/nope",
    "/api/v1/namespaces/default/nope", "/api/v1/namespaces/default/pods/x/nope", "/api/v1/pods/x/y/z/w",
]  # fmt: skip
CONTENT_TYPES = [
    "application/json", "application/yaml", "application/apply-patch+yaml", "application/merge-patch+json",
    "application/json-patch+json", "application/strategic-merge-patch+json", "application/vnd.kubernetes.protobuf",
    "text/plain", "",
]  # fmt: skip
NUMBERS = st.one_of(
    st.integers(min_value=-(2**65), max_value=2**65).map(str),
    st.sampled_from(["", "0", "-1", "1e3", "0x10", " 5", "abc", "9" * 30, "1.5"]),
)
QUERY = {
    "limit": NUMBERS,
    "timeoutSeconds": NUMBERS,
    "gracePeriodSeconds": NUMBERS,
    "resourceVersion": NUMBERS,
    "fieldSelector": st.one_of(
        st.text(max_size=30),
        st.sampled_from(["metadata.name=fuzz", "spec.nodeName=x", "status.phase!=Running", "a", "=", "x==y==z"]),
    ),
    "labelSelector": st.one_of(st.text(max_size=30), st.sampled_from(["app=x", "a in (b,c)", "!a", "a notin ("])),
    "continue": st.one_of(st.text(max_size=30), st.just("eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJydiI6MX0")),
    "dryRun": st.sampled_from(["All", "", "x"]),
    "fieldManager": st.text(max_size=10),
    "fieldValidation": st.sampled_from(["Strict", "Warn", "Ignore", "nope"]),
    "propagationPolicy": st.sampled_from(["Background", "Foreground", "Orphan", "nope"]),
    "orphanDependents": st.sampled_from(["true", "false", "x"]),
    "force": st.sampled_from(["true", "false"]),
    "includeObject": st.sampled_from(["None", "Metadata", "Object", "x"]),
    "container": st.text(max_size=8),
    "tailLines": NUMBERS,
    "limitBytes": NUMBERS,
    "sinceSeconds": NUMBERS,
}
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)  # fmt: skip


def laughs(levels: int = 9, fanout: int = 9) -> bytes:
    """The "billion laughs" YAML of CVE-2019-11253: each anchor repeats the previous one ``fanout`` times."""
    lines = ['apiVersion: v1\nkind: ConfigMap\nmetadata: {name: lol}\ndata:\n  a0: &a0 "lol"']
    lines += [f"  a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * fanout)}]" for i in range(1, levels + 1)]
    return "\n".join(lines).encode() + b"\n"


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    body: bytes | None
    content_type: str
    accept: str


def _route(resource: Resource, namespace: str, name: str | None, sub: str) -> str:
    """The path of a collection (``name`` None), an object or a subresource, from parts already escaped."""
    prefix = f"/{resource.group_version_path}"
    if resource.namespaced and namespace:
        prefix += f"/namespaces/{namespace}"
    path = f"{prefix}/{resource.plural}"
    if name is not None:
        path += f"/{name}"
        if sub:
            path += f"/{sub}"
    return path


def _path(resource: Resource, namespace: str, name: str | None, sub: str) -> str:
    return _route(resource, quote(namespace, safe=""), None if name is None else quote(name, safe="") or "x", sub)


def route_templates() -> set[str]:
    """Every path the fuzzer can reach, written as the OpenAPI document writes paths (``{namespace}``, ``{name}``)."""
    templates = set()
    for resource in RESOURCES.every_version():
        for name, sub in [(None, ""), ("{name}", ""), *(("{name}", sub) for sub in resource.subresources)]:
            templates.add(_route(resource, "{namespace}", name, sub))
    return templates


def _object(resource: Resource, name: str) -> st.SearchStrategy[Any]:
    """A body shaped like the resource's objects (so requests reach validation and the store), or not."""
    metadata = st.one_of(
        st.fixed_dictionaries(
            {"name": st.sampled_from(NAMES) | st.text(max_size=10)},
            optional={
                "namespace": st.sampled_from(NAMES),
                "labels": st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=3),
                "resourceVersion": NUMBERS,
                "generateName": st.text(max_size=8),
                "finalizers": st.lists(st.text(max_size=8), max_size=2),
                "ownerReferences": JSON_VALUES,
            },
        ),
        JSON_VALUES,
    )
    return st.one_of(
        st.fixed_dictionaries(
            {"metadata": metadata},
            optional={
                "apiVersion": st.sampled_from([resource.api_version, "v1", "apps/v1", "x/y"]),
                "kind": st.sampled_from([resource.kind, "Pod", "Eviction", "DeleteOptions", "Scale"]),
                "spec": JSON_VALUES,
                "data": st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=3),
                "status": JSON_VALUES,
                "gracePeriodSeconds": JSON_VALUES,
                "preconditions": JSON_VALUES,
                "deleteOptions": JSON_VALUES,
            },
        ),
        JSON_VALUES,
    )


@st.composite
def requests(draw: st.DrawFn) -> Request:
    """One request to any route: a resource's collection, object or subresource, or a non-resource path."""
    resource: Resource | None = None
    name: str | None = "x"
    if draw(st.integers(0, 9)) == 0:
        path = draw(st.sampled_from(NON_RESOURCE))
    else:
        resource = draw(st.sampled_from(RESOURCES.every_version()))  # served by conversion too (autoscaling/v1)
        name = draw(st.none() | st.sampled_from(NAMES) | st.text(min_size=1, max_size=12))
        sub = draw(st.sampled_from(["", *resource.subresources])) if name is not None else ""
        path = _path(resource, draw(st.sampled_from(NAMES)), name, sub)
    method = draw(st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE"]))
    keys = draw(st.lists(st.sampled_from(sorted(QUERY)), max_size=4, unique=True))
    params = {key: draw(QUERY[key]) for key in keys}
    if params:
        path += "?" + urlencode(params)
    content_type = draw(st.sampled_from(CONTENT_TYPES))
    body: bytes | None = None
    if method != "GET" or draw(st.booleans()):
        kind = draw(st.integers(0, 5))
        if kind == 0:
            body = draw(st.binary(max_size=64))
        elif kind == 1:
            body = b"k8s\x00" + draw(st.binary(max_size=64))
        else:
            value = draw(_object(resource, name or "x") if resource is not None else JSON_VALUES)
            body = yaml.safe_dump(value).encode() if "yaml" in content_type else json.dumps(value).encode()
    accept = draw(st.sampled_from(["application/json", "application/json;as=Table;v=v1;g=meta.k8s.io", "*/*"]))
    return Request(method, path, body, content_type, accept)


def check(api: LiveApi, request: Request) -> int:
    """Send ``request``; assert the answer is no 5xx, a failure is a Status with the same code, and a refused
    request left every stored object as it was. Returns the status code."""
    before = api.state()
    reply = api.call(
        request.method,
        request.path,
        request.body,
        content_type=request.content_type,
        headers={"Accept": request.accept},
    )
    context = f"{request.method} {request.path} {request.content_type!r} {request.body!r:.300}"
    assert reply.status < 500, f"{reply.status} for {context}: {reply.body[:500]!r}"
    if reply.status >= 400:
        status = json.loads(reply.body)
        assert status.get("kind") == "Status" and status.get("code") == reply.status, context
        assert api.state() == before, f"a refused request changed the store: {context}"
    return reply.status
