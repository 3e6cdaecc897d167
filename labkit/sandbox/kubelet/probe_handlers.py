"""The four probe handlers as the kubelet runs them once: httpGet, tcpSocket, grpc and exec.

Each returns a :class:`Outcome` in upstream's terms (``pkg/probe/probe.go``: success, warning, failure, unknown)
with the output the kubelet puts in its event, or an ``error`` when the probe could not be run at all (upstream
then throws the result away and says "errored", ``pkg/kubelet/prober/prober.go``).

- **httpGet** (``pkg/probe/http/http.go``, ``request.go``): GET with ``User-Agent: kube-probe/1.32`` and
  ``Accept: */*`` unless the probe's headers set them, no keep-alive; 200-399 succeeds; redirects to the same
  host are followed (at most 10), one to another host is not followed and the probe succeeds with a warning
  (``Probe terminated redirects, Response body: …``); at most 10 KB of body is read; any other status fails with
  ``HTTP probe failed with statuscode: N``; transport errors fail with Go's ``Get "URL": …`` text.
- **tcpSocket** (``pkg/probe/tcp/tcp.go``): a connect within the timeout; errors are Go's ``dial tcp …`` text.
- **grpc** (``pkg/probe/grpc/grpc.go``): the connection is real; grpc.health.v1 over HTTP/2 is not simulated,
  so a reachable port gives an errored probe that says so.
- **exec**: through a :class:`CommandRunner`, the container runtime's ExecSync.

The sandbox's own rule: a probe reaches only cluster addresses (pods ``127.42.0.0/16``, Services
``127.43.0.0/16``, or ``127.(42+2k)``/``127.(43+2k)`` in address slot k, :mod:`labkit.sandbox.netmap`), never
the node's other loopback services nor another machine; such a probe fails and says why. Ports below 1024 are
moved with :func:`~labkit.sandbox.netmap.host_port` on the wire; messages name the manifest's port, as a pod's
clients see it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import secrets
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

from labkit.sandbox.netmap import POD_CIDR, SERVICE_CIDR, SLOTS, host_port, is_cluster_address

SUCCESS, WARNING, FAILURE, UNKNOWN = "success", "warning", "failure", "unknown"
#: kube-probe/<major>.<minor> (pkg/probe/http/request.go userAgent); the sandbox serves Kubernetes 1.32
USER_AGENT = "kube-probe/1.32"
#: pkg/probe/http/http.go maxRespBodyLength; pkg/probe/exec/exec.go maxReadLength
MAX_BODY = 10 * 1024
#: Go's Transport allows 10 MiB of response headers; the sandbox keeps a probe's reading far smaller
MAX_HEAD = 64 * 1024
MAX_REDIRECTS = 10  # pkg/probe/http/http.go RedirectChecker: "stopped after 10 redirects"
OUTSIDE = (
    f"the labkit sandbox probes only cluster addresses (pods {POD_CIDR}, Services {SERVICE_CIDR}, "
    f"or the same ranges of the sandbox's address slot: 127.(42+2k) and 127.(43+2k) for k < {SLOTS}), "
    "not the node's other services nor other machines"
)


@dataclass(frozen=True)
class Outcome:
    """One probe run: its result, the output for the event, or the error that kept it from running."""

    result: str
    output: str = ""
    error: str | None = None


class ExecFailed(Exception):
    """The runtime refused to run a command in the container; the message is the runtime's."""


class CommandRunner(Protocol):
    """Runs a command in a running container, as CRI ``ExecSync`` does: (exit code, stdout + stderr).

    Raises :class:`ExecFailed` when the runtime cannot exec, ``TimeoutError`` past *limit_s* seconds. Wasm
    containers use :class:`WasmExec`; native containers bring their own runner (the hook for native pods).
    """

    async def exec_sync(
        self, container: str, container_id: str, command: Sequence[str], limit_s: float
    ) -> tuple[int, bytes]: ...


class WasmExec:
    """runwasi's answer to an exec: its shim implements no ``Exec`` task call, so containerd's ExecSync fails.

    ``containerd-shim-wasm``'s ``Local`` task service (crates/containerd-shim-wasm/src/sandbox/shim/local.rs)
    overrides create/start/kill/delete/wait/state/stats, not ``exec``; the ttrpc default answers
    ``NOT_FOUND "/containerd.task.v2.Task/Exec is not supported"`` and ``task_start`` with an exec id refuses
    ``exec is not supported``. containerd's CRI wraps it as below [inferred: the wrapping chain of
    ExecSync → execInternal → task.Exec, as containerd prints it]. The kubelet's exec prober treats a
    non-exit error as "errored" (pkg/probe/exec/exec.go), so the probe's result is thrown away.
    """

    async def exec_sync(
        self, container: str, container_id: str, command: Sequence[str], limit_s: float
    ) -> tuple[int, bytes]:
        exec_id = secrets.token_hex(32)
        raise ExecFailed(
            "rpc error: code = NotFound desc = failed to exec in container: failed to create exec "
            f'"{exec_id}": /containerd.task.v2.Task/Exec is not supported: not found'
        )


def resolve_port(port: Any, container: dict[str, Any]) -> int:
    """probe.ResolveContainerPort (pkg/probe/util.go): a number, or a named containerPort."""
    if isinstance(port, str):
        named = next((p for p in container.get("ports") or () if p.get("name") == port), None)
        if named is None:
            raise LookupError(f'port "{port}" not found')
        port = int(named.get("containerPort") or 0)
    if not isinstance(port, int) or not 0 < port < 65536:
        raise LookupError(f"invalid port number: {port}")
    return port


def _dial_error(ip: str, port: int, err: BaseException) -> str:
    """Go's net.OpError text for a failed TCP dial."""
    target = f"dial tcp {ip}:{port}"
    if isinstance(err, TimeoutError):
        return f"{target}: i/o timeout"
    if isinstance(err, ConnectionRefusedError):
        return f"{target}: connect: connection refused"
    reason = getattr(err, "strerror", None) or str(err)
    return f"{target}: connect: {reason.lower()}"


def allowed(host: str) -> bool:
    """Whether the sandbox lets a probe connect to *host* (an address literal in the cluster's ranges)."""
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        return False
    return is_cluster_address(host)


async def _connect(
    host: str, port: int, limit_s: float, tls: bool = False
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    if not allowed(host):
        raise PermissionError(OUTSIDE)
    context = None
    if tls:  # the kubelet skips certificate verification (pkg/probe/http/http.go: InsecureSkipVerify)
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    return await asyncio.wait_for(asyncio.open_connection(host, host_port(port), ssl=context), limit_s)


async def tcp_probe(host: str, port: int, limit_s: float) -> Outcome:
    """DoTCPProbe: open and close a connection."""
    try:
        _, writer = await _connect(host, port, limit_s)
    except PermissionError as err:
        return Outcome(FAILURE, f"dial tcp {host}:{port}: connect: {err}")
    except (OSError, TimeoutError) as err:
        return Outcome(FAILURE, _dial_error(host, port, err))
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return Outcome(SUCCESS)


async def grpc_probe(host: str, port: int, service: str, limit_s: float) -> Outcome:
    """The connection as grpc-go dials it (WithBlock: a refused dial retries until the deadline [inferred from
    grpc.DialContext's documented blocking]); the Health/Check call itself is not simulated."""
    address = f"{host}:{port}"
    try:
        _, writer = await _connect(host, port, limit_s)
    except PermissionError as err:
        return Outcome(FAILURE, f'error: failed to connect service at "{address}": {err}')
    except (OSError, TimeoutError):
        return Outcome(
            FAILURE, f'timeout: failed to connect service "{address}" within {limit_s:g}s: context deadline exceeded'
        )
    writer.close()
    return Outcome(
        UNKNOWN,
        error=(
            f"the labkit sandbox connects to {address} but does not simulate gRPC health checks "
            f"(grpc.health.v1.Health/Check, service {service!r}): use an httpGet or tcpSocket probe, "
            "or a real k3s cluster"
        ),
    )


async def exec_probe(
    runner: CommandRunner, container: str, container_id: str, command: Sequence[str], limit_s: float
) -> Outcome:
    """pkg/probe/exec/exec.go: exit 0 succeeds, another code fails with the output, a runtime error errors."""
    try:
        code, output = await asyncio.wait_for(runner.exec_sync(container, container_id, command, limit_s), limit_s)
    except ExecFailed as err:
        return Outcome(UNKNOWN, error=str(err))
    except TimeoutError:  # ExecProbeTimeout (GA): a timed-out exec fails with what it printed so far
        return Outcome(FAILURE, f"command {' '.join(command)!r} timed out")
    text = output[:MAX_BODY].decode("utf-8", "replace")
    return Outcome(SUCCESS if code == 0 else FAILURE, text)


@dataclass(frozen=True)
class HttpTarget:
    scheme: str
    host: str
    port: int
    path: str
    headers: tuple[tuple[str, str], ...]

    @property
    def url(self) -> str:
        path = self.path if self.path.startswith("/") else "/" + self.path
        return f"{self.scheme}://{self.host}:{self.port}{path}"


def http_target(action: dict[str, Any], container: dict[str, Any], pod_ip: str) -> HttpTarget:
    """NewRequestForHTTPGetAction: scheme lowercased (default http), host (default the pod IP), port, path."""
    headers = tuple((h.get("name", ""), h.get("value", "")) for h in action.get("httpHeaders") or ())
    return HttpTarget(
        (action.get("scheme") or "HTTP").lower(),
        action.get("host") or pod_ip,
        resolve_port(action.get("port"), container),
        action.get("path") or "",
        headers,
    )


def _request(target: HttpTarget) -> bytes:
    names = {n.lower() for n, _ in target.headers}
    host = next((v for n, v in target.headers if n.lower() == "host"), f"{target.host}:{target.port}")
    path = target.path if target.path.startswith("/") else "/" + target.path
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}"]
    if "user-agent" not in names:
        lines.append(f"User-Agent: {USER_AGENT}")
    if "accept" not in names:
        lines.append("Accept: */*")
    lines += [f"{n}: {v}" for n, v in target.headers if n.lower() != "host" and not (n.lower() == "accept" and not v)]
    lines.append("Connection: close")  # DisableKeepAlives
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class _Response:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body


async def _read_response(reader: asyncio.StreamReader) -> _Response:
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = await reader.read(4096)
        if not chunk:
            raise ConnectionError("EOF")
        head += chunk
        if len(head) > MAX_HEAD and b"\r\n\r\n" not in head[:MAX_HEAD]:
            raise ValueError(f"net/http: server response headers exceeded {MAX_HEAD} bytes; aborted")
    raw, _, rest = head.partition(b"\r\n\r\n")
    status_line, *header_lines = raw.decode("latin-1").split("\r\n")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise ValueError(f"net/http: malformed HTTP response {status_line!r}")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return _Response(int(parts[1]), headers, await _read_body(reader, headers, rest))


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str], body: bytes) -> bytes:
    """utilio.ReadAtMost(res.Body, 10 KB): no more is read, whatever the server sends."""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        data = body
        while len(data) < 2 * MAX_BODY and b"0\r\n\r\n" not in data:
            chunk = await reader.read(4096)
            if not chunk:
                break
            data += chunk
        out, rest = b"", data
        while len(out) < MAX_BODY and b"\r\n" in rest:
            size_text, _, rest = rest.partition(b"\r\n")
            try:
                size = int(size_text.split(b";")[0], 16)
            except ValueError:
                break
            if size == 0:
                break
            out, rest = out + rest[:size], rest[size + 2 :]
        return out[:MAX_BODY]
    length = headers.get("content-length")
    want = min(int(length), MAX_BODY) if length and length.isdigit() else MAX_BODY
    while len(body) < want:
        chunk = await reader.read(min(4096, want - len(body)))
        if not chunk:
            break
        body += chunk
    return body[:want]


async def _get_once(target: HttpTarget) -> _Response:
    reader, writer = await _connect(target.host, target.port, 1e9, tls=target.scheme == "https")
    try:
        writer.write(_request(target))
        await writer.drain()
        return await _read_response(reader)
    finally:
        writer.close()


async def http_probe(target: HttpTarget, limit_s: float) -> Outcome:
    """DoHTTPProbe with the kubelet's client: Client.Timeout bounds connect, headers and body together."""
    url = target.url
    if any("\r" in v or "\n" in v for _, v in target.headers):
        bad = next(n for n, v in target.headers if "\r" in v or "\n" in v)
        return Outcome(FAILURE, f'Get "{url}": net/http: invalid header field value for "{bad}"')
    first_host = target.host
    try:
        async with asyncio.timeout(limit_s):
            for _ in range(MAX_REDIRECTS + 1):
                response = await _get_once(target)
                location = response.headers.get("location")
                if response.status not in (301, 302, 303, 307, 308) or not location:
                    break
                moved = urlsplit(location)
                host = moved.hostname or target.host
                if host != first_host:  # RedirectChecker(false): http.ErrUseLastResponse
                    break
                port = moved.port or (target.port if not moved.netloc else 443 if moved.scheme == "https" else 80)
                path = (moved.path or "/") + (f"?{moved.query}" if moved.query else "")
                target = HttpTarget(moved.scheme or target.scheme, host, port, path, target.headers)
            else:
                return Outcome(FAILURE, f'Get "{target.url}": stopped after {MAX_REDIRECTS} redirects')
    except TimeoutError:
        awaiting = "context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
        return Outcome(FAILURE, f'Get "{url}": {awaiting}')
    except PermissionError as err:
        return Outcome(FAILURE, f'Get "{url}": dial tcp {target.host}:{target.port}: connect: {err}')
    except ValueError as err:
        return Outcome(FAILURE, f'Get "{url}": {err}')
    except ConnectionError as err:
        if isinstance(err, ConnectionRefusedError):
            return Outcome(FAILURE, f'Get "{url}": {_dial_error(target.host, target.port, err)}')
        return Outcome(FAILURE, f'Get "{url}": EOF')
    except OSError as err:
        return Outcome(FAILURE, f'Get "{url}": {_dial_error(target.host, target.port, err)}')
    body = response.body.decode("utf-8", "replace")
    if 200 <= response.status < 400:
        if response.status >= 300:
            return Outcome(WARNING, f"Probe terminated redirects, Response body: {body}")
        return Outcome(SUCCESS, body)
    # upstream never puts the body in this message (issue 99425)
    return Outcome(FAILURE, f"HTTP probe failed with statuscode: {response.status}")
