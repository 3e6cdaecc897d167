"""The sandbox's HTTP face: Kubernetes REST paths, content negotiation, watch streams.

It runs on its own thread and event loop (``ServerThread``), never the caller's:
a blocking client call made on the server's own loop would deadlock, and
ipykernel owns the main thread's loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from aiohttp import web

from labkit.sandbox import logs
from labkit.sandbox.api import (
    authapis,
    componentstatus,
    crds,
    discovery,
    escalation,
    eviction,
    impersonation,
    limits,
    metrics,
    openapidocs,
    patch,
    podstreams,
    tables,
    versions,
)
from labkit.sandbox.api.auth import Authorizer, TokenAuthority, User
from labkit.sandbox.api.discovery import VERSION_INFO
from labkit.sandbox.api.events import EVENTS, EVENTS_V1, checked_v1_create, from_events_v1, to_events_v1
from labkit.sandbox.api.kinds import CREATE_ONLY
from labkit.sandbox.api.params import (
    SUBRESOURCE_SCHEMAS,
    DeleteOptions,
    ListOptions,
    scale_replicas,
)
from labkit.sandbox.api.registry import RESOURCES, Resource
from labkit.sandbox.api.responses import (
    JSON,
    created_status,
    decode_off_loop,
    deleted_status,
    flag,
    json_response,
    json_response_off_loop,
    not_found_path,
    read_body,
    stream_watch,
    wait_for_resource_version,
    wants_table,
)
from labkit.sandbox.api.selectors import parse_field_selector, parse_label_selector
from labkit.sandbox.api.status import (
    StatusError,
    forbidden_request,
    http_status,
    method_not_allowed,
    method_not_supported,
    unauthorized,
)
from labkit.sandbox.api.validation import check_shape, check_types, validate

if TYPE_CHECKING:
    from labkit.sandbox.api.apicore import ApiCore, WriteOptions

log = logging.getLogger("labkit.sandbox.api.server")

SERVICE_ACCOUNTS = RESOURCES.served("", "serviceaccounts")
#: What ``GET /`` lists, as kube-apiserver's root does (the group-version paths left out).
ROOT_PATHS = ["/api", "/api/v1", "/apis", "/healthz", "/livez", "/openapi/v2", "/openapi/v3", "/readyz", "/version"]
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
        self.custom = crds.CustomResources(core.store)
        self.logs = logs.PodLogs(log_dir)
        self.server_address = server_address
        self._rbac: dict[tuple[str, str | None], tuple[int, list[dict[str, Any]]]] = {}
        self.authorizer = Authorizer(self._rbac_objects)
        self.pod_streams = podstreams.PodStreams(core, self.authorizer)  # exec, portforward, proxy
        self.app = web.Application(
            middlewares=[self._errors, self._authenticate], client_max_size=limits.MAX_REQUEST_BODY
        )
        self.app.add_routes(extra_routes)  # before the catch-all, which would shadow them
        self.app.router.add_route("*", r"/{tail:[\s\S]*}", self._dispatch)  # any path, even with a %0A in it

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
        except web.HTTPException as e:  # aiohttp's own refusals (a malformed request line...) as a Status too
            if e.status < 400:
                raise
            return json_response(http_status(e.status, e.reason).to_status(), status=e.status)
        except Exception as e:  # an internal error is still answered as a Status, never a traceback page
            log.exception("internal error on %s %s", request.method, request.path)
            return json_response(
                StatusError(500, "InternalError", f"Internal error occurred: {e}").to_status(), status=500
            )

    @web.middleware
    async def _authenticate(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in ("/healthz", "/readyz", "/livez", "/version"):
            request[impersonation.CALLER] = None
            return await handler(request)
        header = request.headers.get("Authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else ""
        user = self.tokens.authenticate(token, self._sa_exists) if token else None
        if user is None:
            raise unauthorized()
        request[impersonation.CALLER] = impersonation.impersonate(user, request, self.authorizer)
        return await handler(request)

    def _sa_exists(self, ns: str, name: str, uid: str) -> bool:
        """Whether a ServiceAccount token's account still exists (a deleted one's tokens authenticate no more)."""
        obj = self.core.store.peek(SERVICE_ACCOUNTS, ns, name)
        return obj is not None and (not uid or obj["metadata"]["uid"] == uid)

    # -------------------------------------------------------------- routing
    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        self.custom.refresh()  # serve the kinds of the CRDs stored now (cheap when none changed)
        parts = [unquote(p) for p in request.path.strip("/").split("/") if p]
        if not parts:
            return json_response({"paths": ROOT_PATHS})
        head = parts[0]
        if head in ("healthz", "readyz", "livez") and len(parts) == 1:
            return web.Response(text="ok")
        if head == "version" and len(parts) == 1:
            return json_response(VERSION_INFO)
        if head == "openapi":
            return openapidocs.serve(request, parts[1:])
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
        if (connected := await self.pod_streams.serve(request, group, version, rest)) is not None:
            return connected
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
        resource = RESOURCES.by_path(group, version, rest[0])
        if resource is None:
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

    def _metrics(self, request: web.Request, rest: list[str], api: metrics.MetricsApi) -> web.Response:
        resource, namespace, name = api.target(rest)
        self._authorize(request, "get" if name else "list", Target(resource, namespace, name, ""))
        return json_response(api.answer(resource, namespace, name, request.query.get("labelSelector", "")))

    # ------------------------------------------------------------ requests
    def _authorize(self, request: web.Request, verb: str, t: Target) -> None:
        user: User = request[impersonation.CALLER]
        resource = f"{t.resource.plural}/{t.subresource}" if t.subresource else t.resource.plural
        if not self.authorizer.allowed(user, verb, t.resource.group, resource, t.namespace, t.name):
            raise forbidden_request(user.name, verb, t.resource.group, resource, t.namespace, t.name)

    def _writing(self, request: web.Request, t: Target, manager: str, validation: str, dry_run: bool) -> WriteOptions:
        """How a write of *t* is made, with RBAC's escalation check for a role or binding (None for other kinds)."""
        guard = escalation.guard(self.authorizer, request[impersonation.CALLER], t.resource, t.namespace)
        return {"manager": manager, "validation": validation, "dry_run": dry_run, "guard": guard}

    async def _body(self, request: web.Request, t: Target) -> Any:
        """The request body, read within the size limit and decoded (a big one off the loop: decode_off_loop)."""
        raw = await limits.read_body(request)
        body = await decode_off_loop(raw, read_body, raw, request.headers.get("Content-Type", JSON), t.resource)
        if t.subresource in SUBRESOURCE_SCHEMAS:  # a Binding, Eviction, TokenRequest or Scale: typed before use
            check_types(t.resource, body, SUBRESOURCE_SCHEMAS[t.subresource])
        return body

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
        if t.resource.storage_version:  # served by conversion from the version it is stored in
            stored = RESOURCES.by_path(t.resource.group, t.resource.storage_version, t.resource.plural)
            assert stored is not None
            stored_target = Target(stored, t.namespace, t.name, t.subresource)
            return await versions.serve(self, request, t, stored_target, manager, validation, dry_run)
        if t.subresource:
            return await self._subresource(request, t, manager, dry_run)
        verb = _verb(request, t)
        if verb and verb not in t.resource.verbs:  # refused once authorized, as upstream's filters precede its routes
            self._authorize(request, verb, t)
            if verb == "watch" and "list" in t.resource.verbs:
                raise method_not_supported(t.resource.plural, verb)
            raise method_not_allowed()
        if t.resource is componentstatus.COMPONENT_STATUSES:
            self._authorize(request, verb, t)
            include = request.query.get("includeObject", "Metadata")
            answer = componentstatus.answer(t.name, wants_table(request), include)
            return json_response(answer, warnings=[componentstatus.DEPRECATED])
        if method == "GET" and t.name is None:  # verb: "list" or "watch"
            self._authorize(request, verb, t)
            if verb == "watch":
                return await self._watch(request, t)
            return await self._list(request, t)
        if method == "GET":
            self._authorize(request, "get", t)
            return self._answer(request, t, core.get(t.resource, t.namespace, t.object_name))
        if method == "POST" and t.name is None:
            self._authorize(request, "create", t)
            body = await self._body(request, t)
            if t.resource.kind in CREATE_ONLY:
                return self._answered(request, t, body, validation)
            write = self._writing(request, t, manager, validation, dry_run)
            obj, warnings = core.create(t.resource, t.namespace, body, **write)
            return self._answer(request, t, obj, 201, warnings)
        if method == "PUT" and t.name:
            self._authorize(request, "update", t)
            body = await self._body(request, t)
            write = self._writing(request, t, manager, validation, dry_run)
            obj, warnings = core.replace(t.resource, t.namespace, t.object_name, body, **write)
            return self._answer(request, t, obj, 200, warnings)
        if method == "PATCH" and t.name:
            return await self._patch(request, t, manager, validation, dry_run)
        if method == "DELETE":
            return await self._delete(request, t, dry_run)
        raise method_not_allowed()

    def _answered(self, request: web.Request, t: Target, body: Any, validation: str) -> web.Response:
        """A create-only kind: a review answered, or the pod a top-level Binding names bound; nothing is stored."""
        self.core.check_request(t.resource, t.namespace, body)
        kind = t.resource.kind
        if kind != "SelfSubjectReview":  # which has no spec to read
            validate(t.resource, body, validation)  # the answer reads a well-typed body only
        if kind == "Binding":  # LegacyBindingREST: pods/<metadata.name>/binding (pkg/registry/core/pod/storage)
            self.core.bind(t.namespace, body["metadata"].get("name") or "", body)
            return json_response(created_status(), 201)
        if kind == "TokenReview":
            return json_response(authapis.token_review(self.tokens, self._sa_exists, body), 201)
        return json_response(authapis.review(self.authorizer, request[impersonation.CALLER], kind, body), 201)

    async def _list(self, request: web.Request, t: Target) -> web.StreamResponse:
        """A LIST, read and turned into a table in a worker thread and encoded item by item there, so a
        5,000-item answer does not hold the event loop."""
        options = ListOptions.parse(request.query, t.resource)
        include, as_table = request.query.get("includeObject", "Metadata"), wants_table(request)

        def build() -> dict[str, Any]:
            listing = self.core.list(
                t.resource,
                t.namespace,
                label_selector=options.label_selector,
                field_selector=options.field_selector,
                limit=options.limit,
                continue_token=options.continue_token,
            )
            if not as_table:
                return listing
            rv, cont = listing["metadata"]["resourceVersion"], listing["metadata"].get("continue")
            return tables.to_table(
                t.resource, listing["items"], list_rv=rv, continue_token=cont, include_object=include
            )

        answer = await asyncio.to_thread(build)
        return await json_response_off_loop(request, answer, "rows" if as_table else "items")

    async def _events_v1(self, request: web.Request, t: Target, manager: str) -> web.StreamResponse:
        """``events.k8s.io/v1`` is a second view of the core Events, stored once (as in Kubernetes)."""
        core, stored = self.core, Target(EVENTS, t.namespace, t.name, t.subresource)
        if request.method == "GET" and t.name is None:
            listing = await versions.watch_or_list(self, request, t, stored, EVENTS_V1, to_events_v1)
            if not isinstance(listing, dict):  # a watch
                return listing
            items, meta = [to_events_v1(e) for e in listing["items"]], listing["metadata"]
            if wants_table(request):
                table = tables.to_table(
                    EVENTS_V1, items, list_rv=meta["resourceVersion"], continue_token=meta.get("continue")
                )
                return json_response(table)
            return json_response({**listing, "kind": "EventList", "apiVersion": EVENTS_V1.api_version, "items": items})
        if request.method == "GET":
            self._authorize(request, "get", t)
            return self._answer(request, t, to_events_v1(core.get(EVENTS, t.namespace, t.object_name)))
        if request.method == "POST" and t.name is None:
            self._authorize(request, "create", t)
            body = await self._body(request, t)
            check_shape(t.resource, body)  # before the view is converted
            body = from_events_v1(checked_v1_create(body))
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
        raw = await limits.read_body(request)
        decoded = await decode_off_loop(raw, patch.decode, request.headers.get("Content-Type", ""), raw)
        obj, warnings, created = self.core.patch(
            t.resource,
            t.namespace,
            t.object_name,
            request.headers.get("Content-Type", ""),
            decoded,
            subresource=subresource,
            force=flag(request, "force"),
            **self._writing(request, t, manager, validation, dry_run),
        )
        return self._answer(request, t, obj, 201 if created else 200, warnings)

    async def _delete(self, request: web.Request, t: Target, dry_run: bool) -> web.Response:
        raw = await limits.read_body(request)
        content_type = request.headers.get("Content-Type", JSON)
        options = await decode_off_loop(raw, DeleteOptions.parse, raw, content_type, request.query)
        dry_run = dry_run or options.dry_run
        if t.name is None:
            self._authorize(request, "deletecollection", t)
            selectors = ListOptions.parse(request.query, t.resource)
            listing = self.core.list(
                t.resource,
                t.namespace,
                label_selector=selectors.label_selector,
                field_selector=selectors.field_selector,
            )
            for item in listing["items"]:
                self.core.delete(
                    t.resource,
                    item["metadata"].get("namespace"),
                    item["metadata"]["name"],
                    propagation=options.propagation,
                    grace_period=options.grace_period,
                    dry_run=dry_run,
                )
            return json_response(listing)
        self._authorize(request, "delete", t)
        obj = self.core.delete(
            t.resource,
            t.namespace,
            t.object_name,
            propagation=options.propagation,
            grace_period=options.grace_period,
            preconditions=options.preconditions,
            dry_run=dry_run,
        )
        if obj["metadata"].get("deletionTimestamp"):
            return self._answer(request, t, obj, 200)
        if t.resource.kind in ("Pod", "Namespace", "Service") or obj.get("kind") != t.resource.kind:
            return self._answer(request, t, obj, 200)
        return json_response(deleted_status(t.resource, t.object_name, obj["metadata"].get("uid")))

    async def _subresource(self, request: web.Request, t: Target, manager: str, dry_run: bool) -> web.StreamResponse:
        method, sub, core = request.method, t.subresource, self.core
        verb = {"GET": "get", "PUT": "update", "PATCH": "patch", "POST": "create"}.get(method, "")
        if not verb:
            raise method_not_allowed()
        self._authorize(request, verb, t)
        if sub == "log" and method == "GET":
            return await self._log(request, t)
        if sub in ("status", "ephemeralcontainers"):  # views of the whole object that write one part of it
            validation = "Ignore" if sub == "status" else request.query.get("fieldValidation", "Warn")
            if method == "GET":
                return self._answer(request, t, core.get(t.resource, t.namespace, t.object_name))
            if method == "PUT":
                obj, warnings = core.replace(
                    t.resource,
                    t.namespace,
                    t.object_name,
                    await self._body(request, t),
                    subresource=sub,
                    manager=manager,
                    validation=validation,
                    dry_run=dry_run,
                )
                return self._answer(request, t, obj, warnings=warnings)
            if method == "PATCH":
                return await self._patch(request, t, manager, validation, dry_run, subresource=sub)
        if sub == "scale":
            if method == "GET":
                return json_response(core.scale(t.resource, t.namespace, t.object_name))
            if method in ("PUT", "PATCH"):
                current = core.scale(t.resource, t.namespace, t.object_name)
                if method == "PUT":
                    body = await self._body(request, t)
                else:
                    raw = await limits.read_body(request)
                    kind, document = patch.decode(request.headers.get("Content-Type", ""), raw)
                    body = (
                        patch.json_patch(current, document)
                        if kind == "json"
                        else patch.json_merge_patch(current, document)
                    )
                check_types(t.resource, body, SUBRESOURCE_SCHEMAS["scale"])
                replicas, rv = scale_replicas(body)
                return json_response(
                    core.set_scale(
                        t.resource,
                        t.namespace,
                        t.object_name,
                        replicas,
                        rv if method == "PUT" else None,
                        manager=manager,
                        dry_run=dry_run,
                    )
                )
        if sub == "binding" and method == "POST":
            core.bind(t.namespace, t.object_name, await self._body(request, t))
            return json_response(created_status(), 201)
        if sub == "eviction" and method == "POST":  # as kubectl drain asks, honouring PodDisruptionBudgets
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
        options = ListOptions.parse(request.query, t.resource)
        since = options.resource_version
        store = self.core.store
        if since is not None:
            await wait_for_resource_version(store, since)
        label, field = options.label_selector, options.field_selector
        watcher = store.watch(
            t.resource,
            t.namespace,
            since_rv=since,
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
        pods = t.resource

        def still_running() -> bool:
            live = self.core.store.get(pods, t.namespace, t.object_name)
            return live is not None and logs.container_running(live, container)

        # streamed in blocks read off the event loop, so a 10 MiB log costs neither memory nor the loop
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        try:
            async for chunk in self.logs.stream(path, options, still_running if options.follow else None):
                await response.write(chunk)
        except ConnectionResetError:
            pass
        return response


def _verb(request: web.Request, t: Target) -> str:
    """The RBAC verb of a request on a resource's collection or object ("" for a method no verb names)."""
    if request.method == "GET":
        return "get" if t.name is not None else "watch" if flag(request, "watch") else "list"
    if request.method == "DELETE":
        return "delete" if t.name is not None else "deletecollection"
    return {"POST": "create", "PUT": "update", "PATCH": "patch"}.get(request.method, "")
