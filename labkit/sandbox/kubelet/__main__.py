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
from labkit.sandbox.kubelet import servicerules
from labkit.sandbox.kubelet.agent import Kubelet
from labkit.sandbox.network.config import rules_file
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
    kubelet = Kubelet(client, config.node_name, config.home, config.report_file, config.slot)
    servicerules.use(rules_file(config.home))  # the Service proxy's rules, applied to wasm pods' connects
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


#: The kernel's OOM killer takes the process with the highest score first. A node process holds its pods, so it
#: takes the score the kubelet gives BestEffort containers (pkg/kubelet/qos/policy.go besteffortOOMScoreAdj):
#: a node that runs the machine out of memory dies alone, and the daemon with the API server (score 0) serves on.
OOM_SCORE_ADJ = 1000


def _first_for_the_oom_killer() -> None:
    try:  # raising one's own score needs no privilege; /proc may be missing (not Linux) or read-only
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(str(OOM_SCORE_ADJ))
    except OSError as err:
        log.warning("could not set oom_score_adj (%s): under memory pressure the kernel may pick another process", err)


def main(argv: list[str] | None = None) -> None:
    config = KubeletConfig.parse(argv)
    _first_for_the_oom_killer()
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {config.node_name} %(name)s %(levelname)s %(message)s")
    asyncio.run(serve(config))


if __name__ == "__main__":
    main()
