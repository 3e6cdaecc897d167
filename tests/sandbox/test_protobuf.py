"""The protobuf decoder against real kubectl 1.32 bodies.

A tiny aiohttp capture server (discovery from the registry, records every POST)
receives what ``kubectl create ...`` really sends.  The same command with
``-o json --dry-run=client`` prints kubectl's own JSON rendering of the identical
object, and ``decode(captured bytes)`` must equal it.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web

from labkit.sandbox.api import protobuf, tables
from labkit.sandbox.api.registry import RESOURCES, Resource
from labkit.sandbox.api.status import StatusError
from tests.sandbox.conftest import KUBECTL

pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")

AGGREGATED = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"


def _discovery_resource(r: Resource) -> dict[str, Any]:
    return {
        "resource": r.plural,
        "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
        "scope": "Namespaced" if r.namespaced else "Cluster",
        "singularResource": r.singular,
        "verbs": list(r.verbs),
        "shortNames": list(r.short_names),
        "categories": list(r.categories),
        "subresources": [
            {"subresource": sub, "responseKind": {"group": r.group, "version": r.version, "kind": kind or r.kind},
             "verbs": ["create", "get"]}
            for sub, kind in r.subresources.items()
        ],
    }  # fmt: skip


def _aggregated(core: bool) -> dict[str, Any]:
    items = []
    for group, resources in RESOURCES.groups().items():
        if (group == "") != core:
            continue
        items.append({
            "metadata": {"name": group},
            "versions": [{"version": resources[0].version, "freshness": "Current",
                          "resources": [_discovery_resource(r) for r in resources]}],
        })  # fmt: skip
    return {"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items}


def _resource_list(group_version: str) -> dict[str, Any]:
    return {
        "kind": "APIResourceList",
        "groupVersion": group_version,
        "resources": [
            {"name": r.plural, "singularName": r.singular, "namespaced": r.namespaced, "kind": r.kind,
             "verbs": list(r.verbs), "shortNames": list(r.short_names)}
            for r in RESOURCES if r.api_version == group_version
        ],
    }  # fmt: skip


class Capture:
    """A real HTTP server on 127.0.0.1 that answers discovery, records POST bodies and
    serves ``listings`` (list path -> objects) as Tables (test_tables uses that)."""

    def __init__(self, listings: dict[str, tuple[Resource, list[dict[str, Any]]]] | None = None) -> None:
        self.listings = listings or {}
        self.posts: list[tuple[str, str, bytes]] = []
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if path == "/version":
            return web.json_response({"major": "1", "minor": "32", "gitVersion": "v1.32.5"})
        if path in ("/api", "/apis"):
            return web.Response(text=json.dumps(_aggregated(path == "/api")), headers={"Content-Type": AGGREGATED})
        if request.method == "GET" and path in self.listings and "as=Table" in request.headers.get("Accept", ""):
            resource, objects = self.listings[path]
            return web.json_response(tables.to_table(resource, objects, list_rv="7"))
        if request.method == "GET" and (path == "/api/v1" or path.startswith("/apis/")):
            return web.json_response(_resource_list(path.removeprefix("/api/").removeprefix("/apis/")))
        if request.method == "POST":
            body = await request.read()
            content_type = request.headers.get("Content-Type", "")
            self.posts.append((path, content_type, body))
            obj = protobuf.decode(body) if protobuf.is_protobuf(content_type) else json.loads(body)
            # kubectl prints from the reply: echo the object, answered like a server would
            if obj.get("kind") == "SelfSubjectAccessReview":
                obj["status"] = {"allowed": True}
            if obj.get("kind") == "TokenRequest":
                obj["status"] = {"token": "captured-token", "expirationTimestamp": "2030-01-01T00:00:00Z"}
            return web.json_response(obj, status=201)
        return web.json_response({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound",
                                  "code": 404, "message": "not found"}, status=404)  # fmt: skip

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app)
        self._loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        host, port = runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        self._runner = runner
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(runner.cleanup())

    def start(self) -> None:
        self._thread.start()
        assert self._ready.wait(10), "capture server did not start"

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


@pytest.fixture(scope="module")
def capture() -> Iterator[Capture]:
    server = Capture()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def kubectl(capture: Capture, tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("kubectl-home")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = [KUBECTL, f"--server={capture.url}", f"--cache-dir={home / 'cache'}", "--namespace=default", *args]
        env = {**os.environ, "HOME": str(home)}
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env, check=False)

    return run


def _before_dashes(args: list[str], *flags: str) -> list[str]:
    """Insert flags before a ``--`` (the container command), else append them."""
    cut = args.index("--") if "--" in args else len(args)
    return [*args[:cut], *flags, *args[cut:]]


def _send(capture: Capture, kubectl, args: list[str]) -> tuple[str, bytes]:
    """Run a kubectl command for real and return (path, body) of the POST it made."""
    before = len(capture.posts)
    result = kubectl(*args)
    assert result.returncode == 0, result.stderr
    assert len(capture.posts) == before + 1, result.stderr
    path, content_type, body = capture.posts[-1]
    assert protobuf.is_protobuf(content_type), f"kubectl sent {content_type!r} for {args}"
    return path, body


_DEFAULT = "/api/v1/namespaces/default"
_APPS, _BATCH = "/apis/apps/v1/namespaces/default", "/apis/batch/v1/namespaces/default"
CREATE_COMMANDS = [
    (["create", "namespace", "x"], "/api/v1/namespaces"),
    (["create", "configmap", "c", "--from-literal=a=b", "--from-literal=empty="], f"{_DEFAULT}/configmaps"),
    (["create", "deployment", "d", "--image=img", "--replicas=2", "--port=8080"], f"{_APPS}/deployments"),
    (["create", "deployment", "w", "--image=wasm:1", "--", "/app.wasm", "arg 1"], f"{_APPS}/deployments"),
    (["create", "secret", "generic", "s", "--from-literal=k=v", "--type=Opaque"], f"{_DEFAULT}/secrets"),
    (["create", "serviceaccount", "sa"], f"{_DEFAULT}/serviceaccounts"),
    (["create", "job", "j", "--image=i", "--", "echo", "hi"], f"{_BATCH}/jobs"),
    (["create", "cronjob", "cj", "--image=i", "--schedule=*/5 * * * *", "--", "date"], f"{_BATCH}/cronjobs"),
    (["create", "role", "r", "--verb=get,list,watch", "--resource=pods,services"],
     "/apis/rbac.authorization.k8s.io/v1/namespaces/default/roles"),
    (["create", "rolebinding", "rb", "--role=r", "--user=alice", "--group=devs", "--serviceaccount=default:sa"],
     "/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings"),
    (["create", "clusterrole", "cr", "--verb=get", "--resource=nodes", "--resource-name=n1"],
     "/apis/rbac.authorization.k8s.io/v1/clusterroles"),
    (["create", "clusterrolebinding", "crb", "--clusterrole=cr", "--serviceaccount=default:sa"],
     "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings"),
    (["create", "service", "clusterip", "svc", "--tcp=80:8080"], "/api/v1/namespaces/default/services"),
    (["create", "quota", "q", "--hard=pods=10,requests.cpu=500m,requests.memory=1Gi"],
     "/api/v1/namespaces/default/resourcequotas"),
    (["create", "service", "nodeport", "np", "--tcp=8080:http", "--node-port=30080"], f"{_DEFAULT}/services"),
]  # fmt: skip


@pytest.mark.parametrize(("args", "path"), CREATE_COMMANDS, ids=[" ".join(c[0][1:3]) for c in CREATE_COMMANDS])
def test_decode_equals_kubectls_own_json(capture: Capture, kubectl, args: list[str], path: str) -> None:
    sent_path, body = _send(capture, kubectl, args)
    assert sent_path == path
    dry_run = kubectl(*_before_dashes(args, "-o", "json", "--dry-run=client"))
    assert dry_run.returncode == 0, dry_run.stderr
    assert protobuf.decode(body) == json.loads(dry_run.stdout)


def test_auth_can_i_sends_a_selfsubjectaccessreview(capture: Capture, kubectl) -> None:
    path, body = _send(capture, kubectl, ["auth", "can-i", "create", "pods"])
    assert path == "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
    review = protobuf.decode(body)
    assert review["kind"] == "SelfSubjectAccessReview"
    assert review["apiVersion"] == "authorization.k8s.io/v1"
    assert review["spec"]["resourceAttributes"] == {"namespace": "default", "verb": "create", "resource": "pods"}
    assert review["status"] == {"allowed": False}  # Go prints the non-omitempty bool


def test_auth_can_i_list_and_whoami(capture: Capture, kubectl) -> None:
    path, body = _send(capture, kubectl, ["auth", "can-i", "--list", "-n", "lab"])
    assert path == "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews"
    rules = protobuf.decode(body)
    assert (rules["kind"], rules["spec"]) == ("SelfSubjectRulesReview", {"namespace": "lab"})
    # non-omitempty fields of an empty status print as Go prints them
    assert rules["status"] == {"resourceRules": None, "nonResourceRules": None, "incomplete": False}
    path, body = _send(capture, kubectl, ["auth", "whoami"])
    assert path == "/apis/authentication.k8s.io/v1/selfsubjectreviews"
    assert protobuf.decode(body) == {"kind": "SelfSubjectReview", "apiVersion": "authentication.k8s.io/v1",
                                     "metadata": {"creationTimestamp": None}, "status": {}}  # fmt: skip


def test_create_token_sends_a_tokenrequest(capture: Capture, kubectl) -> None:
    path, body = _send(capture, kubectl, ["create", "token", "sa", "--duration=10m", "--audience=lab"])
    assert path == "/api/v1/namespaces/default/serviceaccounts/sa/token"
    token = protobuf.decode(body)
    assert token["kind"] == "TokenRequest"
    assert token["spec"]["audiences"] == ["lab"]
    assert token["spec"]["expirationSeconds"] == 600


def test_unknown_kind_is_a_415_with_a_hint(capture: Capture, kubectl) -> None:
    _, body = _send(capture, kubectl, ["create", "namespace", "y"])
    # re-label the captured envelope as a kind without a field table: the typeMeta is
    # the first field, so swap the kind string inside it (same length keeps sizes valid)
    relabelled = body.replace(b"\x12\tNamespace", b"\x12\tIngressXY", 1)
    with pytest.raises(StatusError) as err:
        protobuf.decode(relabelled)
    assert err.value.code == 415
    assert "IngressXY" in err.value.message and "kubectl apply -f" in err.value.message


def test_malformed_bodies_are_400(capture: Capture, kubectl) -> None:
    _, body = _send(capture, kubectl, ["create", "configmap", "trunc", "--from-literal=a=b"])
    for bad in (body[:-3], b"{}", b"k8s\x00\x0a\xff"):
        with pytest.raises(StatusError) as err:
            protobuf.decode(bad)
        assert err.value.code == 400


def test_unknown_field_numbers_are_skipped(capture: Capture, kubectl) -> None:
    _, body = _send(capture, kubectl, ["create", "configmap", "fwd", "--from-literal=a=b"])
    envelope = list(protobuf.fields(body[4:]))
    raw = next(v for n, _, v in envelope if n == 2)
    extended = raw + b"\xf8\x07\x01" + b"\x82\x08\x03new"  # field 127 varint, field 128 bytes
    rebuilt = bytearray(b"k8s\x00")
    for number, _, value in envelope:
        payload = extended if number == 2 else value
        rebuilt += bytes([number << 3 | 2]) + _varint(len(payload)) + payload
    assert protobuf.decode(bytes(rebuilt)) == protobuf.decode(body)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append(n & 0x7F | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def test_field_tables_reference_only_known_types() -> None:
    for name, table in protobuf.MESSAGES.items():
        for number, field in table.items():
            value_type = field.type.split(":")[2] if field.type.startswith("map:") else field.type
            assert value_type in protobuf.MESSAGES or value_type in protobuf._SCALARS, (name, number, field)
    assert set(protobuf.KINDS) <= set(protobuf.MESSAGES)


def test_is_protobuf() -> None:
    assert protobuf.is_protobuf("application/vnd.kubernetes.protobuf")
    assert protobuf.is_protobuf("Application/Vnd.Kubernetes.Protobuf; charset=binary")
    assert not protobuf.is_protobuf("application/json")
    assert not protobuf.is_protobuf(None)
