#!/usr/local/bin/python3
"""labkit's service-watcher: keeps the load balancer's registry equal to the labelled Services of the cluster.

What the seed's Rust watcher does (the seed's watcher/src/main.rs), in Python with the official ``kubernetes``
client: Services labelled ``llamaedge/target=true`` in all namespaces; weight from the annotation
``llamaedge/weight`` (default 1); port = the first Service port; IP = the Service's ClusterIP (kube-proxy spreads
it over the pods, so weights are per Service); name = the Service's name. It registers them with the load
balancer's admin API (``POST /api/register``, ``DELETE /api/unregister/{name}``) and reconciles against
``GET /api/services``: registers what is missing, fixes weight/ip/port, drops what no labelled Service backs.

An informer, not a poller (client-go's reflector): list, then watch from the list's resourceVersion with
``allowWatchBookmarks``; a watch that ends, or whose connection is lost, is resumed from the last resourceVersion
seen, after a back-off (0.5 s doubling to 30 s) when it failed; ``410 Gone`` (history compacted, or an API server
that restarted and lost it) means list again. Every change
wakes the reconciler at once, and it also runs every ``--resync`` seconds (default 30), so a load balancer that
restarted empty is refilled. A ``403`` says which permission is missing and how to grant it (RBAC:
get/list/watch on services, cluster-wide: ``labkit.manifests.service_watcher``).

Options: ``--lb URL`` (env ``LB_URL``, default ``http://load-balancer-service.default.svc.cluster.local:8080``),
``--resync SECONDS``, ``--kubeconfig PATH`` (else the in-cluster config, else ``~/.kube/config``). SIGTERM ends
it with 0. Logs one line per decision on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

LABEL_SELECTOR = "llamaedge/target=true"
WEIGHT_ANNOTATION = "llamaedge/weight"
DEFAULT_LB = "http://load-balancer-service.default.svc.cluster.local:8080"
WATCH_SECONDS = 60
BACKOFF_START, BACKOFF_MAX = 0.5, 30.0
RBAC_FIX = (
    "give the pod's ServiceAccount a ClusterRole with verbs get, list, watch on resources services "
    '(apiGroups [""]) and a ClusterRoleBinding to it (labkit.manifests.service_watcher builds both)'
)


def say(line: str) -> None:
    """One line to stdout, at once: the container's log."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


@dataclass(frozen=True)
class Target:
    """One backend as the load balancer's registry holds it (the seed's ``{name, weight, ip, port}``)."""

    name: str
    weight: int
    ip: str
    port: int

    def describe(self) -> str:
        return f"{self.name} weight {self.weight} {self.ip}:{self.port}"


def target_of(service: Any, log: Callable[[str], None] = say) -> Target | None:
    """The backend a Service stands for, or None (no ClusterIP, no port). A bad weight annotation counts as 1."""
    meta, spec = service.metadata, service.spec
    ip, ports = getattr(spec, "cluster_ip", None), getattr(spec, "ports", None) or []
    where = f"{meta.namespace}/{meta.name}"
    if not ip or ip == "None" or not ports:
        log(f"skipping service {where}: {'no ports' if ip and ip != 'None' else 'headless (no ClusterIP)'}")
        return None
    raw = (meta.annotations or {}).get(WEIGHT_ANNOTATION, "1")
    try:
        weight = int(raw)
        if not 0 <= weight <= 0xFFFFFFFF:
            raise ValueError(raw)
    except ValueError:
        log(f"service {where}: annotation {WEIGHT_ANNOTATION}={raw!r} is no integer 0..4294967295, using 1")
        weight = 1
    return Target(str(meta.name), weight, str(ip), int(ports[0].port))


class LoadBalancer:
    """The load balancer's admin API (reference 9.1)."""

    def __init__(self, url: str, timeout: float = 5.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"the load balancer's URL must be http(s)://..., got {url!r}")
        self.url, self.timeout = url.rstrip("/"), timeout

    def _call(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        request = urllib.request.Request(self.url + path, data=body, method=method)  # noqa: S310 (checked: http)
        if body is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as reply:  # noqa: S310
                return int(reply.status), reply.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()

    def services(self) -> dict[str, Target]:
        status, body = self._call("GET", "/api/services")
        if status != 200:
            raise OSError(f"GET /api/services answered {status}")
        return {s["name"]: Target(s["name"], int(s["weight"]), s["ip"], int(s["port"])) for s in json.loads(body)}

    def register(self, target: Target) -> None:
        body = json.dumps({"name": target.name, "weight": target.weight, "ip": target.ip, "port": target.port})
        status, text = self._call("POST", "/api/register", body.encode())
        if status != 200:
            raise OSError(f"POST /api/register {target.name} answered {status} {text.decode(errors='replace')}")

    def unregister(self, name: str) -> None:
        status, _ = self._call("DELETE", "/api/unregister/" + urllib.parse.quote(name, safe=""))
        if status not in (200, 404):  # 404: already gone, which is what we wanted
            raise OSError(f"DELETE /api/unregister/{name} answered {status}")


class Gone(Exception):
    """The watch's resourceVersion is no longer in the server's history: list again."""


def api_problem(err: Exception) -> str:
    """An ApiException as one line: its status and the server's message."""
    body = getattr(err, "body", None)
    try:
        message = json.loads(body)["message"] if body else ""
    except (ValueError, KeyError, TypeError):
        message = ""
    return f"{getattr(err, 'status', '')} {getattr(err, 'reason', '')}: {message or err}".strip()


class ServiceWatcher:
    """List + watch (the informer) in one thread, reconcile against the load balancer in another."""

    def __init__(self, core: Any, lb: LoadBalancer, resync: float = 30.0, log: Callable[[str], None] = say) -> None:
        self.core, self.lb, self.resync, self.log = core, lb, resync, log
        self.cache: dict[tuple[str, str], Target | None] = {}
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.synced = threading.Event()  # the first list arrived: until then nothing may be dropped
        self.relists = 0
        self.version: str | None = None  # the last resourceVersion seen; None: list first

    # ------------------------------------------------------------ the informer

    def _set(self, service: Any) -> None:
        key = (str(service.metadata.namespace), str(service.metadata.name))
        with self.lock:
            self.cache[key] = target_of(service, self.log)
        self.wake.set()

    def list_services(self) -> str:
        """List the labelled Services into the cache (a fresh start); returns the list's resourceVersion."""
        listed = self.core.list_service_for_all_namespaces(label_selector=LABEL_SELECTOR)
        with self.lock:
            self.cache = {}
        for service in listed.items:
            self._set(service)
        self.relists += 1
        version = str(listed.metadata.resource_version)
        self.log(f"listed {len(listed.items)} labelled services (resourceVersion {version})")
        self.synced.set()
        self.wake.set()
        return version

    def list_and_watch(self) -> None:
        """List unless a resourceVersion is known, then watch from it, resuming each watch where the last one
        ended. Raises what ends it: ApiException (410: list again), or a connection error (watch again)."""
        from kubernetes import watch  # the client library only where it is needed (the module imports without it)

        if self.version is None:
            self.version = self.list_services()
        while not self.stopping.is_set():
            stream = watch.Watch()  # type: ignore[no-untyped-call]
            for event in stream.stream(  # type: ignore[no-untyped-call]
                self.core.list_service_for_all_namespaces,
                label_selector=LABEL_SELECTOR,
                resource_version=self.version,
                allow_watch_bookmarks=True,
                timeout_seconds=WATCH_SECONDS,
                _request_timeout=WATCH_SECONDS + 10,
            ):
                kind, service = event["type"], event["object"]
                if kind != "BOOKMARK":
                    where = f"{service.metadata.namespace}/{service.metadata.name}"
                    self.log(f"{kind.lower()} service {where}")
                    if kind == "DELETED":
                        with self.lock:
                            self.cache.pop((str(service.metadata.namespace), str(service.metadata.name)), None)
                        self.wake.set()
                    else:
                        self._set(service)
                self.version = stream.resource_version or self.version
                if self.stopping.is_set():
                    stream.stop()  # type: ignore[no-untyped-call]

    def run_informer(self) -> None:
        """list_and_watch forever: relist on 410, back off on errors, say clearly what a 403 means."""
        from kubernetes.client.exceptions import ApiException

        delay = BACKOFF_START
        while not self.stopping.is_set():
            try:
                self.list_and_watch()
            except ApiException as err:
                if err.status == 410:
                    self.log(f"watch expired (410 Gone: {api_problem(err)}): listing again")
                    self.version, delay = None, BACKOFF_START
                    continue
                if err.status == 403:
                    self.log(f"FORBIDDEN: cannot list/watch services cluster-wide: {api_problem(err)}. Fix: {RBAC_FIX}")
                else:
                    self.log(f"API error {api_problem(err)}: retrying in {delay:.1f}s")
            except Exception as err:  # noqa: BLE001 - connection loss, API server restart, timeouts: watch again
                self.log(f"lost the API server ({type(err).__name__}: {err}): watching again in {delay:.1f}s")
            else:
                continue
            self.stopping.wait(delay)
            delay = min(delay * 2, BACKOFF_MAX)

    # ------------------------------------------------------------ the reconciler

    def desired(self) -> dict[str, Target]:
        """The registry the cluster asks for: one entry per labelled Service (a name taken twice: the first)."""
        wanted: dict[str, Target] = {}
        with self.lock:
            items = sorted(self.cache.items())
        for (namespace, _), target in items:
            if target is None:
                continue
            if target.name in wanted:
                self.log(f"service {namespace}/{target.name}: the name is registered from another namespace already")
                continue
            wanted[target.name] = target
        return wanted

    def reconcile(self) -> list[str]:
        """Make the load balancer's registry the desired one; returns what was done."""
        wanted, current = self.desired(), self.lb.services()
        done = []
        for name, target in wanted.items():
            if current.get(name) != target:
                self.lb.register(target)
                was = current.get(name)
                done.append(f"registered {target.describe()}" + (f" (was {was.describe()})" if was else ""))
        for name in current.keys() - wanted.keys():
            self.lb.unregister(name)
            done.append(f"unregistered {name} (no labelled service)")
        for line in done:
            self.log(line)
        return done

    def run_reconciler(self) -> None:
        delay = BACKOFF_START
        failing = False
        while not self.stopping.is_set():
            self.wake.wait(delay if failing else self.resync)
            self.wake.clear()
            if self.stopping.is_set() or not self.synced.is_set():
                continue
            try:
                self.reconcile()
            except (OSError, ValueError, KeyError, TypeError) as err:  # URLError is an OSError
                self.log(f"load balancer at {self.lb.url} unreachable or confused ({err}): retrying in {delay:.1f}s")
                failing, delay = True, min(delay * 2, BACKOFF_MAX)
            else:
                if failing:
                    self.log(f"load balancer at {self.lb.url} reachable again")
                failing, delay = False, BACKOFF_START

    def start(self) -> ServiceWatcher:
        for target in (self.run_informer, self.run_reconciler):
            threading.Thread(target=target, name=target.__name__, daemon=True).start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()


def core_api(kubeconfig: str | None = None) -> Any:
    """CoreV1Api from --kubeconfig, else the in-cluster config (a pod), else the default kubeconfig."""
    from kubernetes import client, config

    if kubeconfig:
        config.load_kube_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]
    else:
        try:
            config.load_incluster_config()  # type: ignore[no-untyped-call]
        except config.ConfigException:
            config.load_kube_config()  # type: ignore[no-untyped-call]
    return client.CoreV1Api()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="service-watcher", description="registers labelled Services with the LB")
    parser.add_argument("--lb", default=os.environ.get("LB_URL", DEFAULT_LB), help="the load balancer's base URL")
    parser.add_argument("--resync", type=float, default=30.0, metavar="SECONDS")
    parser.add_argument("--kubeconfig", default=None)
    args = parser.parse_args(argv)
    watcher = ServiceWatcher(core_api(args.kubeconfig), LoadBalancer(args.lb), args.resync)
    signal.signal(signal.SIGTERM, lambda *_: watcher.stop())
    say(f"service-watcher: services labelled {LABEL_SELECTOR} -> {args.lb} (resync every {args.resync:g}s)")
    watcher.start()
    while not watcher.stopping.wait(1.0):
        pass
    time.sleep(0.1)
    say("service-watcher stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
