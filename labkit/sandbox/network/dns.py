"""The cluster DNS: ``cluster.local`` answered as CoreDNS's kubernetes plugin answers it, over UDP and TCP.

k3s runs CoreDNS behind ``kube-system/kube-dns`` (10.43.0.10, ports ``dns`` 53/UDP and ``dns-tcp`` 53/TCP)
with ``kubernetes cluster.local in-addr.arpa ip6.arpa { pods insecure ... }`` (k3s
``manifests/coredns.yaml``). Here a real DNS server, built on ``dnslib``'s message codec, listens on
the Service's own address, ``127.43.0.10:host_port(53)`` (:mod:`labkit.sandbox.netmap`), and answers from
the Services and EndpointSlices the network process watches (:mod:`~labkit.sandbox.network.servicemap`).

What it answers, each as CoreDNS does (``plugin/kubernetes/kubernetes.go``, ``parse.go``,
``plugin/backend_lookup.go``; TTL 5 s, the plugin's default ``ttl``):

- ``<svc>.<ns>.svc.cluster.local`` A: the ClusterIP; for a headless Service (``clusterIP: None``) the
  ready endpoints' addresses (each once);
- ``<endpoint>.<svc>.<ns>.svc.cluster.local`` A: that endpoint, named by its ``hostname`` or its dashed IP;
- ``_<port>._<proto>.<svc>.<ns>.svc.cluster.local`` SRV for a named port: priority 0, weight
  ``floor(100 / n)``, the port, and target ``<svc>.<ns>.svc.cluster.local`` (headless:
  ``<endpoint>.<svc>...``) with its A record in the additional section;
- ``<a-b-c-d>.<ns>.pod.cluster.local`` A: ``a.b.c.d`` for any IP in an existing namespace (``pods insecure``);
- an existing name asked for another type (AAAA: the sandbox is IPv4 only): NOERROR, no answer, the zone's
  SOA in the authority section (NODATA); a name that does not exist: NXDOMAIN with the SOA, as
  ``BackendError`` writes it;
- the apex: SOA ``ns.dns.cluster.local. hostmaster.cluster.local.`` (refresh 7200, retry 1800, expire 86400,
  minimum the TTL), NS ``ns.dns.cluster.local.`` with the DNS Service's address.

Unlike k3s, nothing is forwarded: every name outside ``cluster.local`` is NXDOMAIN (the sandbox does not
reach the internet), and reverse (PTR) zones are not served (NXDOMAIN).

**Bounds**: a UDP answer larger than the client's buffer (512 bytes, or its EDNS0 size) is sent empty with
TC set, so the client retries over TCP, as RFC 1035 §4.2.1 and RFC 6891 ask; TCP holds at most
:data:`MAX_TCP_CLIENTS` connections, each closed after :data:`TCP_IDLE_S` idle seconds.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import struct
from typing import TYPE_CHECKING, Any, cast

from dnslib import AAAA, NS, QTYPE, RCODE, RR, SOA, SRV, A, DNSError, DNSRecord

from labkit.sandbox.netmap import CLUSTER_DNS_IP, CLUSTER_DOMAIN

if TYPE_CHECKING:
    from labkit.sandbox.network.servicemap import ServiceMap

log = logging.getLogger("labkit.sandbox.network.dns")

TTL = 5  # the kubernetes plugin's default `ttl`
UDP_DEFAULT = 512
MAX_TCP_CLIENTS = 256
TCP_IDLE_S = 10.0  # [inferred] a bound of ours; CoreDNS's TCP read timeout is of the same order
_ = AAAA  # the sandbox has no IPv6 records: AAAA questions get NODATA


class NoSuchName(Exception):
    """The name does not exist (NXDOMAIN)."""


class ClusterDNS:
    """Answers DNS messages for *zone* from a :class:`ServiceMap`."""

    def __init__(self, services: ServiceMap, zone: str = CLUSTER_DOMAIN, dns_ip: str = CLUSTER_DNS_IP) -> None:
        self.map, self.dns_ip = services, dns_ip
        self.zone = tuple(zone.lower().strip(".").split("."))
        self.origin = ".".join(self.zone) + "."
        self.serial = 1

    # -- messages ----------------------------------------------------------------------------------

    def answer(self, data: bytes, limit: int | None = None) -> bytes | None:
        """The reply to one DNS message (None: not even a header to answer); *limit*: UDP size before TC."""
        try:
            request = DNSRecord.parse(data)
        except (DNSError, struct.error, IndexError, ValueError, UnicodeDecodeError):
            if len(data) < 12:
                return None
            reply = DNSRecord()  # FORMERR, echoing the id, as a server does for a message it cannot parse
            reply.header.id = int.from_bytes(data[:2], "big")
            reply.header.qr, reply.header.rcode = 1, RCODE.FORMERR
            return bytes(reply.pack())
        reply = request.reply()
        reply.header.ra = 0  # no recursion: nothing is forwarded
        if request.header.opcode != 0:
            reply.header.rcode = RCODE.NOTIMP
        elif len(request.questions) != 1:
            reply.header.rcode = RCODE.FORMERR
        else:
            question = request.questions[0]
            self.resolve(str(question.qname), question.qtype, reply)
        packed = bytes(reply.pack())
        if limit is not None:
            size = max(next((rr.rclass for rr in request.ar if rr.rtype == QTYPE.OPT), UDP_DEFAULT), UDP_DEFAULT)
            if len(packed) > min(size, limit):
                reply.rr, reply.auth, reply.ar = [], [], []
                reply.header.tc = 1
                packed = bytes(reply.pack())
        return packed

    def resolve(self, qname: str, qtype: int, reply: DNSRecord) -> None:
        """Fill *reply* with the answer for (*qname*, *qtype*)."""
        labels = tuple(qname.lower().strip(".").split(".")) if qname.strip(".") else ()
        if labels[-len(self.zone) :] != self.zone or any(not label.isascii() for label in labels):
            reply.header.rcode = RCODE.NXDOMAIN  # not ours, and nothing is forwarded
            return
        base = labels[: -len(self.zone)]
        try:
            records, extra = self.lookup(base, qtype)
        except NoSuchName:
            reply.header.rcode = RCODE.NXDOMAIN
            reply.add_auth(self.soa())
            return
        for rdata, rtype in records:
            reply.add_answer(RR(qname, rtype, ttl=TTL, rdata=rdata))
        for name, ip in extra:
            reply.add_ar(RR(name, QTYPE.A, ttl=TTL, rdata=A(ip)))
        if not records:
            reply.add_auth(self.soa())  # NODATA

    def soa(self) -> RR:
        minimum = TTL
        return RR(
            self.origin,
            QTYPE.SOA,
            ttl=min(minimum, 300),
            rdata=SOA(f"ns.dns.{self.origin}", f"hostmaster.{self.origin}", (self.serial, 7200, 1800, 86400, minimum)),
        )

    # -- the kubernetes plugin's records ------------------------------------------------------------

    def lookup(self, base: tuple[str, ...], qtype: int) -> tuple[list[tuple[Any, int]], list[tuple[str, str]]]:
        """(answers as (rdata, type), additional A records as (name, ip)) for the labels *base* under the zone."""
        if not base or base in (("svc",), ("pod",)):
            if not base and qtype == QTYPE.SOA:
                return [(self.soa().rdata, QTYPE.SOA)], []
            if not base and qtype == QTYPE.NS:
                return [(NS(f"ns.dns.{self.origin}"), QTYPE.NS)], [(f"ns.dns.{self.origin}", self.dns_ip)]
            return [], []  # the apex, svc. and pod.: NODATA (parseRequest)
        kind, rest = base[-1], base[:-1]
        if kind not in ("svc", "pod") or len(rest) > 4:
            raise NoSuchName  # errInvalidRequest: not svc/pod, or too many labels
        namespace = rest[-1]
        if namespace not in self.map.namespaces:
            raise NoSuchName  # errNsNotExposed
        if len(rest) == 1:
            return [], []  # <ns>.svc / <ns>.pod: NODATA
        if kind == "pod":
            return self._pod(rest, qtype)
        service = self.map.service(namespace, rest[-2])
        if service is None:
            raise NoSuchName
        endpoint, port, protocol = "", "", ""
        if len(rest) == 3:
            endpoint = rest[0]
        elif len(rest) == 4:
            port, protocol = rest[0].removeprefix("_"), rest[1].removeprefix("_")
        found = self._services(service, endpoint, port, protocol)
        if not found:
            raise NoSuchName
        if qtype == QTYPE.A:
            ips = list(dict.fromkeys(ip for _, ip, _ in found))
            return [(A(ip), QTYPE.A) for ip in ips], []
        if qtype == QTYPE.SRV:
            # backend_lookup.go SRV: weight floor(100 / n) over the n services found, at least 1; port -1 left out
            weight = max(100 * 100 // (100 * len(found)), 1)
            named = [f for f in found if f[2] > 0]
            records: list[tuple[Any, int]] = []
            extra: list[tuple[str, str]] = []
            seen: set[tuple[str, str]] = set()
            for target, ip, number in named:  # isDuplicate: one SRV per (target, port), one A per (target, ip)
                if (target, str(number)) not in seen:
                    records.append((SRV(0, weight, number, target), QTYPE.SRV))
                    seen.add((target, str(number)))
                if (target, ip) not in seen:
                    extra.append((target, ip))
                    seen.add((target, ip))
            return records, extra
        return [], []  # AAAA and every other type of an existing name: NODATA

    def _pod(self, rest: tuple[str, ...], qtype: int) -> tuple[list[tuple[Any, int]], list[tuple[str, str]]]:
        if len(rest) != 2:
            raise NoSuchName
        name = rest[0]
        dashed = name.replace("-", ".") if name.count("-") == 3 and "--" not in name else name.replace("-", ":")
        try:
            ip = ipaddress.ip_address(dashed)
        except ValueError:
            raise NoSuchName from None
        if qtype == QTYPE.A and ip.version == 4:
            return [(A(str(ip)), QTYPE.A)], []
        return [], []

    def _services(self, service: dict[str, Any], endpoint: str, port: str, protocol: str) -> list[tuple[str, str, int]]:
        """findServices: (record name, ip, port; -1 for none) for the query's endpoint, port and protocol."""
        meta, spec = service["metadata"], service.get("spec") or {}
        fqdn = f"{meta['name']}.{meta.get('namespace', '')}.svc.{self.origin}"

        def matches(name: str, proto: str) -> bool:
            return (not port or port == name.lower()) and (not protocol or protocol == proto.lower())

        if spec.get("type") == "ExternalName":
            return []  # a CNAME upstream; the sandbox resolves no outside names
        headless = spec.get("clusterIP") == "None"
        if headless or endpoint:
            out = []
            for ep in self.map.endpoints(f"{meta.get('namespace', '')}/{meta['name']}"):
                hostname = ep.hostname or ep.ip.replace(".", "-")
                if endpoint and endpoint != hostname.lower():
                    continue
                for name, number, proto in ep.ports or (("", -1, ""),):
                    if number == -1 or matches(name, proto):
                        out.append((f"{hostname}.{fqdn}", ep.ip, number))
            return out
        ips = [ip for ip in spec.get("clusterIPs") or [spec.get("clusterIP")] if ip]
        return [
            (fqdn, ip, int(p["port"]))
            for p in spec.get("ports") or ()
            if matches(p.get("name") or "", p.get("protocol") or "TCP")
            for ip in ips
        ]


# -- servers ---------------------------------------------------------------------------------------------


class UdpDns(asyncio.DatagramProtocol):
    def __init__(self, dns: ClusterDNS) -> None:
        self.dns = dns
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast("asyncio.DatagramTransport", transport)  # 3.11's selector transport is not a subclass

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        reply = self.dns.answer(data, limit=65535)
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)


class TcpDns:
    """DNS over TCP (RFC 1035 §4.2.2: each message after a two-byte length; several per connection)."""

    def __init__(self, dns: ClusterDNS) -> None:
        self.dns = dns
        self.clients = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.clients >= MAX_TCP_CLIENTS:
            writer.close()
            return
        self.clients += 1
        try:
            while True:
                size = int.from_bytes(await asyncio.wait_for(reader.readexactly(2), TCP_IDLE_S), "big")
                message = await asyncio.wait_for(reader.readexactly(size), TCP_IDLE_S)
                reply = self.dns.answer(message)
                if reply is None:
                    break
                writer.write(len(reply).to_bytes(2, "big") + reply)
                await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.clients -= 1
            writer.close()


async def serve_dns(dns: ClusterDNS, ip: str, port: int) -> tuple[asyncio.DatagramTransport, asyncio.Server]:
    """Listen on *ip*:*port* over UDP and TCP (OSError when the address is taken)."""
    loop = asyncio.get_running_loop()
    udp, _ = await loop.create_datagram_endpoint(lambda: UdpDns(dns), local_addr=(ip, port))
    try:
        tcp = await asyncio.start_server(TcpDns(dns).handle, ip, port, reuse_address=True)
    except OSError:
        udp.close()
        raise
    return udp, tcp
