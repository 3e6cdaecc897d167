"""Diagnosis of the load-balanced lab (notebook 05): the watcher's 403, the load balancer's empty registry, and
backends that do not answer, from the log lines the real programs write (tests/sandbox/test_load_balancer.py and
test_service_watcher.py produce the same lines)."""

from __future__ import annotations

from typing import Any

from labkit.diagnosis import diagnose_pod
from tests.test_diagnose import pod

RUNNING = {"running": {"startedAt": "2026-01-01T10:00:00Z"}}
READY = [{"type": "Ready", "status": "True"}]
FORBIDDEN = (
    "FORBIDDEN: cannot list/watch services cluster-wide: 403 Forbidden: services is forbidden: User "
    '"system:serviceaccount:lab-05:watcher-sa" cannot list resource "services" in API group "" at the cluster '
    "scope. Fix: give the pod's ServiceAccount a ClusterRole ..."
)


def running(logs: str) -> tuple[dict[str, Any], list[dict[str, Any]], str]:
    """A Running, Ready pod (its program retries, it does not crash), no events, and its log."""
    return pod("load-balancer-5d8f7c-abcde", phase="Running", state=RUNNING, conditions=READY), [], logs


def test_the_watchers_403_names_its_service_account_and_the_clusterrole_fix() -> None:
    found = diagnose_pod(
        *running("service-watcher: services labelled llamaedge/target=true -> http://lb\n" + FORBIDDEN)
    )
    assert found.signature == "watcher-forbidden"
    assert "watcher-sa in namespace lab-05" in found.fix and "ClusterRoleBinding" in found.fix
    assert found.evidence == [FORBIDDEN]


def test_kube_rs_words_for_the_same_403_match_too() -> None:
    line = (
        'Error: ApiError: services is forbidden: User "system:serviceaccount:default:watcher-sa" cannot watch '
        'resource "services" in API group "" at the cluster scope: Forbidden (ErrorResponse { status: "Failure" })'
    )
    assert diagnose_pod(*running(line)).signature == "watcher-forbidden"


def test_an_empty_registry_is_told_apart_from_a_dead_backend() -> None:
    logs = "load-balancer listening on 0.0.0.0:8080\nPOST /v1/chat/completions -> - 503 0ms (no backends registered)\n"
    found = diagnose_pod(*running(logs))
    assert found.signature == "lb-no-backends"
    assert "llamaedge/target=true" in found.fix and found.evidence == [logs.splitlines()[1]]


def test_a_registry_filled_later_is_no_longer_a_503_story() -> None:
    logs = (
        "POST /v1/chat/completions -> - 503 0ms (no backends registered)\n"
        "POST /api/register -> - 200 0ms llama-low weight 3 10.43.0.17:8080\n"
        "POST /v1/chat/completions -> llama-low 10.43.0.17:8080 200 812ms\n"
    )
    assert diagnose_pod(*running(logs)).signature is None  # Running, Ready, nothing wrong


def test_a_dead_backend_that_cost_a_retry_is_reported() -> None:
    logs = (
        "POST /v1/chat/completions -> llama-high 10.43.0.20:8080 failed: Connection refused, trying another backend\n"
        "POST /v1/chat/completions -> llama-low 10.43.0.17:8080 200 700ms\n"
    )
    found = diagnose_pod(*running(logs))
    assert found.signature == "lb-backend-unreachable"
    assert found.summary == "a registered backend does not answer" and "retried" in found.cause


def test_every_backend_dead_is_502() -> None:
    logs = (
        "2026-01-01T10:00:00.000000000Z POST /v1/chat/completions -> llama-low 10.43.0.17:8080 failed: connect "
        "timed out, trying another backend\n"
        "2026-01-01T10:00:03.000000000Z POST /v1/chat/completions -> llama-low 10.43.0.17:8080 502 3004ms "
        "(all backends unreachable)\n"
    )
    found = diagnose_pod(*running(logs))
    assert found.signature == "lb-backend-unreachable" and found.summary == "no backend answers the load balancer"
    assert "502" in found.cause
