"""The launcher of a native container: run as ``python -I nativeshim.py <config.json>`` by the node, it gives a
labkit Python program the view a pod has, then runs it as ``__main__``.

This file runs in the container's own process, with ``-I`` (isolated: no ``PYTHON*`` variables, no user
site-packages, no script directory on ``sys.path``), so it imports only the standard library, ``dnslib`` and
(by its file path) ``labkit/sandbox/netmap.py``: nothing a pod's environment could replace. A native
subprocess sees the host's filesystem and network, so what a pod would see is *mapped* here, at the Python
level, for the program that runs inside (which is one labkit ships, never a manifest's choice):

- **dies with its node**: ``PR_SET_PDEATHSIG`` (SIGKILL) is set first, then the parent is checked, so the
  container never outlives the kubelet that started it, not even one killed with SIGKILL;
- **files**: ``open``, ``os.open``/``stat``/``lstat``/``access``/``listdir``/``scandir`` and
  ``ssl.SSLContext.load_verify_locations`` see the pod's paths: ``/var/run/secrets/kubernetes.io/serviceaccount``
  (token, ca.crt, namespace), ``/etc/resolv.conf``, ``/etc/hosts``, ``/etc/hostname`` and the container's
  volumeMounts, each the node's file under the pod's directory. So ``kubernetes.config.load_incluster_config()``
  works unchanged. Other paths are the host's (the interpreter and its libraries live there);
- **sockets** (``socket.socket`` methods, so ``ssl``, ``http.client``, ``urllib3`` and ``asyncio`` too): a
  cluster address's port is moved with ``netmap.host_port`` (443 -> 61443) on the way out and back with
  ``spec_port`` in ``getsockname``/``getpeername``/``accept``/``recvfrom``; binding ``0.0.0.0`` binds the pod's
  IP; only loopback is reachable, as for wasm pods (kubelet/wasi_socktable.py). The ``kubernetes`` Service
  (``127.43.0.1:443``) goes straight to the API server's address, as kube-proxy's rule for that Service sends
  it to the API server's endpoint [mapped: the sandbox's Service proxy handles the other ClusterIPs];
- **names**: ``socket.getaddrinfo`` (and ``gethostbyname``) read the pod's hosts file, then its resolv.conf
  as glibc does (``search`` list, ``options ndots:N timeout:N attempts:N``) and ask its nameservers over UDP
  (``dnslib``), a cluster nameserver at ``host_port(53)``. A resolv.conf without a cluster nameserver
  (``dnsPolicy: Default``) leaves names to the host's resolver.
"""

from __future__ import annotations

import builtins
import ctypes
import errno
import importlib.util
import io
import ipaddress
import json
import os
import random
import resource
import runpy
import signal
import socket
import ssl
import sys
from collections.abc import Callable
from typing import Any

PR_SET_PDEATHSIG = 1
RAW = {name: getattr(socket.socket, name) for name in ("connect", "connect_ex", "bind", "sendto", "getsockname")}
RAW.update({name: getattr(socket.socket, name) for name in ("getpeername", "recvfrom", "accept")})
_real_getaddrinfo = socket.getaddrinfo
_INET = (socket.AF_INET, socket.AF_INET6)


def die_with_parent(parent: int) -> None:
    """SIGKILL when the node process ends; if it already has, end now."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(137)


# ---------------------------------------------------------------- files


class PathMap:
    """Container paths -> node paths, longest prefix first."""

    def __init__(self, paths: dict[str, str]) -> None:
        self.pairs = sorted(((os.path.normpath(k), v) for k, v in paths.items()), key=lambda p: -len(p[0]))

    def __call__(self, path: Any) -> Any:
        if isinstance(path, int):
            return path
        try:
            raw = os.fspath(path)
        except TypeError:
            return path
        text = os.fsdecode(raw)
        if not text.startswith("/"):
            return path
        norm = os.path.normpath(text)
        for guest, host in self.pairs:
            if norm == guest or norm.startswith(guest + "/"):
                mapped = os.path.join(host, norm[len(guest) :].lstrip("/")) if norm != guest else host
                return os.fsencode(mapped) if isinstance(raw, bytes) else mapped
        return path


def map_files(mapping: PathMap) -> None:
    real_open = builtins.open

    def mapped_open(file: Any, *args: Any, **kwargs: Any) -> Any:
        return real_open(mapping(file), *args, **kwargs)

    builtins.open = io.open = mapped_open
    for name in ("open", "stat", "lstat", "access", "listdir", "scandir"):
        os.__dict__[name] = _first_arg_mapped(getattr(os, name), mapping)
    real_verify = ssl.SSLContext.load_verify_locations

    def load_verify_locations(self: ssl.SSLContext, cafile: Any = None, capath: Any = None, cadata: Any = None) -> None:
        real_verify(self, mapping(cafile) if cafile else cafile, mapping(capath) if capath else capath, cadata)

    ssl.SSLContext.load_verify_locations = load_verify_locations  # type: ignore[method-assign]


def _first_arg_mapped(fn: Callable[..., Any], mapping: PathMap) -> Callable[..., Any]:
    def wrapper(path: Any = ".", *args: Any, **kwargs: Any) -> Any:
        return fn(mapping(path), *args, **kwargs)

    wrapper.__name__, wrapper.__doc__ = fn.__name__, fn.__doc__
    return wrapper


# ---------------------------------------------------------------- sockets


class Network:
    """The pod's view of the network: address translation and confinement (see the module's docstring)."""

    def __init__(self, netmap: Any, pod_ip: str, api_service: tuple[str, int], api_endpoint: tuple[str, int]) -> None:
        self.netmap, self.pod_ip = netmap, pod_ip
        self.api_service, self.api_endpoint = api_service, api_endpoint

    def outgoing(self, address: Any) -> Any:
        if not isinstance(address, tuple) or len(address) < 2:
            return address
        host, port = address[0], int(address[1])
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            ip = ipaddress.ip_address(resolve_one(host))  # what connect((name, port)) would look up
        if (str(ip), port) == self.api_service:
            return (*self.api_endpoint, *address[2:])
        if not ip.is_loopback and not self.netmap.is_cluster_address(str(ip)):
            raise OSError(errno.ENETUNREACH, "Network is unreachable (sandbox pods reach loopback addresses only)")
        if self.netmap.is_cluster_address(str(ip)):
            port = self.netmap.host_port(port)
        return (str(ip), port, *address[2:])

    def binding(self, address: Any) -> Any:
        if not isinstance(address, tuple) or len(address) < 2:
            return address
        host, port = address[0], int(address[1])
        if host in ("", "0.0.0.0"):  # the unspecified address: the pod's own IP
            host = self.pod_ip
        elif host == "::":
            host = "::1"
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            ip = ipaddress.ip_address(resolve_one(host))
        if not ip.is_loopback:
            raise OSError(errno.EADDRNOTAVAIL, "Cannot assign requested address")
        if self.netmap.is_cluster_address(str(ip)):
            port = self.netmap.host_port(port)
        return (str(ip), port, *address[2:])

    def incoming(self, address: Any) -> Any:
        if isinstance(address, tuple) and len(address) >= 2 and self.netmap.is_cluster_address(str(address[0])):
            return (address[0], self.netmap.spec_port(int(address[1])), *address[2:])
        return address

    def install(self) -> None:
        net = self

        def connect(sock: socket.socket, address: Any) -> None:
            RAW["connect"](sock, net.outgoing(address) if sock.family in _INET else address)

        def connect_ex(sock: socket.socket, address: Any) -> int:
            try:
                target = net.outgoing(address) if sock.family in _INET else address
            except OSError as err:
                return err.errno or errno.EINVAL
            return int(RAW["connect_ex"](sock, target))

        def bind(sock: socket.socket, address: Any) -> None:
            RAW["bind"](sock, net.binding(address) if sock.family in _INET else address)

        def sendto(sock: socket.socket, data: Any, *args: Any) -> int:
            *flags, address = args
            target = net.outgoing(address) if sock.family in _INET else address
            return int(RAW["sendto"](sock, data, *flags, target))

        def getsockname(sock: socket.socket) -> Any:
            return net.incoming(RAW["getsockname"](sock))

        def getpeername(sock: socket.socket) -> Any:
            return net.incoming(RAW["getpeername"](sock))

        def recvfrom(sock: socket.socket, *args: Any) -> Any:
            data, address = RAW["recvfrom"](sock, *args)
            return data, net.incoming(address)

        def accept(sock: socket.socket) -> Any:
            conn, address = RAW["accept"](sock)
            return conn, net.incoming(address)

        for fn in (connect, connect_ex, bind, sendto, getsockname, getpeername, recvfrom, accept):
            setattr(socket.socket, fn.__name__, fn)


# ---------------------------------------------------------------- names


class Resolver:
    """glibc's stub resolver over the pod's resolv.conf and hosts file, asking nameservers with dnslib."""

    def __init__(self, resolv_conf: str, hosts: str, netmap: Any, dns_port: int) -> None:
        self.resolv_conf, self.hosts, self.netmap, self.dns_port = resolv_conf, hosts, netmap, dns_port

    def config(self) -> tuple[list[str], list[str], dict[str, int]]:
        nameservers: list[str] = []
        search: list[str] = []
        options = {"ndots": 1, "timeout": 5, "attempts": 2}  # resolv.conf(5) defaults
        with _raw_open(self.resolv_conf) as f:
            for line in f:
                words = line.split()
                if len(words) > 1 and words[0] == "nameserver":
                    nameservers.append(words[1])
                elif words and words[0] in ("search", "domain"):
                    search = words[1:]
                elif words and words[0] == "options":
                    for word in words[1:]:
                        name, _, value = word.partition(":")
                        if name in options and value.isdigit():
                            options[name] = int(value)
        return nameservers, search, options

    def from_hosts(self, name: str) -> list[str]:
        found = []
        try:
            with _raw_open(self.hosts) as f:
                for line in f:
                    words = line.split("#", 1)[0].split()
                    if len(words) > 1 and name.lower().rstrip(".") in (w.lower() for w in words[1:]):
                        found.append(words[0])
        except OSError:
            pass
        return found

    def lookup(self, name: str, family: int) -> list[str] | None:
        """The addresses of *name*, [] when no name server knows it, None when none answered."""
        hosts = [a for a in self.from_hosts(name) if family in (0, _family_of(a))]
        if hosts:
            return hosts
        nameservers, search, options = self.config()
        if not any(self.netmap.is_cluster_address(n) for n in nameservers):
            return None if not nameservers else self._host_resolver(name, family)
        if name.endswith("."):
            candidates = [name]
        elif name.count(".") >= options["ndots"]:
            candidates = [name + "."] + [f"{name}.{s}." for s in search]
        else:
            candidates = [f"{name}.{s}." for s in search] + [name + "."]
        answered = False
        for candidate in candidates:
            result = self._query(candidate, family, nameservers, options)
            if result is None:
                continue
            answered = True
            if result:
                return result
        return [] if answered else None

    def _host_resolver(self, name: str, family: int) -> list[str] | None:
        try:
            infos = _real_getaddrinfo(name, None, family, socket.SOCK_STREAM)
        except socket.gaierror as err:
            return [] if err.errno == socket.EAI_NONAME else None
        return list(dict.fromkeys(str(i[4][0]) for i in infos))

    def _query(self, qname: str, family: int, nameservers: list[str], options: dict[str, int]) -> list[str] | None:
        dnslib = importlib.import_module("dnslib")  # only a pod that looks a name up pays for it

        qtypes = {int(socket.AF_INET): ["A"], int(socket.AF_INET6): ["AAAA"]}.get(family, ["A", "AAAA"])
        addresses: list[str] = []
        answered = False
        for qtype in qtypes:
            request = dnslib.DNSRecord.question(qname, qtype)
            request.header.id = random.randint(0, 0xFFFF)  # a query id, not a secret
            reply = self._ask(request, nameservers, options)
            if reply is None:
                continue
            answered = True
            if reply.header.rcode == dnslib.RCODE.NXDOMAIN:
                return []
            rtype = getattr(dnslib.QTYPE, qtype)
            addresses += [str(rr.rdata) for rr in reply.rr if rr.rtype == rtype]
        return addresses if answered else None

    def _ask(self, request: Any, nameservers: list[str], options: dict[str, int]) -> Any:
        dnslib = importlib.import_module("dnslib")

        for _ in range(max(options["attempts"], 1)):
            for server in nameservers:
                port = self.dns_port if self.netmap.is_cluster_address(server) else 53
                with socket.socket(_family_of(server), socket.SOCK_DGRAM) as sock:
                    sock.settimeout(options["timeout"])
                    try:
                        RAW["sendto"](sock, request.pack(), (server, port))
                        while True:
                            data, _ = RAW["recvfrom"](sock, 65535)
                            reply = dnslib.DNSRecord.parse(data)
                            if reply.header.id == request.header.id:
                                return reply
                    except (OSError, dnslib.DNSError):
                        continue
        return None

    def getaddrinfo(
        self,
        host: Any,
        port: Any,
        family: int = 0,
        type: int = 0,  # noqa: A002 - socket.getaddrinfo's own parameter names
        proto: int = 0,
        flags: int = 0,
    ) -> list[Any]:
        name = host.decode() if isinstance(host, bytes) else host
        if name is None or flags & socket.AI_NUMERICHOST or _is_ip(name) or family not in (0, *_INET):
            return _real_getaddrinfo(host, port, family, type, proto, flags)
        addresses = self.lookup(name, family)
        if addresses is None:
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        if not addresses:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        numeric = flags | socket.AI_NUMERICHOST
        return [info for a in addresses for info in _real_getaddrinfo(a, port, _family_of(a), type, proto, numeric)]

    def install(self) -> None:
        def gethostbyname(name: str) -> str:
            return str(self.getaddrinfo(name, None, socket.AF_INET, socket.SOCK_STREAM)[0][4][0])

        def gethostbyname_ex(name: str) -> tuple[str, list[str], list[str]]:
            infos = self.getaddrinfo(name, None, socket.AF_INET, socket.SOCK_STREAM)
            return name, [], list(dict.fromkeys(str(i[4][0]) for i in infos))

        socket.getaddrinfo = self.getaddrinfo
        socket.gethostbyname = gethostbyname
        socket.gethostbyname_ex = gethostbyname_ex


_resolver: Resolver | None = None
_raw_open = builtins.open


def resolve_one(name: str) -> str:
    infos = socket.getaddrinfo(name, None, 0, socket.SOCK_STREAM)
    return str(infos[0][4][0])


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return False
    return True


def _family_of(address: str) -> int:
    return socket.AF_INET6 if ":" in address else socket.AF_INET


def load_netmap(path: str) -> Any:
    spec = importlib.util.spec_from_file_location("labkit_netmap", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # as an import does (its dataclass looks itself up there)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------- the run


def install(config: dict[str, Any]) -> None:
    """Everything but running the program (tests use it on their own)."""
    netmap = load_netmap(config["netmap"])
    resolver = Resolver(config["resolv_conf"], config["hosts"], netmap, int(config["dns_port"]))
    resolver.install()
    service, endpoint = config["api_service"], config["api_endpoint"]
    Network(netmap, config["pod_ip"], (service[0], int(service[1])), (endpoint[0], int(endpoint[1]))).install()
    map_files(PathMap(config["paths"]))


def main() -> None:
    with open(sys.argv[1]) as f:
        config = json.load(f)
    die_with_parent(int(config["parent_pid"]))
    if config.get("data_limit"):
        limit = int(config["data_limit"])
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    install(config)
    program = config["program"]
    sys.argv = list(config["argv"])
    sys.path.insert(0, os.path.dirname(program))  # as `python3 /app/prog.py` puts /app first
    runpy.run_path(program, run_name="__main__")


if __name__ == "__main__":
    main()
