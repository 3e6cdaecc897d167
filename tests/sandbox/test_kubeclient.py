"""The kubelets' API client against the real sandbox API server: requests, errors, watches, events, node RBAC."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

from labkit.sandbox.api.auth import TokenAuthority, node_user
from labkit.sandbox.kubeclient.events import EventRecorder
from labkit.sandbox.kubeclient.https import ApiError, KubeClient, resource_path
from labkit.sandbox.kubeclient.informer import Informer

if TYPE_CHECKING:
    from labkit.sandbox import client as daemon

T = TypeVar("T")


def run(work: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(work)


def admin(info: daemon.SandboxInfo) -> KubeClient:
    root = info.kubeconfig.parent
    return KubeClient(info.server, (root / "admin-token").read_text().strip(), root / "ca.crt")


def node_client(info: daemon.SandboxInfo, node: str = "labkit-server-0") -> KubeClient:
    root = info.kubeconfig.parent
    token = root / "kubelets" / node / "token"
    assert token.stat().st_mode & 0o777 == 0o600 and token.parent.stat().st_mode & 0o777 == 0o700
    return KubeClient(info.server, token.read_text().strip(), root / "ca.crt")


def test_requests_and_the_status_of_a_refusal(sandbox: daemon.SandboxInfo, namespace: str) -> None:
    async def scenario() -> None:
        api = admin(sandbox)
        try:
            path = resource_path("v1", "configmaps", namespace)
            await api.create(path, {"metadata": {"name": "cfg"}, "data": {"a": "1"}})
            patched = await api.patch(f"{path}/cfg", {"data": {"b": "2"}})
            assert patched["data"] == {"a": "1", "b": "2"}
            await api.delete(f"{path}/cfg")
            with pytest.raises(ApiError) as refused:
                await api.get(f"{path}/cfg")
            assert refused.value.code == 404 and refused.value.status["reason"] == "NotFound"
        finally:
            await api.close()

    run(scenario())


def test_an_informer_lists_watches_and_sees_deletions(sandbox: daemon.SandboxInfo, namespace: str) -> None:
    async def scenario() -> list[tuple[str, str]]:
        api = admin(sandbox)
        path = resource_path("v1", "configmaps", namespace)
        await api.create(path, {"metadata": {"name": "before"}})
        informer = Informer(api, path, {"fieldSelector": "metadata.name!=kube-root-ca.crt"})
        seen: list[tuple[str, str]] = []
        informer.handlers.append(lambda kind, obj: seen.append((kind, obj["metadata"]["name"])))
        task = asyncio.ensure_future(informer.run())
        try:
            await asyncio.wait_for(informer.synced.wait(), 10)
            await api.create(path, {"metadata": {"name": "after"}})
            await api.delete(f"{path}/before")
            for _ in range(200):
                if ("DELETED", "before") in seen:
                    break
                await asyncio.sleep(0.02)
            assert informer.get(namespace, "after") is not None and informer.get(namespace, "before") is None
        finally:
            task.cancel()
            await api.close()
        return seen

    seen = run(scenario())
    assert seen[0] == ("ADDED", "before") and ("ADDED", "after") in seen and ("DELETED", "before") in seen


def test_a_repeated_event_is_counted_not_repeated(sandbox: daemon.SandboxInfo, namespace: str) -> None:
    async def scenario() -> list[dict[str, Any]]:
        api = admin(sandbox)
        try:
            obj = await api.create(resource_path("v1", "configmaps", namespace), {"metadata": {"name": "subject"}})
            obj.update(kind="ConfigMap", apiVersion="v1")
            recorder = EventRecorder(api, "test-component", "test-host")
            recorder.record(obj, "Normal", "Checked", "looked at it")
            await recorder.flush(obj["metadata"]["uid"])
            recorder.record(obj, "Normal", "Checked", "looked at it")
            await recorder.flush(obj["metadata"]["uid"])
            listed = await api.get(resource_path("v1", "events", namespace))
            return [e for e in listed["items"] if e["involvedObject"]["name"] == "subject"]
        finally:
            await api.close()

    events = run(scenario())
    assert len(events) == 1 and events[0]["count"] == 2 and events[0]["source"]["component"] == "test-component"


def test_node_credentials_are_a_kubelets_not_an_admins(sandbox: daemon.SandboxInfo, namespace: str) -> None:
    async def scenario() -> None:
        node = node_client(sandbox)
        try:
            pods = await node.get(resource_path("v1", "pods"), {"fieldSelector": "spec.nodeName=labkit-server-0"})
            assert pods["kind"] == "PodList"
            lease = await node.get(
                resource_path("coordination.k8s.io/v1", "leases", "kube-node-lease", "labkit-server-0")
            )
            assert lease["spec"]["holderIdentity"] == "labkit-server-0"
            with pytest.raises(ApiError) as refused:
                await node.create(resource_path("apps/v1", "deployments", namespace), {"metadata": {"name": "x"}})
            assert refused.value.code == 403
        finally:
            await node.close()

    run(scenario())


def test_a_forged_node_token_is_refused(sandbox: daemon.SandboxInfo, tmp_path: Path) -> None:
    forged = tmp_path / "token"
    real = (sandbox.kubeconfig.parent / "kubelets" / "labkit-server-0" / "token").read_text().strip()
    prefix, payload, signature = real.split(".")
    forged.write_text(f"{prefix}.{payload}.{'0' * len(signature)}")

    async def scenario() -> None:
        api = KubeClient(sandbox.server, forged.read_text(), sandbox.kubeconfig.parent / "ca.crt")
        try:
            with pytest.raises(ApiError) as refused:
                await api.get(resource_path("v1", "pods"))
            assert refused.value.code == 401
        finally:
            await api.close()

    run(scenario())


def test_a_remembered_node_token_lets_in_that_token_only() -> None:
    """The API server remembers verified node tokens; forgeries next to a remembered one still fail."""
    authority = TokenAuthority(b"k" * 32, "admin-token")
    token = authority.issue_node("labkit-agent-0")

    def no_accounts(ns: str, name: str, uid: str) -> bool:
        return False

    assert authority.authenticate(token, no_accounts) == node_user("labkit-agent-0")
    assert authority.authenticate(token, no_accounts) == node_user("labkit-agent-0")  # now from memory
    prefix, payload, signature = token.split(".")
    other_node = TokenAuthority(b"k" * 32, "x").issue_node("labkit-server-0").split(".")[1]
    for forged in (
        f"{prefix}.{payload}.{signature[:-1]}0" if signature[-1] != "0" else f"{prefix}.{payload}.{signature[:-1]}1",
        f"{prefix}.{other_node}.{signature}",  # another node's name under this node's signature
        TokenAuthority(b"j" * 32, "x").issue_node("labkit-agent-0"),  # signed with another key
        token + " ",
    ):
        assert authority.authenticate(forged, no_accounts) is None, forged
