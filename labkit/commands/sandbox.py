"""``labkit sandbox up|down|status|env|logs``: the embedded cluster's lifecycle."""

from __future__ import annotations

import argparse
import json

from labkit import config
from labkit.sandbox import client


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "sandbox",
        help="start, stop and inspect the embedded sandbox cluster",
        description="The sandbox is a Kubernetes-compatible cluster that runs inside labkit (simulated k3s nodes "
        "running real wasm). Its state lives in SQLite under LABKIT_HOME, so down/up keeps every object.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    up = actions.add_parser("up", help="start the sandbox (idempotent)")
    up.add_argument(
        "--nodes", type=int, default=None, help="number of nodes (default: keep the current count, 1 at first)"
    )
    up.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the API server")
    up.set_defaults(func=run_up)
    actions.add_parser("down", help="stop the sandbox; objects are kept").set_defaults(func=run_down)
    st = actions.add_parser("status", help="is it running, where, its processes (API server, one kubelet per node)")
    st.add_argument("--json", action="store_true", help="the same as -o json")
    st.add_argument("-o", "--output", choices=["json"], default=None, help="print JSON")
    st.set_defaults(func=run_status)
    actions.add_parser(
        "env", help='print `export KUBECONFIG=…` for your shell: eval "$(labkit sandbox env)"'
    ).set_defaults(func=run_env)
    logs = actions.add_parser("logs", help="print the daemon log")
    logs.add_argument("-n", "--lines", type=int, default=50)
    logs.set_defaults(func=run_logs)


def run_up(args: argparse.Namespace) -> int:
    info = client.ensure_running(nodes=args.nodes, timeout=args.timeout)
    print(f"sandbox running at {info.server} (pid {info.pid}, {info.nodes} node(s), {info.version})")
    if info.notice:
        print(f"note: {info.notice}")
    for node in info.node_processes:
        print(f"  node {node.name}: kubelet pid {node.pid or '-'}, {node.state}")
    print("simulated: k3s nodes with the runwasi WasmEdge shim; wasm modules run for real in wasmtime")
    print(f'use it from a shell: eval "$(labkit sandbox env)"   # KUBECONFIG={info.kubeconfig}')
    return 0


def run_down(args: argparse.Namespace) -> int:
    print("sandbox stopped (objects kept)" if client.stop() else "sandbox was not running")
    return 0


def run_status(args: argparse.Namespace) -> int:
    info = client.status()
    if args.json or args.output == "json":
        print(json.dumps({"running": True, **info.to_json()} if info else {"running": False}))
    elif info:
        print(f"running at {info.server}, {info.nodes} node(s), kubeconfig {info.kubeconfig}")
        if info.notice:
            print(f"  note: {info.notice}")
        print(f"  {'PROCESS':<28} {'PID':>8}  STATE")
        print(f"  {'api server (daemon)':<28} {info.pid:>8}  serving")
        for node in info.node_processes:
            print(f"  {'kubelet ' + node.name:<28} {node.pid or '-':>8}  {node.state}")
    else:
        print(f"not running (state in {config.sandbox_dir()}); start it with: labkit sandbox up")
    return 0 if info else 3


def run_env(args: argparse.Namespace) -> int:
    print(f"export KUBECONFIG={config.sandbox_kubeconfig()}")
    return 0


def run_logs(args: argparse.Namespace) -> int:
    path = config.sandbox_dir() / "daemon.log"
    if not path.exists():
        print(f"no daemon log yet at {path}")
        return 0
    print("\n".join(path.read_text(errors="replace").splitlines()[-args.lines :]))
    return 0
