"""One row of a report that checks prerequisites: what ``labkit doctor`` and each notebook's first check print.

>>> Check("kubectl", "fail", "not on PATH", "install kubectl 1.32").failed
True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Status = Literal["ok", "warn", "fail", "skip"]


@dataclass(frozen=True)
class Check:
    """One row of the report."""

    name: str
    status: Status
    detail: str
    fix: str = ""
    required: bool = True

    @property
    def failed(self) -> bool:
        """A required check that failed: this makes ``labkit doctor`` exit non-zero."""
        return self.status == "fail" and self.required
