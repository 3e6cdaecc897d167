"""``python -m labkit.sandbox.network --root R --server URL ...``: the sandbox's Service proxy and cluster DNS.

One asyncio loop: three informers (Services, EndpointSlices, Namespaces; list + watch, re-list after
410 Gone), a :class:`~labkit.sandbox.network.proxy.ServiceProxy` re-synced after every change, and the DNS
server on ``127.43.0.10:host_port(53)`` (the kube-dns address of the sandbox's
address slot, ``--slot``), UDP and TCP. When an address is taken (another process holds the slot's cluster
addresses) it says so in its log and in ``status.json`` and tries again every
:data:`RETRY_S` seconds. It ends when the daemon that started it is gone, as a kubelet does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import resource
import signal
from typing import Any

from labkit.fsutil import write_atomic
from labkit.sandbox.kubeclient.https import KubeClient, resource_path
from labkit.sandbox.kubeclient.informer import Informer
from labkit.sandbox.netmap import host_port, plan
from labkit.sandbox.network.config import NetworkConfig, network_dir, rules_file
from labkit.sandbox.network.dns import ClusterDNS, serve_dns
from labkit.sandbox.network.proxy import ServiceProxy
from labkit.sandbox.network.servicemap import ServiceMap

log = logging.getLogger("labkit.sandbox.network")

RETRY_S = 2.0
PARENT_CHECK_S = 1.0
#: fds the process may hold: listeners + 2 per proxied connection + UDP flows + DNS clients, with room
WANTED_FDS = 8192


def _raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = WANTED_FDS if hard == resource.RLIM_INFINITY else min(WANTED_FDS, hard)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


class NetworkNode:
    """The informers, the proxy and the DNS server, kept in step."""

    def __init__(self, config: NetworkConfig) -> None:
        self.config = config
        self.dns_ip = plan(config.slot).cluster_dns_ip  # the kube-dns Service's address in this sandbox's slot
        self.client = KubeClient(
            config.server, config.token_file.read_text().strip(), config.ca_file, user_agent="labkit-network"
        )
        self.map = ServiceMap()
        self.proxy = ServiceProxy(rules_file(config.root), skip_ips={self.dns_ip})
        self.dns = ClusterDNS(self.map, dns_ip=self.dns_ip)
        self.dns_error = "not started"
        self.changed = asyncio.Event()
        self.informers = {
            "services": Informer(self.client, resource_path("v1", "services")),
            "endpointslices": Informer(self.client, resource_path("discovery.k8s.io/v1", "endpointslices")),
            "namespaces": Informer(self.client, resource_path("v1", "namespaces")),
        }
        self.informers["services"].handlers.append(self._on(self.map.set_service, self.map.drop_service))
        self.informers["endpointslices"].handlers.append(self._on(self.map.set_slice, self.map.drop_slice))
        self.informers["namespaces"].handlers.append(
            self._on(
                lambda ns: self.map.namespaces.add(ns["metadata"]["name"]),
                lambda ns: self.map.namespaces.discard(ns["metadata"]["name"]),
            )
        )

    def _on(self, put: Any, drop: Any) -> Any:
        def handler(event_type: str, obj: dict[str, Any]) -> None:
            (drop if event_type == "DELETED" else put)(obj)
            self.changed.set()

        return handler

    async def run(self) -> None:
        tasks = [asyncio.ensure_future(i.run()) for i in self.informers.values()]
        try:
            await asyncio.gather(*(i.synced.wait() for i in self.informers.values()))
            dns_task = asyncio.ensure_future(self._serve_dns())
            while True:
                with contextlib.suppress(TimeoutError):  # a periodic pass retries failed binds
                    await asyncio.wait_for(self.changed.wait(), RETRY_S)
                self.changed.clear()
                self.dns.serial += 1
                await self.proxy.sync(list(self.map.frontends()))
                self.write_status()
        finally:
            for task in tasks:
                task.cancel()
            if "dns_task" in locals():
                dns_task.cancel()
            self.proxy.close()
            await self.client.close()

    async def _serve_dns(self) -> None:
        address = (self.dns_ip, host_port(53))
        while True:
            try:
                udp, tcp = await serve_dns(self.dns, *address)
            except OSError as err:
                if self.dns_error != str(err):
                    log.warning("cluster DNS cannot listen on %s:%d: %s; retrying", *address, err)
                self.dns_error = str(err)
                self.write_status()
                await asyncio.sleep(RETRY_S)
                continue
            self.dns_error = ""
            log.info("cluster DNS serving on %s:%d (UDP and TCP)", *address)
            self.write_status()
            try:
                await asyncio.Event().wait()
            finally:
                udp.close()
                tcp.close()

    def write_status(self) -> None:
        status = {
            "pid": os.getpid(),
            "dns": {
                "address": f"{self.dns_ip}:53",
                "wire": f"{self.dns_ip}:{host_port(53)}",
                "error": self.dns_error,
            },
            "listeners": sorted(f"{ip}:{port}/{proto}" for ip, port, proto in self.proxy.listeners),
        }
        write_atomic(network_dir(self.config.root) / "status.json", json.dumps(status), mode=0o600)


async def serve(config: NetworkConfig) -> None:
    node = NetworkNode(config)
    loop = asyncio.get_running_loop()
    main = asyncio.ensure_future(node.run())
    loop.add_signal_handler(signal.SIGTERM, main.cancel)
    loop.add_signal_handler(signal.SIGINT, main.cancel)
    parent = os.getppid()

    async def watch_parent() -> None:
        while os.getppid() == parent:  # noqa: ASYNC110 (nothing to wait on: polled, as the kubelet does)
            await asyncio.sleep(PARENT_CHECK_S)
        log.warning("the sandbox daemon (pid %d) is gone: the network process stops", parent)
        main.cancel()

    orphan_check = asyncio.ensure_future(watch_parent())
    try:
        await main
    except asyncio.CancelledError:
        log.info("network process stopping")
    finally:
        orphan_check.cancel()


def main(argv: list[str] | None = None) -> None:
    config = NetworkConfig.parse(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s network %(name)s %(levelname)s %(message)s")
    _raise_fd_limit()
    asyncio.run(serve(config))


if __name__ == "__main__":
    main()
