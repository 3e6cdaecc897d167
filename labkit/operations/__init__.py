"""Cluster operations for the labs: apply, wait, describe, show, delete, and the lab's namespace.

Everything goes through the official ``kubernetes`` client (its DynamicClient, so any served kind works),
on the sandbox and on a real cluster alike. One module per concern: :mod:`~labkit.operations.applying`,
:mod:`~labkit.operations.waiting`, :mod:`~labkit.operations.describing`, :mod:`~labkit.operations.deleting`,
:mod:`~labkit.operations.namespaces`; events and logs are :mod:`labkit.evidence`.
"""

from labkit.evidence import diagnosis_inputs, events, logs
from labkit.operations.applying import apply
from labkit.operations.deleting import delete
from labkit.operations.describing import Description, ShowYaml, describe, show
from labkit.operations.namespaces import Lab, cleanup, lab, open_lab
from labkit.operations.waiting import wait_for

__all__ = [
    "Description",
    "Lab",
    "ShowYaml",
    "apply",
    "cleanup",
    "delete",
    "describe",
    "diagnosis_inputs",
    "events",
    "lab",
    "logs",
    "open_lab",
    "show",
    "wait_for",
]
