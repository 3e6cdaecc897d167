"""The daemon's kubelet processes: one per sandbox node, started by argv, never imported.

Restart policy: a node process that dies stays dead until someone asks for the nodes again
(``labkit sandbox up``, ``labkit.connect()``, i.e. :func:`labkit.sandbox.client.ensure_running`),
as a k3s agent whose service crashed stays down until it is restarted. Restarting it at once would
hide the failure: the learner who ``kill -9``s a node is meant to see it go NotReady (its Lease
expires, the node lifecycle controller marks it), and a node killed by a runaway wasm pod would
otherwise crash-loop silently.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from labkit.fsutil import write_atomic
from labkit.sandbox.nodes import KubeletConfig
from labkit.sandbox.processes import stop_process

log = logging.getLogger("labkit.sandbox.supervisor")

#: How long a node's runtime restart (SIGHUP) may take before the daemon gives up waiting for its report.
RESTART_REPORT_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 5.0


class KubeletProcesses:
    """Starts, tracks, signals and stops the kubelet processes of one sandbox home."""

    def __init__(self, home: Path, ca: Path, slot: int = 0) -> None:
        self.home, self.ca, self.slot = home, ca, slot
        self.server = ""  # known once the API server listens
        self.directory = home / "kubelets"
        self._processes: dict[str, subprocess.Popen[bytes]] = {}

    def config(self, name: str) -> KubeletConfig:
        node_dir = self.directory / name
        return KubeletConfig(
            node_name=name,
            home=self.home,
            server=self.server,
            token_file=node_dir / "token",
            ca_file=self.ca,
            report_file=node_dir / "runtime.json",
            slot=self.slot,
        )

    def write_credentials(self, name: str, token: str) -> KubeletConfig:
        """The node's own token file (mode 0600, in a 0700 directory), as k3s writes kubelet.kubeconfig."""
        config = self.config(name)
        config.token_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(config.token_file.parent, 0o700)
        write_atomic(config.token_file, token, mode=0o600)
        return config

    def pid(self, name: str) -> int | None:
        """The node's live process id, or None (never started, exited, or killed)."""
        process = self._processes.get(name)
        if process is None or process.poll() is not None:
            return None
        return process.pid

    def ensure(self, tokens: dict[str, str]) -> list[str]:
        """Run exactly the nodes of *tokens* (name → token): start the missing, stop the others; returns started."""
        for name in [n for n in self._processes if n not in tokens]:
            self._stop(name)
        started = []
        for name, token in tokens.items():
            if self.pid(name) is not None:
                continue
            old = self._processes.pop(name, None)
            if old is not None:
                log.warning(
                    "node %s: its kubelet process had exited (code %s); starting it again", name, old.returncode
                )
            config = self.write_credentials(name, token)
            config.report_file.unlink(missing_ok=True)  # a report of an earlier process would mislead a restart
            with open(config.token_file.parent / "kubelet.log", "ab") as out:
                self._processes[name] = subprocess.Popen(
                    config.argv(), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, close_fds=True
                )
            started.append(name)
        return started

    def report(self, name: str) -> dict[str, Any]:
        """The node's last runtime (re)start report, ``{}`` before the first."""
        try:
            loaded = json.loads(self.config(name).report_file.read_text())
        except (OSError, ValueError):
            return {}
        return loaded if isinstance(loaded, dict) else {}

    async def restart_runtime(self, name: str) -> dict[str, Any]:
        """``systemctl restart k3s`` on the node: SIGHUP its kubelet, wait for its report. KeyError: no such process."""
        pid = self.pid(name)
        if pid is None:
            raise KeyError(name)
        deadline = time.monotonic() + RESTART_REPORT_TIMEOUT_S
        while not self.report(name):  # a SIGHUP before the kubelet set its handler would kill it
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.02)
        before = self.report(name).get("restarts", 0)
        os.kill(pid, signal.SIGHUP)
        while time.monotonic() < deadline:
            report = self.report(name)
            if report.get("restarts", 0) > before:
                return report
            if self.pid(name) is None:
                raise KeyError(name)
            await asyncio.sleep(0.02)
        raise TimeoutError(f"node {name} did not report its restart within {RESTART_REPORT_TIMEOUT_S:.0f} s")

    def _stop(self, name: str) -> None:
        stop_process(self._processes.pop(name, None), STOP_TIMEOUT_S)

    def stop_all(self) -> None:
        """SIGTERM every node at once, then wait (and SIGKILL those that do not stop)."""
        for process in self._processes.values():
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for process in self._processes.values():
            try:
                process.wait(max(deadline - time.monotonic(), 0.0))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._processes.clear()
