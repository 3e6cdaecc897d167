"""Resource usage as a node reports it and the metrics API reads it: one JSON file per node.

The kubelet writes ``<home>/node-usage/<node>.json`` each sampling period (atomically); the API
server's metrics API (:mod:`labkit.sandbox.api.metrics`) reads them, as metrics-server scrapes each
kubelet's ``/metrics/resource``. The shared disk stands in for that scrape, as it does for logs
(:mod:`labkit.sandbox.logfiles`).

A sample: ``{"node", "timestamp" (RFC 3339), "window" (seconds), "cpuNanoCores", "memoryBytes",
"pods": [{"namespace", "name", "uid", "timestamp", "window", "containers": [{"name", "cpuNanoCores",
"memoryBytes"}]}]}``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from labkit.fsutil import write_atomic

#: Samples older than this are stale (the node is gone or stopped): metrics-server drops a node it
#: cannot scrape, and the sandbox drops such a file's numbers. Inferred from metrics-server's behaviour.
STALE_AFTER_S = 60.0


def usage_dir(home: Path) -> Path:
    """Where the nodes of the sandbox in *home* write their usage."""
    return Path(home) / "node-usage"


def write_sample(directory: Path, node: str, sample: dict[str, Any]) -> None:
    write_atomic(Path(directory) / f"{node}.json", json.dumps(sample), make_parents=True)


def read_samples(directory: Path) -> list[dict[str, Any]]:
    """Every node's last sample, unless stale (files being replaced or unreadable are skipped)."""
    samples = []
    for path in sorted(Path(directory).glob("*.json")):
        try:
            if time.time() - path.stat().st_mtime > STALE_AFTER_S:
                continue
            sample = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(sample, dict):
            samples.append(sample)
    return samples
