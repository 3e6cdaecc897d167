"""Kubernetes ``Status`` failures, raised anywhere in the sandbox and answered by the server.

The wording follows the real API server, because learners paste these
messages into search engines.

>>> e = not_found(RESOURCES.served("", "pods"), "nope")
>>> e.code, e.reason, e.message
(404, 'NotFound', 'pods "nope" not found')
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypedDict

from labkit.sandbox.api.registry import RESOURCES  # noqa: F401  (RESOURCES used by the doctest)

if TYPE_CHECKING:
    from labkit.sandbox.api.registry import Resource


class StatusDict(TypedDict, total=False):
    """A ``meta.k8s.io/v1`` Status, as the server answers a failure (``details`` is per reason)."""

    kind: str
    apiVersion: str
    metadata: dict[str, Any]
    status: str
    message: str
    reason: str
    code: int
    details: dict[str, Any]


class StatusError(Exception):
    """A failure the API server answers with a ``Status`` object."""

    def __init__(self, code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details

    def to_status(self) -> StatusDict:
        status: StatusDict = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            status["details"] = self.details
        return status


def _details(resource: Resource | None, name: str | None, **extra: Any) -> dict[str, Any]:
    details: dict[str, Any] = {}
    if name:
        details["name"] = name
    if resource is not None:
        if resource.group:
            details["group"] = resource.group
        details["kind"] = resource.plural
    details.update(extra)
    return details


def not_found(resource: Resource, name: str) -> StatusError:
    return StatusError(404, "NotFound", f"{resource.describe(name)} not found", _details(resource, name))


def already_exists(resource: Resource, name: str) -> StatusError:
    return StatusError(409, "AlreadyExists", f"{resource.describe(name)} already exists", _details(resource, name))


def conflict(resource: Resource, name: str) -> StatusError:
    return StatusError(
        409,
        "Conflict",
        f"Operation cannot be fulfilled on {resource.describe(name)}: "
        "the object has been modified; please apply your changes to the latest version and try again",
        _details(resource, name),
    )


def invalid(resource: Resource, name: str, causes: list[dict[str, str]]) -> StatusError:
    """422; a cause is ``{"reason": "FieldValueRequired", "message": "Required value", "field": "spec.selector"}``."""
    kind = f"{resource.kind}.{resource.group}" if resource.group else resource.kind
    summary = ", ".join(f"{c['field']}: {c['message']}" for c in causes)
    if len(causes) > 1:
        summary = f"[{summary}]"
    # apimachinery's NewInvalid names the Kind in details (kubectl prints 'The Pod "p" is invalid'),
    # where the other builders name the resource
    details = {**_details(resource, name, causes=causes), "kind": resource.kind}
    return StatusError(422, "Invalid", f'{kind} "{name}" is invalid: {summary}', details)


def bad_request(message: str, causes: list[dict[str, str]] | None = None) -> StatusError:
    return StatusError(400, "BadRequest", message, {"causes": causes} if causes else None)


def gone(message: str) -> StatusError:
    """410 for a watch from a resourceVersion the server no longer has."""
    return StatusError(410, "Expired", message)


def forbidden_request(
    user: str, verb: str, group: str, resource: str, namespace: str | None, name: str | None = None
) -> StatusError:
    """The authorizer's 403 (``responsewriters.Forbidden``); *resource* may name a subresource (``pods/log``)."""
    plural = resource.split("/", 1)[0]
    what = f"{plural}.{group}" if group else plural
    named = f' "{name}"' if name else ""
    scope = f' in the namespace "{namespace}"' if namespace else " at the cluster scope"
    details: dict[str, Any] = {"name": name} if name else {}
    details.update({"group": group} if group else {})
    details["kind"] = plural
    return StatusError(
        403,
        "Forbidden",
        f'{what}{named} is forbidden: User "{user}" cannot {verb} resource "{resource}" in API group "{group}"{scope}',
        details,
    )


def forbidden_because(
    resource: Resource, name: str, why: str, causes: list[dict[str, str]] | None = None
) -> StatusError:
    """403 from admission or a registry rule, worded as apimachinery's ``NewForbidden``.

    >>> forbidden_because(RESOURCES.served("", "pods"), "p", 'pod rejected: RuntimeClass "x" not found').message
    'pods "p" is forbidden: pod rejected: RuntimeClass "x" not found'
    """
    details = _details(resource, name, **({"causes": causes} if causes else {}))
    return StatusError(403, "Forbidden", f"{resource.describe(name)} is forbidden: {why}", details)


def unauthorized() -> StatusError:
    return StatusError(401, "Unauthorized", "Unauthorized")


def method_not_allowed(message: str = "the server does not allow this method on the requested resource") -> StatusError:
    return StatusError(405, "MethodNotAllowed", message)


def unsupported_media_type(content_type: str, hint: str = "") -> StatusError:
    """415; ``hint`` (what to do instead) is appended to the message kubectl prints."""
    return StatusError(
        415,
        "UnsupportedMediaType",
        f"the body of the request was in an unknown format - accepted media types include: "
        f"application/json, application/yaml, application/vnd.kubernetes.protobuf (got {content_type!r})"
        + (f"; {hint}" if hint else ""),
    )


#: The Status reason of an HTTP failure code, as apimachinery's ``NewGenericServerResponse`` picks it.
_REASONS = {
    400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 405: "MethodNotAllowed",
    406: "NotAcceptable", 409: "Conflict", 410: "Expired", 413: "RequestEntityTooLarge",
    415: "UnsupportedMediaType", 422: "Invalid", 429: "TooManyRequests", 504: "Timeout",
}  # fmt: skip


def http_status(code: int, message: str) -> StatusError:
    """A failure the HTTP layer produced before any API code ran, with the reason that goes with its code."""
    return StatusError(code, _REASONS.get(code, "BadRequest" if code < 500 else "InternalError"), message)


def method_not_supported(plural: str, action: str) -> StatusError:
    """apimachinery's ``NewMethodNotSupported``: a verb the resource's storage lacks (a watch of componentstatuses)."""
    return StatusError(
        405, "MethodNotAllowed", f'{action} is not supported on resources of kind "{plural}"', {"kind": plural}
    )
