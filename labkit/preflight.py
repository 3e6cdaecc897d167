"""``labkit doctor``: is this machine and cluster ready for the labs?

Each row is a :class:`Check` with a status and, when it is not ``ok``, the fix.

>>> report = doctor()                  # doctest: +SKIP
>>> print(report.table())              # doctest: +SKIP
>>> report.ok                          # doctest: +SKIP
True
"""

from __future__ import annotations

import html
import importlib.metadata
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labkit import config
from labkit.checks import Check as Check
from labkit.checks import Status as Status
from labkit.errors import LabkitError, PrerequisiteMissing
from labkit.sandbox.netmap import host_port, is_cluster_address, plan, slot_of

if TYPE_CHECKING:
    from labkit.cluster import Cluster

# The kubernetes client takes seconds to import, so labkit.cluster is imported where a cluster is
# needed: `import labkit` and `labkit --help` stay fast.


K3S_CONTAINERD_CONFIG = Path("/var/lib/rancher/k3s/agent/etc/containerd/config.toml")
SHIM = "containerd-shim-wasmedge-v1"
#: The RuntimeClass handlers the labs' pods name (the profiles' runtime_handler).
LAB_HANDLERS = frozenset({"wasmedge"})
WASI_NN_PLUGIN = "libwasmedgePluginWasiNN.so"
SANDBOX_SKIP = "sandbox: simulated node"
SANDBOX_BANNER = (
    "sandbox backend: an embedded Kubernetes-compatible API server with simulated nodes. Pods' wasm "
    "runs in wasmtime with WasmEdge-compatible host functions, not in the runwasi shim, crun or "
    "WasmEdge; Services and DNS are real sockets on loopback addresses (see the cluster DNS row); "
    "host rows are skipped. Use --backend kubeconfig on a k3s host to check the real thing."
)


@dataclass
class DoctorReport:
    backend: str
    checks: list[Check]
    banner: str = ""
    server: str = ""

    @property
    def ok(self) -> bool:
        return not self.failures()

    def failures(self) -> list[Check]:
        """The required checks that failed."""
        return [c for c in self.checks if c.failed]

    def __getitem__(self, name: str) -> Check:
        """The row named *name*, e.g. ``report["cluster"]``; ``KeyError`` lists the rows there are."""
        found = next((c for c in self.checks if c.name == name), None)
        if found is None:  # a bare next() would leak StopIteration, which generators silently swallow
            raise KeyError(f"no check named {name!r}; the report has: {', '.join(c.name for c in self.checks)}")
        return found

    def require(self) -> DoctorReport:
        """This report, if no required check failed; else :class:`~labkit.errors.PrerequisiteMissing`
        with the first failed check's detail and fix."""
        failed = self.failures()
        if failed:
            raise PrerequisiteMissing(f"{failed[0].name}: {failed[0].detail}", failed[0].fix or None)
        return self

    def table(self) -> str:
        """A plain-text table: check, status, detail (and the fix under a row that is not ok)."""
        width = max(len(c.name) for c in self.checks)
        lines = [self.banner] if self.banner else []
        lines.append(f"{'check'.ljust(width)}  status  detail")
        for c in self.checks:
            lines.append(f"{c.name.ljust(width)}  {c.status.ljust(6)}  {c.detail}")
            if c.fix and c.status in ("fail", "warn"):
                lines.append(f"{''.ljust(width)}  {'':6}  fix: {c.fix}")
        lines.append(
            "ready for the labs" if self.ok else f"NOT ready: {', '.join(c.name for c in self.failures())} failed"
        )
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "ok": self.ok,
            "banner": self.banner,
            "server": self.server,
            "checks": [asdict(c) for c in self.checks],
        }

    def _repr_html_(self) -> str:
        colour = {"ok": "#1a7f37", "warn": "#9a6700", "fail": "#cf222e", "skip": "#6e7781"}
        rows = "".join(
            f"<tr><td>{html.escape(c.name)}</td><td style='color:{colour[c.status]};font-weight:bold'>{c.status}</td>"
            f"<td>{html.escape(c.detail)}</td>"
            f"<td>{html.escape(c.fix if c.status in ('fail', 'warn') else '')}</td></tr>"
            for c in self.checks
        )
        banner = f"<p><em>{html.escape(self.banner)}</em></p>" if self.banner else ""
        verdict = "ready for the labs" if self.ok else "NOT ready: " + ", ".join(c.name for c in self.failures())
        return (
            f"{banner}<table><tr><th>check</th><th>status</th><th>detail</th><th>fix</th></tr>{rows}</table>"
            f"<p><strong>{html.escape(verdict)}</strong></p>"
        )


def _run(*cmd: str, timeout: float = 20.0) -> subprocess.CompletedProcess[str] | None:
    """Run a probe command; ``None`` when it is not installed or hangs."""
    if shutil.which(cmd[0]) is None:
        return None
    try:
        return subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return None


def required_distributions() -> list[str]:
    """The runtime requirements of the installed labkit (its metadata, i.e. pyproject.toml)."""
    requirements = importlib.metadata.requires("labkit") or []
    names = (re.match(r"[A-Za-z0-9_.-]+", r) for r in requirements if "extra ==" not in r)
    return [m.group(0) for m in names if m is not None]


def check_packages() -> Check:
    """Every runtime requirement is installed and its modules import; versions listed."""
    name, fix = "python packages", "pip install -e . (in the labkit checkout, inside its virtual environment)"
    try:
        wanted = required_distributions()
    except importlib.metadata.PackageNotFoundError:
        return Check(name, "fail", "labkit is not installed as a package (running from a bare checkout?)", fix)
    modules: dict[str, list[str]] = {}
    for module, dists in importlib.metadata.packages_distributions().items():
        for dist in dists:
            modules.setdefault(_normalise(dist), []).append(module)
    found, missing = [], []
    for dist in wanted:
        try:
            version = importlib.metadata.version(dist)
            for module in modules.get(_normalise(dist), []):
                if not module.startswith("_"):
                    importlib.import_module(module)
            found.append(f"{dist} {version}")
        except (importlib.metadata.PackageNotFoundError, ImportError) as e:
            missing.append(f"{dist} ({type(e).__name__}: {e})")
    if missing:
        return Check(name, "fail", f"missing or broken: {'; '.join(missing)}", fix)
    return Check(name, "ok", ", ".join(found))


def _normalise(dist: str) -> str:
    return re.sub(r"[-_.]+", "-", dist).lower()


def check_kubectl() -> Check:
    done = _run("kubectl", "version", "--client", "-o", "json")
    if done is None:
        # The labs work through the Python client; kubectl is the learner's second view, so warn only.
        return Check("kubectl", "warn", "kubectl not found on PATH", config.KUBECTL_INSTALL_FIX, required=False)
    try:
        version = json.loads(done.stdout)["clientVersion"]["gitVersion"]
    except (ValueError, KeyError):
        return Check(
            "kubectl",
            "warn",
            f"`kubectl version --client` failed: {done.stderr.strip()[:200]}",
            config.KUBECTL_INSTALL_FIX,
            required=False,
        )
    return Check("kubectl", "ok", f"client {version} ({shutil.which('kubectl')})", required=False)


def check_cluster(cluster_or_error: Cluster | LabkitError) -> list[Check]:
    """Reachability, nodes Ready and RuntimeClasses of a connected cluster (or why it is not)."""
    if isinstance(cluster_or_error, LabkitError):
        skip = "skipped: no cluster reachable"
        return [
            Check("cluster", "fail", cluster_or_error.problem, cluster_or_error.fix or ""),
            Check("nodes ready", "skip", skip),
            Check("runtime classes", "skip", skip, required=False),
        ]
    cluster = cluster_or_error
    try:
        version = cluster.ping()
    except LabkitError as e:
        return check_cluster(e)
    from labkit.cluster import api_call

    checks = [Check("cluster", "ok", f"{cluster.backend} context {cluster.context!r}: {version} at {cluster.server}")]
    try:
        nodes = cluster.nodes()
        classes = {
            rc.metadata.name if rc.metadata else "": rc.handler
            for rc in api_call(cluster.node.list_runtime_class, _request_timeout=10).items
        }
    except LabkitError as e:  # answered the version call, then failed: show it, do not crash the report
        return [*checks, Check("nodes ready", "fail", e.problem, e.fix or "")]
    ready = [n["name"] for n in nodes if n["ready"]]
    if not nodes or len(ready) < len(nodes):
        not_ready = [n["name"] for n in nodes if not n["ready"]]
        checks.append(
            Check(
                "nodes ready",
                "fail",
                f"{len(ready)}/{len(nodes)} Ready" + (f" (not Ready: {', '.join(not_ready)})" if not_ready else ""),
                "`kubectl describe node <name>` shows why; on k3s `journalctl -u k3s`",
            )
        )
    else:
        runtimes = sorted({n["runtime"] for n in nodes})
        checks.append(Check("nodes ready", "ok", f"{len(ready)}/{len(nodes)} Ready ({', '.join(runtimes)})"))
    if classes:
        checks.append(
            Check(
                "runtime classes",
                "ok",
                ", ".join(f"{n} -> handler {h}" for n, h in sorted(classes.items())),
                required=False,
            )
        )
    else:
        checks.append(
            Check(
                "runtime classes",
                "warn",
                "no RuntimeClass yet",
                "notebook 01 creates the `wasmedge` RuntimeClass",
                required=False,
            )
        )
    checks.append(check_containerd_runtimes(cluster.backend, set(classes.values())))
    checks.append(check_kubectl_reaches(cluster))

    checks.append(check_cluster_dns(cluster))
    return checks


def check_kubectl_reaches(cluster: Cluster) -> Check:
    """The real kubectl, with labkit's kubeconfig and context, lists the nodes too."""
    name = "kubectl -> cluster"
    if shutil.which("kubectl") is None:
        return Check(name, "skip", "kubectl not installed", required=False)
    try:
        cluster.kubectl("get", "nodes", "-o", "name", timeout=30)
    except LabkitError as e:
        last = e.problem.strip().splitlines()[-1]
        return Check(
            name,
            "warn",
            last,
            f"try `KUBECONFIG={cluster.kubeconfig} kubectl --context {cluster.context} "
            "get nodes -v=6` to see the request",
            required=False,
        )
    return Check(name, "ok", f"`kubectl --context {cluster.context} get nodes` works", required=False)


def containerd_runtimes(text: str) -> set[str]:
    """Runtime names declared in a containerd config (v2 or v3 keys, any quoting).

    >>> sorted(containerd_runtimes("[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]\\n"
    ...                            '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes."wasmedge"]'))
    ['runc', 'wasmedge']
    """
    found = re.findall(r"""\.containerd\.runtimes\.(?:'([^']+)'|"([^"]+)"|([A-Za-z0-9_-]+))\]""", text)
    return {next(part for part in groups if part) for groups in found}


def check_containerd_runtimes(backend: str, handlers: set[str]) -> Check:
    name = "containerd runtimes"
    if backend == "sandbox":
        return Check(name, "skip", SANDBOX_SKIP, required=False)
    try:
        text = K3S_CONTAINERD_CONFIG.read_text()
    except FileNotFoundError:
        return Check(name, "skip", f"not a k3s host ({K3S_CONTAINERD_CONFIG} absent)", required=False)
    except PermissionError:
        return Check(
            name, "warn", f"{K3S_CONTAINERD_CONFIG} is not readable", "run `sudo labkit doctor`", required=False
        )
    declared = containerd_runtimes(text)
    missing = sorted(handlers - declared)
    # k3s ships a RuntimeClass for every runtime it knows, installed or not (k3s manifests/runtimes.yaml):
    # only a handler the labs' pods name must have a runtime here
    needed = [h for h in missing if h in LAB_HANDLERS]
    if needed:
        return Check(
            name,
            "fail",
            f"RuntimeClass handler(s) {', '.join(needed)} not in {K3S_CONTAINERD_CONFIG} "
            f'(declared: {", ".join(sorted(declared))}); pods fail with `no runtime for "{needed[0]}" '
            "is configured`",
            f"put {SHIM} on PATH and `sudo systemctl restart k3s` (k3s adds it), "
            "or add the runtime to config-v3.toml.tmpl (notebook 02)",
        )
    unused = (
        f"; RuntimeClasses with no runtime on this node (unused by the labs): {', '.join(missing)}" if missing else ""
    )
    return Check(name, "ok", f"declared: {', '.join(sorted(declared))}{unused}", required=False)


def check_host(backend: str) -> list[Check]:
    """The node-host rows: shim, crun, WasmEdge plugin. Skipped on the sandbox and off a k3s host."""
    names = ("wasmedge shim", "crun", "wasi-nn plugin")
    skipped = _skip_host_rows(backend, names)
    if skipped:
        return skipped
    shim = shutil.which(SHIM)
    checks = [
        Check("wasmedge shim", "ok", shim)
        if shim
        else Check(
            "wasmedge shim",
            "fail",
            f'{SHIM} not on PATH: containerd reports `binary not installed "{SHIM}"`',
            "build runwasi's wasmedge shim (gnu target, for plugin support) and install it in /usr/local/bin, "
            "then `sudo systemctl restart k3s`",
        )
    ]
    done = _run("crun", "--version")
    if done is None:
        checks.append(
            Check(
                "crun",
                "warn",
                "crun not installed",
                "only notebook 02 needs it: a crun built with WasmEdge (`+WASM:wasmedge`), 1.15+ for WASI-NN",
                required=False,
            )
        )
    else:
        first = done.stdout.splitlines()[0] if done.stdout else "crun"
        wasm = "+WASM:wasmedge" in done.stdout
        checks.append(
            Check(
                "crun",
                "ok" if wasm else "warn",
                f"{first}; " + ("+WASM:wasmedge" if wasm else "built without +WASM:wasmedge"),
                "" if wasm else "build crun with --with-wasmedge for notebook 02",
                required=False,
            )
        )
    plugin = find_wasi_nn_plugin()
    checks.append(
        Check("wasi-nn plugin", "ok", str(plugin), required=False)
        if plugin
        else Check(
            "wasi-nn plugin",
            "warn",
            f"{WASI_NN_PLUGIN} not found (WASMEDGE_PLUGIN_PATH, ~/.wasmedge/plugin)",
            "install WasmEdge with the WASI-NN GGML plugin (notebooks 03 and 05 need it)",
            required=False,
        )
    )
    return checks


def _skip_host_rows(backend: str, names: tuple[str, ...]) -> list[Check]:
    """Skipped rows for *names* where node-host checks cannot run (the sandbox, a machine that is no k3s
    node); else no rows."""
    if backend == "sandbox":
        return [Check(n, "skip", SANDBOX_SKIP, required=False) for n in names]
    if not (K3S_CONTAINERD_CONFIG.parent.exists() or shutil.which("k3s")):
        return [Check(n, "skip", "not a k3s host (checked on the node itself)", required=False) for n in names]
    return []


def check_llm_server(backend: str) -> list[Check]:
    """The LLM labs' node rows: the profile's model file and image on the k3s node (labkit.llmnode).

    Skipped on the sandbox (its lab builds and imports the kit's llama-server, and ships its model).
    """
    from labkit.llmnode import NAMES, llm_checks

    skipped = _skip_host_rows(backend, NAMES)
    if skipped:
        return skipped
    from labkit.host import host_for_backend
    from labkit.profiles import profile_for

    return llm_checks(host_for_backend(backend), profile_for(backend))


def find_wasi_nn_plugin() -> Path | None:
    """The WASI-NN plugin file, searched in ``WASMEDGE_PLUGIN_PATH`` then ``~/.wasmedge/plugin``."""
    dirs = [d for d in os.environ.get("WASMEDGE_PLUGIN_PATH", "").split(os.pathsep) if d]
    dirs.append(str(Path.home() / ".wasmedge" / "plugin"))
    return next((Path(d) / WASI_NN_PLUGIN for d in dirs if (Path(d) / WASI_NN_PLUGIN).is_file()), None)


def check_tools() -> list[Check]:
    """The learner's own tools (both backends): wabt, skopeo, clang able to build wasm32-wasi."""
    checks = []
    for tools, package, why in (
        (("wasm2wat", "wasm-objdump"), "wabt", "inspect a module's imports (notebook 03)"),
        (("skopeo",), "skopeo", "inspect and copy wasm OCI images (notebook 01)"),
    ):
        missing = [t for t in tools if shutil.which(t) is None]
        checks.append(
            Check(
                tools[0],
                "warn",
                f"missing: {', '.join(missing)}; used to {why}",
                f"apt-get install {package}",
                required=False,
            )
            if missing
            else Check(tools[0], "ok", ", ".join(shutil.which(t) or t for t in tools), required=False)
        )
    checks.append(check_wasi_clang())
    return checks


def check_wasi_clang() -> Check:
    """Compile a one-line C program for wasm32-wasi: proves clang, lld and wasi-libc together."""
    fix = "apt-get install clang lld wasi-libc libclang-rt-dev-wasm32"
    if shutil.which("clang") is None:
        return Check("clang wasm32-wasi", "warn", "clang not installed", fix, required=False)
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "probe.c", Path(tmp) / "probe.wasm"
        src.write_text("int main(void) { return 0; }\n")
        done = _run("clang", "--target=wasm32-wasi", "-O2", "-o", str(out), str(src), timeout=60)
        if done is None or done.returncode != 0 or not out.is_file():
            why = done.stderr.strip().splitlines()[-1] if done and done.stderr.strip() else "no output"
            return Check("clang wasm32-wasi", "warn", f"cannot build wasm32-wasi: {why}", fix, required=False)
        return Check("clang wasm32-wasi", "ok", f"built a {out.stat().st_size} B module", required=False)


def doctor(
    backend: str | None = None,
    context: str | None = None,
    *,
    allowed_contexts: list[str] | tuple[str, ...] | None = None,
    kubeconfig: str | os.PathLike[str] | None = None,
) -> DoctorReport:
    """Check packages, kubectl, the cluster, its nodes and runtimes, the host and the tools.

    Never raises for a failed check: every problem becomes a row with its fix.
    """
    from labkit.cluster import connect

    name = config.resolve_backend(backend)
    try:
        cluster: Cluster | LabkitError = connect(
            name, context, allowed_contexts=allowed_contexts, kubeconfig=kubeconfig
        )
    except LabkitError as e:
        cluster = e
    # the LLM rows only warn here: notebooks 01, 02 and 04 run without them (the LLM labs require them)
    llm = [replace(c, status="warn" if c.failed else c.status, required=False) for c in check_llm_server(name)]
    checks = [check_packages(), check_kubectl(), *check_cluster(cluster), *check_host(name), *llm, *check_tools()]
    return DoctorReport(
        name, checks, banner=SANDBOX_BANNER if name == "sandbox" else "", server=getattr(cluster, "server", "")
    )


def lab_checks(cluster: Cluster, backend: str | None = None, *, llm: bool = False) -> DoctorReport:
    """The rows of :func:`doctor` a lab needs of a connected *cluster*: the cluster, its nodes and runtimes,
    and the host; with *llm*, the LLM server's model and image on the node (:func:`check_llm_server`).
    ``lab_checks(cluster).require()`` stops a notebook at the first failed one, with its fix.

    >>> print(lab_checks(cluster, "sandbox", llm=True).require().table())          # doctest: +SKIP
    """
    name = config.resolve_backend(backend)
    rows = [*check_cluster(cluster), *check_host(name), *(check_llm_server(name) if llm else [])]
    return DoctorReport(name, rows, server=cluster.server)


# -- the cluster-network row -------------------------------------------------------------------------
# On k3s the row asks CoreDNS at kube-dns's ClusterIP (10.43.0.10:53), which answers only where ClusterIPs route
# (on a node); elsewhere it warns. On the sandbox it asks the sandbox's DNS server, reached as every sandbox socket
# reaches a cluster address (labkit.sandbox.netmap): kube-dns's ClusterIP (127.43.0.10 in address slot 0) on port
# host_port(53) = 61053.

CLUSTER_DNS_PROBE = "kube-dns.kube-system.svc.cluster.local"
#: What a learner should know about the sandbox's network, shown in the row.
SANDBOX_NETWORK = (
    "real TCP/UDP on loopback and a real DNS server (cluster.local, UDP+TCP); mapped: pod IPs {pods} and "
    "ClusterIPs {services} stand for k3s's 10.42/16 and 10.43/16 (address slot {slot} of this machine), "
    "and ports below 1024 use 61000+port on the wire"
)


def sandbox_network(dns_ip: str) -> str:
    """:data:`SANDBOX_NETWORK` for the sandbox whose cluster DNS is at *dns_ip* (its slot's ranges)."""
    addresses = plan(slot_of(dns_ip) or 0)
    return SANDBOX_NETWORK.format(pods=addresses.pod_cidr, services=addresses.service_cidr, slot=addresses.slot)


def check_cluster_dns(cluster: Cluster) -> Check:
    """Ask the cluster DNS for kube-dns's own name over UDP: it should answer with kube-dns's ClusterIP."""
    from dnslib import DNSRecord

    from labkit.cluster import api_call

    try:
        service = api_call(cluster.core.read_namespaced_service, "kube-dns", "kube-system", _request_timeout=10)
    except LabkitError as e:
        return Check("cluster DNS", "warn", f"no kube-system/kube-dns Service: {e.problem}", e.fix or "", False)
    ip = str(service.spec.cluster_ip if service.spec else "")
    sandbox = is_cluster_address(ip)
    address = (ip, host_port(53) if sandbox else 53)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.settimeout(2.0)
            udp.sendto(DNSRecord.question(CLUSTER_DNS_PROBE, "A").pack(), address)
            answers = [str(rr.rdata) for rr in DNSRecord.parse(udp.recv(4096)).rr]
    except (OSError, ValueError) as err:
        fix = (
            "`labkit sandbox up` starts the network process again; its log is <sandbox>/network/network.log"
            if sandbox
            else "ClusterIPs route only on the cluster's nodes: run doctor on a node, or check CoreDNS there"
        )
        return Check("cluster DNS", "warn" if not sandbox else "fail", f"{ip}:53 did not answer ({err})", fix, False)
    detail = f"{CLUSTER_DNS_PROBE} -> {', '.join(answers) or 'no answer'} from {ip}:53"
    if sandbox:
        detail += f" (on the wire {address[0]}:{address[1]}); {sandbox_network(ip)}"
    if ip in answers:
        return Check("cluster DNS", "ok", detail, required=False)
    return Check("cluster DNS", "warn", detail, "the DNS answers, but not with kube-dns's ClusterIP", False)
