#!/usr/local/bin/python3
"""labkit's HTTP echo server: the first program labkit ships as a native (non-wasm) pod.

Standard library only, so it runs with any Python 3.11+. It answers every GET and POST with a JSON
document of what it received and who it is::

    {"pod": "<HOSTNAME>", "method": "GET", "path": "/x", "headers": {...}, "body": "", "client": "ip:port"}

and three paths for tests and learners: ``/healthz`` (``ok``), ``/resolve?name=N`` (the addresses
``socket.getaddrinfo`` finds for N, or the error it raised: inside a pod that is the pod's resolver) and
``/incluster`` (the Services of the pod's namespace, listed with the official ``kubernetes`` client from its
in-cluster config, or the error: what the pod's ServiceAccount may see, as the service-watcher will).

Options: ``--port`` (8080), ``--host`` (0.0.0.0), ``--exit-after S`` with ``--exit-code N`` (end by
itself, to show restarts and back-off), ``--allocate-mib M`` (hold M MiB, to show a memory limit),
``--ignore-sigterm`` (to show the kubelet's SIGKILL after the grace period). SIGTERM ends it with 0.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

MAX_BODY = 1 << 20


def say(line: str) -> None:
    """One line to stdout, at once: the container's log."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


class EchoHandler(BaseHTTPRequestHandler):
    server_version = "labkit-echo/1"

    def _send(self, code: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _echo(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/healthz":
            self._send(200, b"ok\n", "text/plain")
            return
        if url.path == "/resolve":
            name = (parse_qs(url.query).get("name") or [""])[0]
            try:
                found = sorted({info[4][0] for info in socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)})
                answer: dict[str, object] = {"name": name, "addresses": found}
            except OSError as err:
                answer = {"name": name, "error": f"{type(err).__name__}: {err}"}
            self._send(200, json.dumps(answer).encode())
            return
        if url.path == "/incluster":
            self._send(200, json.dumps(in_cluster_services()).encode())
            return
        length = min(int(self.headers.get("Content-Length") or 0), MAX_BODY)
        body = self.rfile.read(length) if length > 0 else b""
        document = {
            "pod": os.environ.get("HOSTNAME", ""),
            "method": self.command,
            "path": self.path,
            "headers": dict(self.headers.items()),
            "body": body.decode("utf-8", "replace"),
            "client": f"{self.client_address[0]}:{self.client_address[1]}",
        }
        self._send(200, json.dumps(document).encode())

    do_GET = _echo
    do_POST = _echo

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (the base class's name)
        say(f"{self.client_address[0]} {format % args}")


def in_cluster_services() -> dict[str, object]:
    """The Services of this pod's namespace, through the in-cluster config, or what went wrong."""
    try:
        from kubernetes import client, config  # only this path needs the client library

        config.load_incluster_config()  # type: ignore[no-untyped-call]
        with open("/var/run/secrets/kubernetes.io/serviceaccount/namespace") as f:
            namespace = f.read().strip()
        with client.ApiClient() as api:
            services = client.CoreV1Api(api).list_namespaced_service(namespace)
        names = sorted(str(s.metadata.name) for s in services.items if s.metadata is not None)
        return {"namespace": namespace, "services": names}
    except Exception as err:  # noqa: BLE001 - the answer is the error, for the learner to read
        return {"error": f"{type(err).__name__}: {getattr(err, 'status', '')} {getattr(err, 'reason', '') or err}"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="echo-server", description="labkit's HTTP echo server")
    parser.add_argument("--host", default="0.0.0.0")  # a pod's server listens on its pod IP
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--exit-after", type=float, default=None, metavar="SECONDS")
    parser.add_argument("--exit-code", type=int, default=0)
    parser.add_argument("--allocate-mib", type=int, default=0)
    parser.add_argument("--ignore-sigterm", action="store_true")
    args = parser.parse_args(argv)
    held = bytearray(args.allocate_mib << 20)  # touched, so it is resident
    for i in range(0, len(held), 4096):
        held[i] = 1
    server = ThreadingHTTPServer((args.host, args.port), EchoHandler)
    server.daemon_threads = True
    if args.ignore_sigterm:
        signal.signal(signal.SIGTERM, lambda *_: say("SIGTERM ignored"))
    else:
        signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    if args.exit_after is not None:
        threading.Timer(args.exit_after, lambda: os._exit(args.exit_code)).start()
    host, port = server.socket.getsockname()[:2]
    say(f"echo-server listening on {host}:{port}")
    try:
        server.serve_forever()
    finally:
        server.server_close()
    say("echo-server stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
