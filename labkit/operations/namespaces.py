"""A lab's namespace on a cluster: create it, work in it, and leave nothing behind.

:func:`lab` is the ``with`` form; :func:`open_lab` keeps the lab open across notebook cells and closes it
with ``the_lab.close()`` or when the kernel exits. Either way the lab can carry undo steps of its own
(:meth:`Lab.on_close`), such as restoring a node's changed config, which run before its objects go.

>>> with lab(cluster, "01-wasi-demo-app") as l:                       # doctest: +SKIP
...     l.apply([runtime_class(), wasm_deployment("demo", image, command=["/wasi-demo-app.wasm"])])
...     l.wait_for("Deployment", "demo")
...     print(l.logs("deployment/demo", tail=5))
"""

from __future__ import annotations

import atexit
import re
import shlex
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labkit import evidence, reports, resources
from labkit.config import LAB_LABEL, PART_OF_LABEL, PART_OF_VALUE
from labkit.diagnosis import diagnose
from labkit.errors import Diagnosis, LabkitError
from labkit.manifests.checks import dns_label
from labkit.operations.applying import apply
from labkit.operations.deleting import delete, wait_gone
from labkit.operations.describing import Description, describe
from labkit.operations.waiting import wait_for

if TYPE_CHECKING:
    from labkit.cluster import Cluster

_LABEL_VALUE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")


@dataclass
class Lab:
    """One lab's namespace on a cluster; its methods are the module functions with cluster and namespace filled in.

    It also holds the lab's undo steps: :meth:`close` runs them, newest first, and then deletes the lab's
    objects (unless the lab was opened with ``keep=True``).
    """

    name: str
    namespace: str
    cluster: Cluster
    _undo: ExitStack = field(default_factory=ExitStack, init=False, repr=False, compare=False)

    def apply(self, objects_or_yaml: Any) -> list[dict[str, Any]]:
        return apply(self.cluster, objects_or_yaml, lab=self)

    def wait_for(self, kind: str, name: str | None = None, **kw: Any) -> list[dict[str, Any]]:
        return wait_for(self.cluster, kind, name, namespace=kw.pop("namespace", self.namespace), **kw)

    def logs(self, pod_or_selector: str | dict[str, Any], **kw: Any) -> str:
        return evidence.logs(self.cluster, pod_or_selector, namespace=kw.pop("namespace", self.namespace), **kw)

    def events(self, obj_or_name: str | dict[str, Any]) -> list[dict[str, Any]]:
        return evidence.events(self.cluster, obj_or_name, namespace=self.namespace)

    def describe(self, kind: str, name: str) -> Description:
        return describe(self.cluster, kind, name, namespace=self.namespace)

    def pod_health_report(self, target: str | None = None) -> reports.PodHealthReport:
        return reports.pod_health_report(self.cluster, target, namespace=self.namespace)

    def service_report(self, selector: str | None = None) -> reports.ServiceReport:
        return reports.service_report(self.cluster, selector, namespace=self.namespace)

    def collect_logs(self, target: str | None = None, **kw: Any) -> reports.LogCollection:
        """:func:`labkit.reports.collect_logs` in the lab's namespace (*phase* and *directory* by keyword)."""
        return reports.collect_logs(self.cluster, target, namespace=self.namespace, **kw)

    def delete(self, kind: str, name: str, **kw: Any) -> bool:
        """:func:`~labkit.operations.delete`, for what this lab made: anything in its namespace, and outside it
        only objects labelled ``labkit.io/lab=<this lab>``; anything else raises and stays."""
        namespace = kw.pop("namespace", self.namespace)
        self._refuse_foreign(kind, name, namespace)
        return delete(self.cluster, kind, name, namespace=namespace, **kw)

    def _refuse_foreign(self, kind: str, name: str, namespace: str | None) -> None:
        """Raise for an object outside the lab's namespace that lacks the lab's label (k3s's RuntimeClasses...)."""
        res = resources.resource(self.cluster, kind)
        ns = namespace if res.namespaced else None
        if ns == self.namespace:  # the lab's namespace, and everything in it, goes when the lab closes anyway
            return
        live = resources.get_object(self.cluster, res.kind, name, ns)
        if live is not None and ((live.get("metadata") or {}).get("labels") or {}).get(LAB_LABEL) != self.name:
            where = f" in namespace {ns}" if ns else ""
            raise LabkitError(
                f"{res.kind.lower()}/{name}{where} is not labelled {LAB_LABEL}={self.name}: this lab did not create "
                "it (k3s ships some objects, such as its RuntimeClasses), so the lab will not delete it",
                "leave it, or delete it yourself with kubectl if you are sure it is yours",
            )

    def kubectl(self, *args: str, namespaced: bool = True) -> str:
        """The kubectl command a learner on k3s types for this step, then what the real kubectl answers here.

        ``-n <the lab's namespace>`` is added unless *namespaced* is false. Without kubectl on PATH the
        command is shown alone, so a notebook runs the same either way.

        >>> print(the_lab.kubectl("get", "jobs"))                              # doctest: +SKIP
        $ kubectl get jobs -n lab-02
        NAME           STATUS     COMPLETIONS   DURATION   AGE
        compat-smart   Complete   1/1           2s         3s
        """
        full = [*args, "-n", self.namespace] if namespaced else list(args)
        command = "$ " + shlex.join(["kubectl", *full])
        if shutil.which("kubectl") is None:
            return f"{command}\n(kubectl is not installed here: on k3s this is the command to type)"
        done = self.cluster.kubectl(*full, check=False)
        return "\n".join(part for part in (command, done.stdout.rstrip(), done.stderr.rstrip()) if part)

    def diagnose(self, pod_or_name: str | dict[str, Any]) -> Diagnosis:
        return diagnose(self.cluster, pod_or_name, namespace=self.namespace)

    @cached_property
    def workdir(self) -> Path:
        """A scratch directory for this run's files (image archives, built modules); removed on close."""
        path = Path(tempfile.mkdtemp(prefix=f"labkit-{self.name}-"))
        self.on_close(shutil.rmtree, path, ignore_errors=True)
        return path

    def on_close(self, undo: Callable[..., object], /, *args: Any, **kwargs: Any) -> Callable[[], None]:
        """Run ``undo(*args, **kwargs)`` when the lab closes (also after a failed step, or at the kernel's exit).

        Steps registered later run first, all before the lab's objects are deleted. Returns the step, to run it
        earlier by hand; it runs at most once.

        >>> restore_node = the_lab.on_close(host.restore, backup, cluster)   # doctest: +SKIP
        >>> restore_node()      # restored now; closing the lab will not restore it again   # doctest: +SKIP
        """
        done = False

        def once() -> None:
            nonlocal done
            if not done:
                done = True  # a failed undo is not retried: half of it may have happened
                undo(*args, **kwargs)

        self._undo.callback(once)
        return once

    def close(self) -> None:
        """Run the undo steps, newest first, then delete the lab's objects; closing again does nothing."""
        self._undo.close()

    def close_after(self, failure: BaseException) -> None:
        """:meth:`close` after *failure*; a failure to close rides along on *failure* as a note, not lost."""
        try:
            self.close()
        except Exception as e:  # noqa: BLE001 - the step's error is the one to raise; this one rides along
            failure.add_note(f"labkit: closing lab {self.name!r} also failed: {e}")

    @contextmanager
    def undo_on_failure(self) -> Iterator[None]:
        """Close the lab if the block raises, then let the error through.

        For notebook cells after a change to the node: a failing step must not leave the node changed.

        >>> with the_lab.undo_on_failure():                                  # doctest: +SKIP
        ...     the_lab.wait_for("Job", "compat-smart")
        """
        try:
            yield
        except BaseException as failure:
            self.close_after(failure)
            raise


def cleanup(cluster: Cluster, name: str, *, timeout: float = 120.0) -> list[str]:
    """Delete every object labelled for lab *name* (its namespace and cluster-wide objects) and wait until gone.

    Only what the label selector ``labkit.io/lab=<name>`` lists is deleted, so objects labkit did not create
    (k3s's RuntimeClasses, which ``apply`` never labels) are never touched.

    Returns what was removed, e.g. ``["namespace/lab-01", "runtimeclass/wasmedge"]``.
    """
    refs = cluster.labelled_objects(lab=name)
    for ref in refs:
        cluster.delete_object(ref)
    deadline = time.monotonic() + timeout
    for ref in refs:
        wait_gone(cluster, ref.kind, ref.name, ref.namespace, max(1.0, deadline - time.monotonic()))
    return [f"{r.kind.lower()}/{r.name}" for r in refs]


def _cleanup_or_explain(cluster: Cluster, name: str, timeout: float) -> None:
    """:func:`cleanup`, with the way out when it fails."""
    try:
        cleanup(cluster, name, timeout=timeout)
    except LabkitError as e:
        raise LabkitError(
            f"lab {name!r} ran, but its cleanup failed: {e.problem}",
            f"remove what is left with `labkit clean --lab {name}`",
        ) from e


def _create(cluster: Cluster, name: str, namespace: str | None, keep: bool, timeout: float) -> Lab:
    """The lab's namespace, created afresh (what an unclosed run of the same lab left is deleted first) and
    labelled for cleanup."""
    if not _LABEL_VALUE.match(name):
        raise LabkitError(
            f"lab name {name!r} cannot be a label value",
            "use at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit",
        )
    namespace = dns_label(namespace or f"lab-{name}", "namespace")
    existing = resources.get_object(cluster, "Namespace", namespace, None)
    if existing is not None:
        labels = (existing.get("metadata") or {}).get("labels") or {}
        if labels.get(PART_OF_LABEL) != PART_OF_VALUE:
            raise LabkitError(
                f"namespace {namespace!r} exists and is not a labkit lab namespace; labkit would delete "
                "it on cleanup, so it refuses to use it",
                "pick another namespace=...",
            )
        if (existing.get("metadata") or {}).get("deletionTimestamp"):  # the previous run's cleanup is still going
            wait_gone(cluster, "Namespace", namespace, None, timeout)
        elif labels.get(LAB_LABEL) == name:
            # A run of this lab that never closed (a kernel killed before its exit hook): start clean, as its
            # cells expect, instead of meeting its objects again ("pods \"wasm-0\" already exists").
            _cleanup_or_explain(cluster, name, timeout)
    the_lab = Lab(name, namespace, cluster)
    if not keep:  # registered first, so it runs last: undo steps may still need the namespace
        the_lab.on_close(_cleanup_or_explain, cluster, name, timeout)
    apply(cluster, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}, lab=name)
    return the_lab


@contextmanager
def lab(
    cluster: Cluster, name: str, *, namespace: str | None = None, keep: bool = False, timeout: float = 120.0
) -> Iterator[Lab]:
    """Create the lab's namespace (``lab-<name>`` unless *namespace*), yield a :class:`Lab`, close it on exit.

    Closing deletes everything labelled for this lab (the namespace, and cluster-wide objects such as
    RuntimeClasses applied through it) and waits until it is gone, also when a step failed; ``keep=True``
    leaves it all for inspection (``labkit clean --lab <name>`` removes it later).

    >>> with lab(cluster, "01-wasi-demo-app", namespace="lab-01") as l:    # doctest: +SKIP
    ...     l.apply(runtime_class())
    """
    the_lab = _create(cluster, name, namespace, keep, timeout)
    try:
        yield the_lab
    except BaseException as failure:
        the_lab.close_after(failure)
        raise
    the_lab.close()


def open_lab(
    cluster: Cluster, name: str, *, namespace: str | None = None, keep: bool = False, timeout: float = 120.0
) -> Lab:
    """:func:`lab` for a notebook, whose steps are cells: the lab stays open until ``the_lab.close()``.

    The kernel's exit closes it too, so a notebook that stops at a failing cell leaves nothing behind.

    >>> the_lab = open_lab(cluster, "01-wasi-demo-app", namespace="lab-01")   # doctest: +SKIP
    >>> the_lab.close()                                                      # doctest: +SKIP
    """
    the_lab = _create(cluster, name, namespace, keep, timeout)
    atexit.register(the_lab.close)  # closing twice is harmless: the second close does nothing
    return the_lab
