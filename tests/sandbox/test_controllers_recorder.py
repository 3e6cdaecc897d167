"""The controllers' EventRecorder: Events through the API, repeats counted, refusals dropped."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from labkit.sandbox.api.apicore import ApiCore
from labkit.sandbox.api.registry import RESOURCES
from labkit.sandbox.api.store import Store
from labkit.sandbox.controllers.recorder import EVENTS, EventRecorder

NAMESPACES = RESOURCES.served("", "namespaces")
CONFIGMAPS = RESOURCES.served("", "configmaps")


@pytest.fixture
def core(tmp_path: Path) -> Iterator[ApiCore]:
    core = ApiCore(Store(tmp_path / "state.db"))
    core.create(NAMESPACES, None, {"metadata": {"name": "lab"}})
    yield core
    core.store.close()


def test_a_repeated_event_bumps_the_count_of_the_first(core: ApiCore) -> None:
    cm, _ = core.create(CONFIGMAPS, "lab", {"metadata": {"name": "settings"}})
    recorder = EventRecorder(core, "test-controller")
    for _ in range(3):
        recorder.event(cm, "Normal", "Synced", "all good")
    recorder.event(cm, "Warning", "Broken", "not good")
    events = {e["reason"]: e for e in core.list(EVENTS, "lab")["items"]}
    assert sorted(events) == ["Broken", "Synced"]
    synced = events["Synced"]
    assert synced["count"] == 3 and synced["type"] == "Normal" and synced["message"] == "all good"
    assert synced["source"] == {"component": "test-controller"} and synced["reportingComponent"] == "test-controller"
    assert synced["involvedObject"]["uid"] == cm["metadata"]["uid"]
    assert synced["involvedObject"]["kind"] == "ConfigMap"
    assert synced["metadata"]["name"].startswith("settings.")


def test_an_event_deleted_meanwhile_is_recorded_afresh(core: ApiCore) -> None:
    cm, _ = core.create(CONFIGMAPS, "lab", {"metadata": {"name": "settings"}})
    recorder = EventRecorder(core, "test-controller")
    recorder.event(cm, "Normal", "Synced", "all good")
    (first,) = core.list(EVENTS, "lab")["items"]
    core.delete(EVENTS, "lab", first["metadata"]["name"])
    recorder.event(cm, "Normal", "Synced", "all good")
    (second,) = core.list(EVENTS, "lab")["items"]
    assert second["count"] == 1 and second["metadata"]["name"] != first["metadata"]["name"]


def test_an_event_in_a_terminating_namespace_is_dropped_without_failing(core: ApiCore) -> None:
    core.create(NAMESPACES, None, {"metadata": {"name": "going", "finalizers": ["test/hold"]}})
    cm, _ = core.create(CONFIGMAPS, "going", {"metadata": {"name": "settings", "finalizers": ["test/hold"]}})
    core.delete(NAMESPACES, None, "going")
    assert core.get(NAMESPACES, None, "going")["metadata"].get("deletionTimestamp")
    EventRecorder(core, "test-controller").event(cm, "Normal", "Synced", "all good")
    assert core.list(EVENTS, "going")["items"] == []
