"""The sandbox's HTTP face: Kubernetes REST paths, content negotiation, watch streams.

It runs on its own thread and event loop (``ServerThread``), never the caller's:
a blocking client call made on the server's own loop would deadlock, and
ipykernel owns the main thread's loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from aiohttp import web

from labkit.sandbox import logs
from labkit.sandbox.api import authapis, discovery, eviction, metrics, patch, schemas, tables
from labkit.sandbox.api.auth import Authorizer, TokenAuthority, User
from labkit.sandbox.api.events import EVENTS, EVENTS_V1, from_events_v1, to_events_v1
from labkit.sandbox.api.registry import RESOURCES, Resource
from labkit.sandbox.api.responses import (
    JSON,
    flag,
    json_response,
    not_found_path,
    read_body,
    stream_watch,
    wants_table,
)
from labkit.sandbox.api.selectors import parse_field_selector, parse_label_selector
from labkit.sandbox.api.status import (
    StatusError,
    bad_request,
    forbidden,
    method_not_allowed,
    unauthorized,
)

if TYPE_CHECKING:
    from labkit.sandbox.api.apicore import ApiCore

log = logging.getLogger("labkit.sandbox.api.server")

#: What /version says: a k3s-shaped version string, marked as labkit's sandbox.
VERSION_INFO = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.5+labkit.sandbox",
    "gitCommit": "labkit-sandbox",
    "gitTreeState": "clean",
    "buildDate": "2026-01-01T00:00:00Z",
    "goVersion": "n/a (python)",
    "compiler": "labkit",
    "platform": "linux/amd64",
}

SERVICE_ACCOUNTS = RESOURCES.served("", "serviceaccounts")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Target:
    """A parsed REST path."""

    resource: Resource
    namespace: str | None
    name: str | None
    subresource: str

    @property
    def object_name(self) -> str:
        """The name on the path, for verbs on one object; a collection path answers 405 to them."""
        if self.name is None:
            raise method_not_allowed()
        return self.name


class ApiServer:
    def __init__(
        self,
        core: ApiCore,
        tokens: TokenAuthority,
        log_dir: Path | str,
        server_address: str = "127.0.0.1",
        extra_routes: Sequence[web.AbstractRouteDef] = (),
        usage_dir: Path | None = None,
    ) -> None:
        self.core = core
        self.metrics = metrics.MetricsApi(core, usage_dir) if usage_dir is not None else None
        self.tokens = tokens
        self.logs = logs.PodLogs(log_dir)
        self.server_address = server_address
        self._rbac: dict[tuple[str, str | None], tuple[int, list[dict[str, Any]]]] = {}
        self.authorizer = Authorizer(self._rbac_objects)
        self.app = web.Application(middlewares=[self._errors, self._authenticate], client_max_size=64 * 1024 * 1024)
        self.app.add_routes(extra_routes)  # before the catch-all, which would shadow them
        self.app.router.add_route("*", "/{tail:.*}", self._dispatch)

    def _rbac_objects(self, plural: str, namespace: str | None) -> list[dict[str, Any]]:
        """The roles or bindings the authorizer reads, copied once per change of their type, not per request."""
        resource = RESOURCES.served("rbac.authorization.k8s.io", plural)
        written = self.core.store.last_write(resource)
        cached = self._rbac.get((plural, namespace))
        if cached is not None and cached[0] == written:
            return cached[1]
        objects = self.core.store.list(resource, namespace)[0]
        self._rbac[(plural, namespace)] = (written, objects)
        return objects

    # ----------------------------------------------------------- middlewares
    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except StatusError as e:
            return json_response(e.to_status(), status=e.code)
        except web.HTTPException:
            raise
        except Exception as e:  # an internal error is still answered as a Status, never a traceback page
            log.exception("internal error on %s %s", request.method, request.path)
            return json_response(
                StatusError(500, "InternalError", f"Internal error occurred: {e}").to_status(), status=500
            )

    @web.middleware
    async def _authenticate(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in ("/healthz", "/readyz", "/livez", "/version"):
            request["user"] = None
            return await handler(request)
        header = request.headers.get("Authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else ""

        def sa_exists(ns: str, name: str, uid: str) -> bool:
            obj = self.core.store.peek(SERVICE_ACCOUNTS, ns, name)
            return obj is not None and (not uid or obj["metadata"]["uid"] == uid)

        user = self.tokens.authenticate(token, sa_exists) if token else None
        if user is None:
            raise unauthorized()
        request["user"] = user
        return await handler(request)

    # -------------------------------------------------------------- routing
    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        parts = [unquote(p) for p in request.path.strip("/").split("/") if p]
        if not parts:
            return json_response(
                {"paths": ["/api", "/api/v1", "/apis", "/healthz", "/livez", "/openapi/v3", "/readyz", "/version"]}
            )
        head = parts[0]
        if head in ("healthz", "readyz", "livez") and len(parts) == 1:
            return web.Response(text="ok")
        if head == "version" and len(parts) == 1:
            return json_response(VERSION_INFO)
        if head == "openapi":
            return self._openapi(request, parts[1:])
        if head == "api":
            if len(parts) == 1:
                return self._discovery(request, core=True)
            group, version, rest = "", parts[1], parts[2:]
        elif head == "apis":
            if len(parts) == 1:
                return self._discovery(request, core=False)
            if len(parts) == 2:
                group_doc = next((g for g in discovery.api_group_list()["groups"] if g["name"] == parts[1]), None)
                if group_doc is None:
                    raise not_found_path()
                return json_response({"kind": "APIGroup", "apiVersion": "v1", **group_doc})
            group, version, rest = parts[1], parts[2], parts[3:]
            if (group, version) == (metrics.GROUP, metrics.VERSION) and rest and self.metrics is not None:
                return self._metrics(request, rest, self.metrics)
        else:
            raise not_found_path()
        if not rest:
            doc = discovery.api_resource_list(group, version)
            if doc is None:
                raise not_found_path()
            return json_response(doc)
        target = self._target(group, version, rest)
        return await self._handle(request, target)

    def _target(self, group: str, version: str, rest: list[str]) -> Target:
        namespace = None
        if rest[0] == "namespaces" and len(rest) >= 3 and rest[2] not in ("status", "finalize"):
            namespace, rest = rest[1], rest[2:]
        resource = RESOURCES.by_plural(group, rest[0])
        if resource is None or resource.version != version:
            raise not_found_path()
        if resource.namespaced != (namespace is not None) and len(rest) > 1:
            raise not_found_path()
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else ""
        if len(rest) > 3 or (sub and sub not in resource.subresources):
            raise not_found_path()
        return Target(resource, namespace, name, sub)

    def _discovery(self, request: web.Request, core: bool) -> web.Response:
        if discovery.wants_aggregated(request.headers.get("Accept", "")):
            return json_response(discovery.aggregated(core), content_type=discovery.AGGREGATED_CONTENT_TYPE)
        return json_response(discovery.api_versions(self.server_address) if core else discovery.api_group_list())

    def _openapi(self, request: web.Request, rest: list[str]) -> web.Response:
        if rest == ["v3"]:
            return json_response(schemas.schemas().openapi_index())
        if rest and rest[0] == "v3":
            try:
                body = schemas.schemas().openapi_document("/".join(rest[1:]))
            except KeyError:
                raise not_found_path() from None
            response = web.Response(body=body, content_type=JSON)
            response.headers["Cache-Control"] = "public, immutable" if "hash" in request.query else "no-cache, private"
            return response
        raise not_found_path()  # OpenAPI v2: kubectl tolerates 404 and uses its compiled-in types

    def _metrics(self, request: web.Request, rest: list[str], api: metrics.MetricsApi) -> web.Response:
        resource, namespace, name = api.target(rest)
        self._authorize(request, "get" if name else "list", Target(resource, namespace, name, ""))
        return json_response(api.answer(resource, namespace, name, request.query.get("labelSelector", "")))

    # ------------------------------------------------------------ requests
    def _authorize(self, request: web.Request, verb: str, t: Target) -> None:
        user: User = request["user"]
        resource = f"{t.resource.plural}/{t.subresource}" if t.subresource else t.resource.plural
        if not self.authorizer.allowed(user, verb, t.resource.group, resource, t.namespace, t.name):
            raise forbidden(user.name, verb, t.resource, t.namespace, t.name)

    async def _body(self, request: web.Request, t: Target) -> Any:
        return read_body(await request.read(), request.headers.get("Content-Type", JSON), t.resource)

    def _answer(
        self, request: web.Request, t: Target, obj: dict[str, Any], status: int = 200, warnings: Sequence[str] = ()
    ) -> web.Response:
        if wants_table(request) and obj.get("kind") == t.resource.kind:
            table = tables.to_table(
                t.resource,
                [obj],
                list_rv=obj["metadata"].get("resourceVersion", ""),
                include_object=request.query.get("includeObject", "Metadata"),
            )
            return json_response(table, status, warnings=warnings)
        return json_response(obj, status, warnings=warnings)

    async def _handle(self, request: web.Request, t: Target) -> web.StreamResponse:
        method = request.method
        q = request.query
        core = self.core
        # Without fieldManager the API server names the manager after the client's User-Agent ("kubectl").
        manager = q.get("fieldManager") or request.headers.get("User-Agent", "").split("/", 1)[0]
        validation = q.get("fieldValidation", "Warn")
        dry_run = q.get("dryRun") == "All"
        if t.resource is EVENTS_V1:
            return await self._events_v1(request, t, manager)
        if t.subresource:
            return await self._subresource(request, t, manager, dry_run)
        if method == "GET" and t.name is None:
            verb = "watch" if flag(request, "watch") else "list"
            self._authorize(request, verb, t)
            if verb == "watch":
                return await self._watch(request, t)
            listing = core.list(
                t.resource,
                t.namespace,
                label_selector=q.get("labelSelector", ""),
                field_selector=q.get("fieldSelector", ""),
                limit=int(q["limit"]) if q.get("limit") else None,
                continue_token=q.get("continue"),
            )
            if wants_table(request):
                return json_response(
                    tables.to_table(
                        t.resource,
                        listing["items"],
                        list_rv=listing["metadata"]["resourceVersion"],
                        continue_token=listing["metadata"].get("continue"),
                        include_object=q.get("includeObject", "Metadata"),
                    )
                )
            return json_response(listing)
        if method == "GET":
            self._authorize(request, "get", t)
            return self._answer(request, t, core.get(t.resource, t.namespace, t.object_name))
        if method == "POST" and t.name is None:
            self._authorize(request, "create", t)
            body = await self._body(request, t)
            if t.resource.group == "authorization.k8s.io":
                return json_response(authapis.access_review(self.authorizer, request["user"], body), 201)
            obj, warnings = core.create(
                t.resource, t.namespace, body, manager=manager, validation=validation, dry_run=dry_run
            )
            return self._answer(request, t, obj, 201, warnings)
        if method == "PUT" and t.name:
            self._authorize(request, "update", t)
            body = await self._body(request, t)
            obj, warnings = core.replace(
                t.resource, t.namespace, t.object_name, body, manager=manager, validation=validation, dry_run=dry_run
            )
            return self._answer(request, t, obj, 200, warnings)
        if method == "PATCH" and t.name:
            return await self._patch(request, t, manager, validation, dry_run)
        if method == "DELETE":
            return await self._delete(request, t, dry_run)
        raise method_not_allowed()

    async def _events_v1(self, request: web.Request, t: Target, manager: str) -> web.StreamResponse:
        """``events.k8s.io/v1`` is a second view of the core Events, stored once (as in Kubernetes)."""
        core, q = self.core, request.query
        stored = Target(EVENTS, t.namespace, t.name, t.subresource)
        if request.method == "GET" and t.name is None:
            verb = "watch" if flag(request, "watch") else "list"
            self._authorize(request, verb, t)
            if verb == "watch":
                return await self._watch(request, stored, view=EVENTS_V1, present=to_events_v1)
            listing = core.list(
                EVENTS,
                t.namespace,
                label_selector=q.get("labelSelector", ""),
                field_selector=q.get("fieldSelector", ""),
            )
            items = [to_events_v1(e) for e in listing["items"]]
            if wants_table(request):
                return json_response(tables.to_table(EVENTS_V1, items, list_rv=listing["metadata"]["resourceVersion"]))
            return json_response({**listing, "kind": "EventList", "apiVersion": EVENTS_V1.api_version, "items": items})
        if request.method == "GET":
            self._authorize(request, "get", t)
            return self._answer(request, t, to_events_v1(core.get(EVENTS, t.namespace, t.object_name)))
        if request.method == "POST" and t.name is None:
            self._authorize(request, "create", t)
            body = from_events_v1(await self._body(request, t))
            obj, warnings = core.create(EVENTS, t.namespace, body, manager=manager, validation="Ignore")
            return self._answer(request, t, to_events_v1(obj), 201, warnings)
        if request.method == "DELETE" and t.name:
            self._authorize(request, "delete", t)
            return json_response(to_events_v1(core.delete(EVENTS, t.namespace, t.object_name)))
        raise method_not_allowed(
            "events.k8s.io/v1 Events are read, created and deleted here; update them through the core v1 API"
        )

    async def _patch(
        self, request: web.Request, t: Target, manager: str, validation: str, dry_run: bool, subresource: str = ""
    ) -> web.Response:
        self._authorize(request, "patch", t)
        if (
            t.name
            and self.core.store.peek(t.resource, t.namespace, t.object_name) is None
            and request.headers.get("Content-Type", "").startswith("application/apply-patch")
        ):
            self._authorize(request, "create", t)
        obj, warnings, created = self.core.patch(
            t.resource,
            t.namespace,
            t.object_name,
            request.headers.get("Content-Type", ""),
            await request.read(),
            subresource=subresource,
            manager=manager,
            force=flag(request, "force"),
            validation=validation,
            dry_run=dry_run,
        )
        return self._answer(request, t, obj, 201 if created else 200, warnings)

    async def _delete(self, request: web.Request, t: Target, dry_run: bool) -> web.Response:
        q = request.query
        options: dict[str, Any] = {}
        raw = await request.read()
        if raw:
            try:
                options = json.loads(raw)
            except ValueError as e:
                raise bad_request(f"error decoding DeleteOptions: {e}") from e
        propagation = options.get("propagationPolicy") or q.get("propagationPolicy")
        if options.get("orphanDependents") is True or q.get("orphanDependents") == "true":
            propagation = "Orphan"
        grace = options.get("gracePeriodSeconds", q.get("gracePeriodSeconds"))
        grace = int(grace) if grace is not None else None
        dry_run = dry_run or "All" in (options.get("dryRun") or [])
        if t.name is None:
            self._authorize(request, "deletecollection", t)
            listing = self.core.list(
                t.resource,
                t.namespace,
                label_selector=q.get("labelSelector", ""),
                field_selector=q.get("fieldSelector", ""),
            )
            for item in listing["items"]:
                self.core.delete(
                    t.resource,
                    item["metadata"].get("namespace"),
                    item["metadata"]["name"],
                    propagation=propagation,
                    grace_period=grace,
                    dry_run=dry_run,
                )
            return json_response(listing)
        self._authorize(request, "delete", t)
        obj = self.core.delete(
            t.resource,
            t.namespace,
            t.object_name,
            propagation=propagation,
            grace_period=grace,
            preconditions=options.get("preconditions"),
            dry_run=dry_run,
        )
        if obj["metadata"].get("deletionTimestamp"):
            return self._answer(request, t, obj, 200)
        if t.resource.kind in ("Pod", "Namespace", "Service") or obj.get("kind") != t.resource.kind:
            return self._answer(request, t, obj, 200)
        return json_response(
            {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "details": {
                    "name": t.name,
                    "group": t.resource.group,
                    "kind": t.resource.plural,
                    "uid": obj["metadata"].get("uid"),
                },
            }
        )

    async def _subresource(self, request: web.Request, t: Target, manager: str, dry_run: bool) -> web.StreamResponse:
        method, sub, core = request.method, t.subresource, self.core
        verb = {"GET": "get", "PUT": "update", "PATCH": "patch", "POST": "create"}.get(method, "")
        if not verb:
            raise method_not_allowed()
        self._authorize(request, verb, t)
        if sub == "log" and method == "GET":
            return await self._log(request, t)
        if sub == "status":
            if method == "GET":
                return self._answer(request, t, core.get(t.resource, t.namespace, t.object_name))
            if method == "PUT":
                obj, _ = core.replace(
                    t.resource,
                    t.namespace,
                    t.object_name,
                    await self._body(request, t),
                    subresource="status",
                    manager=manager,
                    dry_run=dry_run,
                )
                return self._answer(request, t, obj)
            if method == "PATCH":
                return await self._patch(request, t, manager, "Ignore", dry_run, subresource="status")
        if sub == "scale":
            if method == "GET":
                return json_response(core.scale(t.resource, t.namespace, t.object_name))
            if method in ("PUT", "PATCH"):
                current = core.scale(t.resource, t.namespace, t.object_name)
                if method == "PUT":
                    body = await self._body(request, t)
                else:
                    raw = await request.read()
                    content_type = request.headers.get("Content-Type", "").split(";")[0]
                    document = json.loads(raw or b"null")
                    body = (
                        patch.json_patch(current, document)
                        if content_type == "application/json-patch+json"
                        else patch.json_merge_patch(current, document)
                    )
                replicas = (body.get("spec") or {}).get("replicas")
                return json_response(
                    core.set_scale(
                        t.resource,
                        t.namespace,
                        t.object_name,
                        replicas,
                        (body.get("metadata") or {}).get("resourceVersion") if method == "PUT" else None,
                        manager=manager,
                        dry_run=dry_run,
                    )
                )
        if sub == "binding" and method == "POST":
            core.bind(t.namespace, t.object_name, await self._body(request, t))
            return json_response(
                {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}, 201
            )
        if sub == "eviction" and method == "POST":
            body = await self._body(request, t)
            return json_response(eviction.evict(core, t.namespace or "", t.object_name, body, dry_run), 201)
        if sub == "token" and method == "POST":
            sa = core.get(t.resource, t.namespace, t.object_name)
            return json_response(authapis.token_request(self.tokens, sa, await self._body(request, t)), 201)
        if sub == "finalize" and method == "PUT":
            obj, _ = core.replace(t.resource, None, t.object_name, await self._body(request, t), dry_run=dry_run)
            return json_response(obj)
        raise method_not_allowed()

    # ---------------------------------------------------------------- watch
    async def _watch(
        self,
        request: web.Request,
        t: Target,
        view: Resource | None = None,
        present: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> web.StreamResponse:
        """Stream watch events; *view*/*present* show stored objects as another API group does."""
        q = request.query
        rv_text = q.get("resourceVersion", "")
        label = q.get("labelSelector", "")
        field = q.get("fieldSelector", "")
        watcher = self.core.store.watch(
            t.resource,
            t.namespace,
            since_rv=int(rv_text) if rv_text not in ("", "0") else None,
            label_selector=parse_label_selector(label) if label else None,
            field_selector=parse_field_selector(field) if field else None,
        )
        return await stream_watch(request, watcher, view or t.resource, present)

    # ----------------------------------------------------------------- logs
    async def _log(self, request: web.Request, t: Target) -> web.StreamResponse:
        pod = self.core.get(t.resource, t.namespace, t.object_name)
        q = request.query
        options = logs.LogOptions.from_query(q)
        container, path = self.logs.locate(pod, options)
        if not options.follow:
            return web.Response(body=self.logs.read(path, options), content_type="text/plain")
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        pods = t.resource

        def still_running() -> bool:
            live = self.core.store.get(pods, t.namespace, t.object_name)
            return live is not None and logs.container_running(live, container)

        try:
            async for chunk in self.logs.follow(path, options, still_running):
                await response.write(chunk)
        except ConnectionResetError:
            pass
        return response


class ServerThread:
    """Runs an ``ApiServer`` on 127.0.0.1 in a dedicated thread with its own event loop."""

    def __init__(
        self, server: ApiServer, port: int = 0, host: str = "127.0.0.1", ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self.server, self.host, self.port, self.ssl_context = server, host, port, ssl_context
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="labkit-apiserver", daemon=True)
        self._ready = threading.Event()
        self._runner: web.AppRunner | None = None
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.ssl_context else 'http'}://{self.host}:{self.port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            # Open watches would hold shutdown for a minute; clients re-watch after a restart anyway.
            self._runner = web.AppRunner(self.server.app, access_log=None, handle_signals=False, shutdown_timeout=0.5)
            self.loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True, ssl_context=self.ssl_context)
            self.loop.run_until_complete(site.start())
            self.port = self._runner.addresses[0][1]  # the port the OS picked
        except Exception as e:  # noqa: BLE001 (whatever stops the server from listening is re-raised by start())
            self._error = e
            return
        finally:
            self._ready.set()
        self.loop.run_forever()

    def start(self) -> ServerThread:
        self._thread.start()
        self._ready.wait(30)
        if self._error:
            raise self._error
        return self

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run *fn* on the server's loop thread and return its result (for controllers and shutdown)."""
        return asyncio.run_coroutine_threadsafe(_as_coroutine(fn), self.loop).result()

    def stop(self) -> None:
        if self._runner is not None and self.loop.is_running():
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self.loop).result(timeout=10)
            self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)


async def _as_coroutine(fn: Callable[[], Any]) -> Any:
    return fn()
