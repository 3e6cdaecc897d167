"""``python -m labkit.sandbox.kubelet --node-name N --home H ...``: one sandbox node's kubelet process.

The daemon starts it with the argv of a :class:`~labkit.sandbox.nodes.KubeletConfig`. SIGHUP restarts
the node's container runtime (its containerd config re-read, running pods untouched); SIGTERM stops the
node. The process also ends when the daemon that started it is gone, as a node without its cluster would.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal

from labkit.sandbox.kubeclient.https import KubeClient
from labkit.sandbox.kubelet.agent import Kubelet
from labkit.sandbox.nodes import KubeletConfig

log = logging.getLogger("labkit.sandbox.kubelet")

#: How often the kubelet checks that the daemon which started it still runs.
PARENT_CHECK_S = 1.0


async def serve(config: KubeletConfig) -> None:
    client = KubeClient(
        config.server,
        config.token_file.read_text().strip(),
        config.ca_file,
        user_agent=f"kubelet/labkit ({config.node_name})",
    )
    kubelet = Kubelet(client, config.node_name, config.home, config.report_file)
    loop = asyncio.get_running_loop()
    main = asyncio.ensure_future(kubelet.run())
    restarts: set[asyncio.Task[object]] = set()

    def restart() -> None:
        task = asyncio.ensure_future(kubelet.restart())
        restarts.add(task)
        task.add_done_callback(restarts.discard)

    loop.add_signal_handler(signal.SIGHUP, restart)
    loop.add_signal_handler(signal.SIGTERM, main.cancel)
    loop.add_signal_handler(signal.SIGINT, main.cancel)
    parent = os.getppid()

    async def watch_parent() -> None:
        while True:
            await asyncio.sleep(PARENT_CHECK_S)
            if os.getppid() != parent:
                break
        log.warning("the sandbox daemon (pid %d) is gone: node %s stops", parent, config.node_name)
        main.cancel()

    orphan_check = asyncio.ensure_future(watch_parent())
    try:
        await main
    except asyncio.CancelledError:
        log.info("node %s stopping", config.node_name)
    finally:
        orphan_check.cancel()
        await client.close()


def main(argv: list[str] | None = None) -> None:
    config = KubeletConfig.parse(argv)
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {config.node_name} %(name)s %(levelname)s %(message)s")
    asyncio.run(serve(config))


if __name__ == "__main__":
    main()
