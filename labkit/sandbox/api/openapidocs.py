"""The OpenAPI documents the API server serves: v3 per group-version from the official 1.32 schemas (what
``kubectl explain`` and server-side field validation use), and a v2 document without definitions."""

from __future__ import annotations

from aiohttp import web

from labkit.sandbox.api import schemas
from labkit.sandbox.api.discovery import VERSION_INFO
from labkit.sandbox.api.responses import JSON, json_response, not_found_path


def serve(request: web.Request, rest: list[str]) -> web.Response:
    """``/openapi/<rest>``: the v3 index, a group-version's v3 document (immutable when asked for by hash), or v2."""
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
    if rest == ["v2"]:
        return _v2(request)
    raise not_found_path()


#: OpenAPI v2 as gnostic's protobuf Document: kubectl asks for it under the deprecated name with "@" (client-go
#: discovery's OpenAPISchema), and kube-openapi's handler (pkg/handler/handler.go, RegisterOpenAPIVersionedService's
#: ``accepted`` table) answers either name with the one without as its Content-Type.
OPENAPI_V2_ACCEPTED = (
    "com.github.proto-openapi.spec.v2@v1.0+protobuf",
    "com.github.proto-openapi.spec.v2.v1.0+protobuf",
)
OPENAPI_V2_PROTOBUF = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"


def _v2(request: web.Request) -> web.Response:
    """An OpenAPI v2 document without definitions. The sandbox's schemas are served as v3, which kubectl 1.32 uses
    for ``explain`` and for server-side field validation; kubectl reads v2 to validate client side a kind whose
    v3 paths have no PATCH (a TokenReview, a SubjectAccessReview) [inferred from kubectl 1.32's requests in
    tests/sandbox/test_api_answered_kubectl.py], and a kind v2 lacks is not validated
    there ("resource is not present, let's just skip validation", kubectl's pkg/validation) but by the server,
    as always [a real server's v2 has every definition: this one is labkit's simplification]."""
    if any(name in request.headers.get("Accept", "") for name in OPENAPI_V2_ACCEPTED):
        return web.Response(body=b"", content_type=OPENAPI_V2_PROTOBUF)  # every field of the Document unset
    return json_response(
        {
            "swagger": "2.0",
            "info": {"title": "Kubernetes", "version": VERSION_INFO["gitVersion"]},
            "paths": {},
            "definitions": {},
        }
    )
