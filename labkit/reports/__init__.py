"""Pod tests as the seed's CI runs them: pod health and service reports, log collection with time markers,
and a run summary. Each report is one dataclass with two renderers: Markdown (``report.to_markdown()``,
``print(report)``; GitHub-flavoured tables for files and CI) and HTML (Jupyter shows it as tables).

Everything goes through the Kubernetes API (no kubectl), so the same calls serve the sandbox and k3s.

>>> from labkit import reports
>>> before = reports.pod_health_report(cluster, "app=demo", namespace="lab-06")          # doctest: +SKIP
>>> reports.service_report(cluster, namespace="lab-06")                                   # doctest: +SKIP
>>> reports.collect_logs(cluster, "app=demo", namespace="lab-06", phase="before",
...                      directory="build/logs")                                          # doctest: +SKIP
>>> run = reports.ReportRun(cluster, namespace="lab-06", target="app=demo",
...                         directory="build/pod-tests")                                  # doctest: +SKIP
"""

from labkit.reports.health import ContainerHealth, PodHealth, PodHealthReport, WarningEvent, pod_health_report
from labkit.reports.logmarkers import LogCollection, PodLogEntry, collect_logs
from labkit.reports.render import Document, Table
from labkit.reports.services import Endpoint, ServiceInfo, ServiceReport, service_report
from labkit.reports.summary import CheckResult, Collected, ReportRun, RunSummary

__all__ = [
    "CheckResult",
    "Collected",
    "ContainerHealth",
    "Document",
    "Endpoint",
    "LogCollection",
    "PodHealth",
    "PodHealthReport",
    "PodLogEntry",
    "ReportRun",
    "RunSummary",
    "ServiceInfo",
    "ServiceReport",
    "Table",
    "WarningEvent",
    "collect_logs",
    "pod_health_report",
    "service_report",
]
