"""What a diagnosis looks at: a pod, its events and its logs, pre-digested once (:class:`Facts`).

:mod:`labkit.diagnosis` and its row modules (``diagnosis_dns``, ``diagnosis_wasinn``, ``diagnosis_loadbalancer``)
match signatures against these facts.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

#: The log lines a diagnosis quotes when it has nothing sharper to show.
TAIL_LINES = 8


@dataclass
class Facts:
    """Everything a signature looks at, pre-digested once."""

    pod: dict[str, Any]
    events: list[dict[str, Any]]
    logs: str

    @property
    def name(self) -> str:
        return str((self.pod.get("metadata") or {}).get("name", "<pod>"))

    @property
    def statuses(self) -> list[dict[str, Any]]:
        status = self.pod.get("status") or {}
        return [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]

    @property
    def containers(self) -> list[dict[str, Any]]:
        return list((self.pod.get("spec") or {}).get("containers") or [])

    def states(self) -> Iterable[tuple[dict[str, Any], str, dict[str, Any]]]:
        """(container status, state name, state) for current and last states."""
        for s in self.statuses:
            for key in ("state", "lastState"):
                for name, state in (s.get(key) or {}).items():
                    yield s, name, state or {}

    def event_lines(self, *reasons: str) -> list[str]:
        return [
            f"{e.get('type', '')} {e.get('reason', '')}: {e.get('message', '')}".strip()
            for e in self.events
            if not reasons or e.get("reason") in reasons
        ]

    def texts(self) -> list[str]:
        """Every message that may carry a runtime error: events, container state messages, log lines."""
        state_msgs = [
            f"{s.get('name')}: {n} {st.get('reason', '')}: {st.get('message', '')}"
            for s, n, st in self.states()
            if st.get("message")
        ]
        return [*self.event_lines(), *state_msgs, *self.logs.splitlines()]

    def find(self, pattern: str) -> list[str]:
        rx = re.compile(pattern, re.IGNORECASE)
        return [t for t in self.texts() if rx.search(t)]

    def tail(self, n: int = TAIL_LINES) -> list[str]:
        return [f"log: {line}" for line in self.logs.rstrip().splitlines()[-n:]]

    def exit_code(self) -> int | None:
        codes = [st.get("exitCode") for _, name, st in self.states() if name == "terminated"]
        return next((c for c in codes if c is not None), None)

    def waiting_reason(self, *reasons: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
        for s, name, st in self.states():
            if name == "waiting" and st.get("reason") in reasons:
                return s, st
        return None

    def arg0(self) -> str | None:
        for c in self.containers:
            argv = c.get("command") or c.get("args") or []
            if argv:
                return str(argv[0])
        return None
