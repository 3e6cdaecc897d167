"""What a node's containers really use, sampled as the kubelet's resource metrics endpoint reports it.

Per running wasm container: CPU is the CPU clock of the thread the guest runs on (the container's
own work, measured by the kernel), memory is the guest's linear memory (what wasmtime allocated for
the module's store). Per native container: the CPU time and resident memory of its process group.
Per node: the node process's CPU time and resident memory. CPU becomes a rate (nanocores) over the
window between two samples, as metrics-server turns the kubelet's cumulative counters into usage;
a container needs two samples before it is reported.
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labkit.sandbox.usagefiles import write_sample
from labkit.timefmt import format_rfc3339

if TYPE_CHECKING:
    from labkit.sandbox.kubelet.pod_workers import PodWorker

log = logging.getLogger("labkit.sandbox.kubelet.usage")

#: metrics-server scrapes every 15 s by default (--metric-resolution); a sandbox node samples every 5 s
#: so a learner sees a new pod in ``kubectl top`` sooner.
SAMPLE_PERIOD_S = 5.0


def thread_cpu_seconds(thread_id: int | None) -> float | None:
    """CPU seconds the pthread *thread_id* has used, or None when it is gone."""
    if thread_id is None:
        return None
    try:
        return time.clock_gettime(time.pthread_getcpuclockid(thread_id))
    except (OSError, ProcessLookupError):
        return None


def _cpu_seconds(process: Any) -> float | None:
    """A container's CPU seconds: a wasm guest's thread clock, or a native container's process group."""
    if process.thread_id is not None:
        return thread_cpu_seconds(process.thread_id)
    own = getattr(process, "cpu_seconds", None)
    return own() if own is not None else None


def process_usage() -> tuple[float, int]:
    """This node process's CPU seconds (all threads, user and system) and resident bytes."""
    times = os.times()
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        rss = pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):  # no procfs: the peak is the best the kernel tells
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return times.user + times.system, rss


@dataclass
class _Point:
    cpu: float
    at: float


class UsageSampler:
    """Turns cumulative CPU counters into rates between consecutive samples."""

    def __init__(self, node: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.node, self.clock = node, clock
        self._last: dict[tuple[str, ...], _Point] = {}

    def _rate(
        self, key: tuple[str, ...], cpu: float, now: float, seen: dict[tuple[str, ...], _Point]
    ) -> tuple[int, float] | None:
        seen[key] = _Point(cpu, now)
        before = self._last.get(key)
        if before is None or now <= before.at or cpu < before.cpu:
            return None
        window = now - before.at
        return int((cpu - before.cpu) / window * 1e9), window

    def sample(self, workers: Mapping[str, PodWorker]) -> dict[str, Any]:
        now, stamp = self.clock(), format_rfc3339()
        seen: dict[tuple[str, ...], _Point] = {}
        pods = []
        for uid, worker in list(workers.items()):
            containers = []
            window = 0.0
            for c in worker.containers:
                process = c.process
                cpu = _cpu_seconds(process) if process is not None else None
                if process is None or cpu is None:
                    continue
                rate = self._rate((uid, c.name, str(c.restart_count)), cpu, now, seen)
                if rate is None:
                    continue
                containers.append({"name": c.name, "cpuNanoCores": rate[0], "memoryBytes": process.memory_bytes})
                window = rate[1]
            if containers:
                pods.append(
                    {
                        "namespace": worker.ns,
                        "name": worker.name,
                        "uid": uid,
                        "window": window,
                        "containers": containers,
                    }
                )
        cpu, rss = process_usage()
        node_rate = self._rate(("node",), cpu, now, seen)
        self._last = seen
        return {
            "node": self.node,
            "timestamp": stamp,
            "window": node_rate[1] if node_rate else 0.0,
            "cpuNanoCores": node_rate[0] if node_rate else None,
            "memoryBytes": rss,
            "pods": pods,
        }


async def run_usage_reporter(node: str, workers: Mapping[str, PodWorker], directory: Path) -> None:
    """Sample and write the node's usage every :data:`SAMPLE_PERIOD_S` until cancelled."""
    sampler = UsageSampler(node)
    while True:
        try:
            write_sample(directory, node, sampler.sample(workers))
        except OSError as err:  # a full disk must not stop the kubelet; the next round tries again
            log.warning("node %s: cannot write its usage: %s", node, err)
        await asyncio.sleep(SAMPLE_PERIOD_S)
