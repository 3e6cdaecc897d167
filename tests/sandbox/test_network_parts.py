"""The network process's parts in one process, on real sockets: the DNS server asked with dnslib over UDP and TCP,
the proxy's UDP forwarding, its bounds, and the kubelet's Service rules (no daemon: fast)."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from dnslib import EDNS0, RCODE, DNSRecord

from labkit.sandbox.kubelet.servicerules import ServiceRules, seen_port, wire_port
from labkit.sandbox.netmap import host_port
from labkit.sandbox.network.dns import ClusterDNS, serve_dns
from labkit.sandbox.network.proxy import MAX_CONNECTIONS, MAX_LISTENERS, MAX_PORTS_PER_SERVICE, ServiceProxy
from labkit.sandbox.network.servicemap import Frontend, ServiceMap

DNS_IP = "127.43.250.10"  # a Service address no sandbox allocates this low in the range's end, for the test only


def service(name: str, cluster_ip: str, ports: list[dict], ns: str = "lab") -> dict:
    return {"metadata": {"namespace": ns, "name": name}, "spec": {"clusterIP": cluster_ip, "ports": ports}}


def endpoint_slice(svc: str, ips: list[str], ports: list[dict], ns: str = "lab", ready: bool = True) -> dict:
    return {
        "metadata": {"namespace": ns, "name": f"{svc}-x", "labels": {"kubernetes.io/service-name": svc}},
        "addressType": "IPv4",
        "ports": ports,
        "endpoints": [{"addresses": [ip], "conditions": {"ready": ready}} for ip in ips],
    }


@pytest.fixture
def cluster_map() -> ServiceMap:
    m = ServiceMap(namespaces={"lab", "kube-system"})
    m.set_service(
        service("web", "127.43.250.5", [{"name": "http", "port": 80}, {"name": "dns", "port": 53, "protocol": "UDP"}])
    )
    m.set_slice(
        endpoint_slice("web", ["127.42.250.2", "127.42.250.3"], [{"name": "http", "port": 8080, "protocol": "TCP"}])
    )
    m.set_service(service("db", "None", [{"name": "pg", "port": 5432}]))
    m.set_slice(endpoint_slice("db", [f"127.42.250.{n}" for n in range(10, 70)], [{"name": "pg", "port": 5432}]))
    return m


@pytest.fixture
def dns_server(cluster_map: ServiceMap) -> Iterator[tuple[str, int]]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    with socket.socket() as probe:
        probe.bind((DNS_IP, 0))
        port = probe.getsockname()[1]
    udp, tcp = asyncio.run_coroutine_threadsafe(
        serve_dns(ClusterDNS(cluster_map, dns_ip=DNS_IP), DNS_IP, port), loop
    ).result(5)
    yield DNS_IP, port

    async def shutdown() -> None:
        udp.close()
        tcp.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run_coroutine_threadsafe(shutdown(), loop).result(5)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


def ask(server: tuple[str, int], name: str, qtype: str, tcp: bool = False, edns: bool = False) -> DNSRecord:
    query = DNSRecord.question(name, qtype)
    if edns:
        query.add_ar(EDNS0(udp_len=4096))
    return DNSRecord.parse(query.send(*server, tcp=tcp, timeout=5))


@pytest.mark.parametrize("tcp", [False, True])
def test_dns_records_as_coredns_gives_them(dns_server, tcp: bool) -> None:
    assert [str(r.rdata) for r in ask(dns_server, "web.lab.svc.cluster.local", "A", tcp).rr] == ["127.43.250.5"]
    assert [str(r.rdata) for r in ask(dns_server, "WEB.Lab.svc.cluster.local.", "A", tcp).rr] == ["127.43.250.5"]
    srv = ask(dns_server, "_dns._udp.web.lab.svc.cluster.local", "SRV", tcp)
    assert [(r.rdata.port, str(r.rdata.target)) for r in srv.rr] == [(53, "web.lab.svc.cluster.local.")]
    assert ask(dns_server, "_dns._tcp.web.lab.svc.cluster.local", "SRV", tcp).header.rcode == RCODE.NXDOMAIN
    endpoint = ask(dns_server, "127-42-250-2.web.lab.svc.cluster.local", "A", tcp)
    assert [str(r.rdata) for r in endpoint.rr] == ["127.42.250.2"]
    assert ask(dns_server, "1-2-3-4.lab.pod.cluster.local", "A", tcp).rr[0].rdata.toZone() == "1.2.3.4"
    for nx in ("1-2-3-4.nons.pod.cluster.local", "x-y.lab.pod.cluster.local", "a.b.c.d.e.f.cluster.local", "foo.org"):
        answer = ask(dns_server, nx, "A", tcp)
        assert answer.header.rcode == RCODE.NXDOMAIN, nx
    soa = ask(dns_server, "cluster.local", "SOA", tcp).rr[0].rdata
    assert (str(soa.mname), str(soa.rname), soa.times[1:]) == (
        "ns.dns.cluster.local.",
        "hostmaster.cluster.local.",
        (7200, 1800, 86400, 5),
    )
    ns = ask(dns_server, "cluster.local", "NS", tcp)
    assert str(ns.rr[0].rdata) == "ns.dns.cluster.local." and str(ns.ar[0].rdata) == DNS_IP
    assert not ask(dns_server, "lab.svc.cluster.local", "A", tcp).rr  # a namespace: NODATA
    assert ask(dns_server, "lab.svc.cluster.local", "A", tcp).header.rcode == RCODE.NOERROR


def test_a_big_headless_answer_is_truncated_over_udp_and_whole_over_tcp(dns_server) -> None:
    udp = ask(dns_server, "db.lab.svc.cluster.local", "A")
    assert udp.header.tc and not udp.rr  # 60 A records do not fit 512 bytes
    assert len(ask(dns_server, "db.lab.svc.cluster.local", "A", edns=True).rr) == 60  # EDNS0: 4096 bytes
    assert len(ask(dns_server, "db.lab.svc.cluster.local", "A", tcp=True).rr) == 60
    srv = ask(dns_server, "_pg._tcp.db.lab.svc.cluster.local", "SRV", tcp=True)
    assert {r.rdata.weight for r in srv.rr} == {1} and len(srv.ar) == 60  # floor(100 / 60) = 1


def test_bad_messages_get_formerr_and_do_not_stop_the_server(dns_server) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(5)
        s.sendto(b"\xab\xcd" + b"\x00" * 3, dns_server)  # too short for a header: dropped
        s.sendto(b"\xab\xcd\x01\x00\x00\x05" + b"\xff" * 40, dns_server)
        reply = DNSRecord.parse(s.recv(512))
        assert (reply.header.id, reply.header.rcode) == (0xABCD, RCODE.FORMERR)
    with socket.create_connection(dns_server, timeout=5) as s:  # TCP: a length bigger than what follows, then close
        s.sendall(b"\xff\xff\x00")
    assert ask(dns_server, "web.lab.svc.cluster.local", "A", tcp=True).rr


def run(coro):
    return asyncio.run(coro)


def test_udp_services_are_proxied_per_client_and_spread(tmp_path: Path) -> None:
    backends = []
    for n in (2, 3):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((f"127.42.251.{n}", host_port(53)))
        backends.append(s)

    def echo(s: socket.socket) -> None:
        while True:
            try:
                data, addr = s.recvfrom(2048)
            except OSError:
                return
            s.sendto(s.getsockname()[0].encode() + b" " + data, addr)

    for s in backends:
        threading.Thread(target=echo, args=(s,), daemon=True).start()

    async def scenario() -> Counter[str]:
        proxy = ServiceProxy(tmp_path / "rules.json")
        frontend = Frontend("lab/dns", "dns", "127.43.251.5", 53, "UDP", (("127.42.251.2", 53), ("127.42.251.3", 53)))
        await proxy.sync([frontend])
        seen: Counter[str] = Counter()

        def clients() -> None:
            for k in range(100):
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as c:
                    c.settimeout(5)
                    c.sendto(b"q%d" % k, ("127.43.251.5", host_port(53)))
                    who, echoed = c.recv(2048).split(b" ")
                    assert echoed == b"q%d" % k
                    seen[who.decode()] += 1

        await asyncio.to_thread(clients)
        assert json.loads((tmp_path / "rules.json").read_text())["tcp"] == {}  # UDP is not DNATed in kubelets
        proxy.close()
        return seen

    seen = run(scenario())
    for s in backends:
        s.close()
    assert set(seen) == {"127.42.251.2", "127.42.251.3"} and min(seen.values()) >= 25, seen


def test_more_tcp_connections_than_the_proxy_holds_at_once_all_pass_one_after_another() -> None:
    """A server that answers and closes, a client that reads to the end and closes: each connection ends with a
    FIN both ways and must leave the proxy's count, or the Service refuses everyone after MAX_CONNECTIONS."""
    server = socket.create_server(("127.42.254.2", host_port(8080)))

    def answer() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.recv(100)
                conn.sendall(b"done")

    threading.Thread(target=answer, daemon=True).start()

    async def scenario() -> tuple[int, int]:
        proxy = ServiceProxy()
        await proxy.sync([Frontend("lab/web", "http", "127.43.254.5", 8080, "TCP", (("127.42.254.2", 8080),))])

        def clients() -> int:
            answered = 0
            for _ in range(MAX_CONNECTIONS + 100):
                with socket.create_connection(("127.43.254.5", host_port(8080)), timeout=5) as c:
                    c.sendall(b"hi")
                    c.shutdown(socket.SHUT_WR)
                    answered += c.recv(100) == b"done"
            return answered

        answered = await asyncio.to_thread(clients)
        for _ in range(50):  # the last connection's close reaches the proxy's loop
            if proxy.connections == 0:
                break
            await asyncio.sleep(0.02)
        left = proxy.connections
        proxy.close()
        return answered, left

    answered, left = run(scenario())
    server.close()
    assert (answered, left) == (MAX_CONNECTIONS + 100, 0)


def test_listeners_are_bounded_per_service_and_in_all() -> None:
    proxy = ServiceProxy()
    wide = [Frontend("a/wide", f"p{k}", "127.43.252.1", 1000 + k, "TCP", (("127.42.252.2", 80),)) for k in range(5000)]
    many = [Frontend(f"a/s{k}", "p", f"127.43.{253 + k // 250}.{k % 250 + 1}", 80, "TCP", ()) for k in range(600)]
    zero = [Frontend("a/zero", "p", "127.43.252.9", 0, "TCP", (("127.42.252.2", 80),))]
    wanted = proxy.wanted([*wide, *many, *zero])
    assert sum(1 for f in wanted.values() if f.service == "a/wide") == MAX_PORTS_PER_SERVICE
    assert len(wanted) == MAX_LISTENERS and not any(f.port == 0 for f in wanted.values())


def test_kubelet_rules_dnat_refuse_and_translate(tmp_path: Path) -> None:
    rules_file = tmp_path / "rules.json"
    rules_file.write_text(
        json.dumps(
            {
                "version": 1,
                "tcp": {
                    "127.43.0.5:80": {"backends": [["127.42.0.2", 8080], ["127.42.1.2", 8080]], "affinity": 0},
                    "127.43.0.6:80": {"backends": [], "affinity": 0},
                    "127.43.0.7:80": {"backends": [["127.42.0.2", 80], ["127.42.1.2", 80]], "affinity": 60},
                },
            }
        )
    )
    rules = ServiceRules(rules_file)
    picks = Counter(rules.dnat("127.43.0.5", 80, "127.42.0.9") for _ in range(400))
    assert set(picks) == {("127.42.0.2", 8080), ("127.42.1.2", 8080)} and min(picks.values()) > 140
    with pytest.raises(ConnectionRefusedError):
        rules.dnat("127.43.0.6", 80, "127.42.0.9")
    assert len({rules.dnat("127.43.0.7", 80, "127.42.0.9") for _ in range(50)}) == 1  # ClientIP affinity
    assert rules.dnat("127.43.0.99", 80, "x") is None and rules.dnat("127.42.0.2", 80, "x") is None
    assert (wire_port("127.42.0.2", 80), wire_port("127.0.0.1", 80), seen_port("127.43.0.5", 61080)) == (61080, 80, 80)
