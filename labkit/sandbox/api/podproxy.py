"""``pods/proxy`` and ``services/proxy``: HTTP to a pod or a Service's endpoint, through the API server.

Paths, as kube-apiserver serves them: ``/api/v1/namespaces/{ns}/pods/{[scheme:]name[:port]}/proxy[/{path}]``
and ``…/services/{[scheme:]name[:port]}/proxy[/{path}]``, any method, verbs authorized on ``pods/proxy`` and
``services/proxy`` by method (GET get, POST create, PUT update, PATCH patch, DELETE delete). ``kubectl
cluster-info`` prints such URLs and ``kubectl get --raw`` fetches them.

Where the request goes, after upstream's ResourceLocation:

- a pod (``pkg/registry/core/pod/strategy.go``): its IP and the port named (a number or a container port's
  name), else its first container's first port, else none (port 80);
- a Service (``pkg/registry/core/service/storage/storage.go``): a number selects the Service port of that
  number ("no service port N found for service …", 503), then a random ready address of the Endpoints
  subset carrying that port's name ("no endpoints available for service …", 503).

Sandbox differences: the connection goes to ``podIP:host_port(port)`` on loopback (:mod:`labkit.sandbox.netmap`);
upstream refuses loopback pod IPs ("address not allowed") because they would reach the API server's own host,
which is exactly where sandbox pods live. Only ``http`` is proxied (``https:`` targets answer 400 here).
Links inside HTML are not rewritten. For safety the request body stops at 3 MiB (the server's limit), the
answer at :data:`MAX_RESPONSE` (502 past it) and the whole exchange at :data:`TIMEOUT` seconds (504), so a pod
cannot hold the API server's memory or a worker [inferred limits: upstream streams without a cap].
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web

from labkit.sandbox.api import limits
from labkit.sandbox.api.registry import RESOURCES
from labkit.sandbox.api.status import StatusError, bad_request
from labkit.sandbox.netmap import host_port

if TYPE_CHECKING:
    from labkit.sandbox.api.apicore import ApiCore

MAX_RESPONSE = 10 * 1024 * 1024
TIMEOUT = 30.0
#: Hop-by-hop headers (RFC 9110 §7.6.1) and the caller's credentials, which stop at the API server (kube-apiserver
#: drops Authorization once it has authenticated the request: WithAuthentication).
_DROPPED = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "authorization",
        "host",
        "content-length",
        "impersonate-user",
        "impersonate-group",
    }
)
ENDPOINTS = RESOURCES.served("", "endpoints")


def split_scheme_name_port(text: str) -> tuple[str, str, str]:
    """``[scheme:]name[:port]`` as apimachinery's SplitSchemeNamePort splits it.

    >>> split_scheme_name_port("web:80"), split_scheme_name_port("https:web:443"), split_scheme_name_port("web")
    (('', 'web', '80'), ('https', 'web', '443'), ('', 'web', ''))
    """
    parts = text.split(":")
    if len(parts) == 1:
        scheme, name, port = "", parts[0], ""
    elif len(parts) == 2:
        scheme, name, port = "", parts[0], parts[1]
    elif len(parts) == 3:
        scheme, name, port = parts
    else:
        raise bad_request(f"invalid service request {text!r}")
    if not name or scheme not in ("", "http", "https"):
        raise bad_request(f"invalid service request {text!r}")
    return scheme, name, port


def pod_target(pod: dict[str, Any], port: str) -> tuple[str, int]:
    ip = pod.get("status", {}).get("podIP")
    if not ip:
        raise StatusError(503, "ServiceUnavailable", f"pod {pod['metadata']['name']} does not have an IP address")
    containers = pod.get("spec", {}).get("containers") or []
    if not port:
        number = next((int(p["containerPort"]) for c in containers for p in c.get("ports") or []), 80)
    elif port.isdigit():
        number = int(port)
    else:  # a named container port
        named = [int(p["containerPort"]) for c in containers for p in c.get("ports") or [] if p.get("name") == port]
        if not named:
            raise bad_request(f"pod {pod['metadata']['name']} has no container port named {port!r}")
        number = named[0]
    return str(ip), number


def service_target(core: ApiCore, namespace: str, name: str, port: str) -> tuple[str, int]:
    service = core.get(RESOURCES.served("", "services"), namespace, name)
    port_name = port
    if port.isdigit():
        declared = [p for p in service.get("spec", {}).get("ports") or [] if int(p.get("port", 0)) == int(port)]
        if not declared:
            raise StatusError(503, "ServiceUnavailable", f'no service port {int(port)} found for service "{name}"')
        port_name = declared[0].get("name", "")
    endpoints = core.store.peek(ENDPOINTS, namespace, name) or {}
    subsets = [s for s in endpoints.get("subsets") or [] if s.get("addresses")]
    random.shuffle(subsets)
    for subset in subsets:
        for endpoint_port in subset.get("ports") or []:
            if endpoint_port.get("name", "") == port_name:
                address = random.choice(subset["addresses"])
                return str(address["ip"]), int(endpoint_port["port"])
    raise StatusError(503, "ServiceUnavailable", f'no endpoints available for service "{name}"')


async def forward(request: web.Request, ip: str, port: int, scheme: str, path: str) -> web.StreamResponse:
    """Send the request on to ``ip:port`` and its answer back, within the limits above."""
    if scheme == "https":
        raise bad_request("labkit sandbox: the API server proxies plain http to pods and Services, not https")
    body = await limits.read_body(request)
    url = f"http://{ip}:{host_port(port)}/{path.lstrip('/')}"
    headers = {k: v for k, v in request.headers.items() if k.lower() not in _DROPPED}
    headers["X-Forwarded-For"] = request.remote or "127.0.0.1"
    timeout = aiohttp.ClientTimeout(total=TIMEOUT, sock_connect=5)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout, auto_decompress=False) as session,
            session.request(
                request.method, url, params=request.query, data=body or None, headers=headers, allow_redirects=False
            ) as answer,
        ):
            if (answer.content_length or 0) > MAX_RESPONSE:
                raise _too_large()
            payload = bytearray()
            async for chunk in answer.content.iter_chunked(64 * 1024):
                payload += chunk
                if len(payload) > MAX_RESPONSE:
                    raise _too_large()
            out_headers = {k: v for k, v in answer.headers.items() if k.lower() not in _DROPPED}
            return web.Response(status=answer.status, body=bytes(payload), headers=out_headers)
    except TimeoutError:
        raise StatusError(504, "Timeout", f"labkit sandbox: {ip}:{port} did not answer within {TIMEOUT:g} s") from None
    except aiohttp.ClientConnectorError as e:
        # proxy/upgradeaware.go answers a failed dial with 503 "error trying to reach service: <Go's dial error>"
        refused = isinstance(e.os_error, ConnectionRefusedError)
        reason = "connect: connection refused" if refused else f"connect: {e.os_error.strerror or e.os_error}"
        raise StatusError(
            503, "ServiceUnavailable", f"error trying to reach service: dial tcp {ip}:{port}: {reason}"
        ) from None
    except aiohttp.ClientError as e:
        raise StatusError(503, "ServiceUnavailable", f"error trying to reach service: {e}") from None


def _too_large() -> StatusError:
    return StatusError(
        502, "BadGateway", f"labkit sandbox: the answer is larger than the proxy's limit of {MAX_RESPONSE} bytes"
    )
