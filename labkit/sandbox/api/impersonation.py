"""Acting as someone else: the ``Impersonate-*`` headers, authorized by the ``impersonate`` verb.

As upstream's filter (``staging/src/k8s.io/apiserver/pkg/endpoints/filters/impersonation.go``): every
requested user, service account, group, extra value and UID is checked against the caller's rights
(``impersonate`` on ``users``, ``serviceaccounts`` (in their namespace), ``groups``,
``userextras/<key>`` and ``uids``; the last two in ``authentication.k8s.io``), and the request then runs as
that user. ``kubectl --as=… --as-group=… --as-uid=…`` sends them, so ``kubectl auth can-i --as=…`` answers
for the impersonated account.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from labkit.sandbox.api.auth import Authorizer, User
from labkit.sandbox.api.status import bad_request, forbidden_request

#: where a request keeps the user it runs as (authenticated, then impersonated; None for the health paths).
#: aiohttp 3.14 added typed request keys and warns about plain strings (NotAppKeyWarning); older ones take a string.
CALLER: Any = web.RequestKey("caller", User) if hasattr(web, "RequestKey") else "labkit.caller"

USER_HEADER = "Impersonate-User"
GROUP_HEADER = "Impersonate-Group"
UID_HEADER = "Impersonate-Uid"
EXTRA_PREFIX = "impersonate-extra-"
AUTHENTICATED, UNAUTHENTICATED, ANONYMOUS = "system:authenticated", "system:unauthenticated", "system:anonymous"
SA_PREFIX = "system:serviceaccount:"


@dataclass(frozen=True)
class _Wanted:
    """One thing to impersonate, as upstream's ObjectReference (kind, namespace, name, apiVersion, fieldPath)."""

    kind: str
    name: str
    namespace: str = ""
    api_version: str = ""
    field_path: str = ""

    def __str__(self) -> str:
        # Go's %v of a v1.ObjectReference: its seven fields, space-separated, in braces
        return f"{{{self.kind} {self.namespace} {self.name}  {self.api_version}  {self.field_path}}}"


def _split_service_account(username: str) -> tuple[str, str] | None:
    """``serviceaccount.SplitUsername``: (namespace, name) of ``system:serviceaccount:<ns>:<name>``, else None."""
    if not username.startswith(SA_PREFIX):
        return None
    parts = username[len(SA_PREFIX) :].split(":")
    if len(parts) != 2 or not all(parts):
        return None
    return parts[0], parts[1]


def _requests(request: web.Request) -> list[_Wanted]:
    headers = request.headers  # case-insensitive, every value of a repeated header
    wanted: list[_Wanted] = []
    user = headers.get(USER_HEADER, "")
    if user:
        account = _split_service_account(user)
        wanted.append(_Wanted("ServiceAccount", account[1], account[0]) if account else _Wanted("User", user))
    groups = headers.getall(GROUP_HEADER, [])
    wanted += [_Wanted("Group", group) for group in groups]
    extras = [key for key in dict.fromkeys(k.lower() for k in headers) if key.startswith(EXTRA_PREFIX)]
    for header in extras:
        key = unquote(header[len(EXTRA_PREFIX) :])
        wanted += [
            _Wanted("UserExtra", value, api_version="authentication.k8s.io/v1", field_path=key)
            for value in headers.getall(header, [])
        ]
    uid = headers.get(UID_HEADER, "")
    if uid:
        wanted.append(_Wanted("UID", uid, api_version="authentication.k8s.io/v1"))
    if (groups or extras or uid) and not user:
        raise bad_request(f"requested [{' '.join(map(str, wanted))}] without impersonating a user")
    return wanted


def impersonate(requester: User, request: web.Request, authorizer: Authorizer) -> User:
    """The user *request* acts as: *requester*, or whom its headers name once each is authorized (403 if not)."""
    wanted = _requests(request)
    if not wanted:
        return requester
    groups_given = bool(request.headers.getall(GROUP_HEADER, []))
    username, uid, account = "", "", None
    groups: list[str] = []
    extra: dict[str, list[str]] = {}
    for item in wanted:
        group, namespace, resource = "", "", ""
        if item.kind == "ServiceAccount":
            resource, namespace = "serviceaccounts", item.namespace
            username, account = f"{SA_PREFIX}{item.namespace}:{item.name}", (item.namespace, item.name)
            if not groups_given:
                groups = ["system:serviceaccounts", f"system:serviceaccounts:{item.namespace}"]
        elif item.kind == "User":
            resource, username = "users", item.name
        elif item.kind == "Group":
            resource = "groups"
            groups.append(item.name)
        elif item.kind == "UserExtra":
            group, resource = "authentication.k8s.io", f"userextras/{item.field_path}"
            extra.setdefault(item.field_path, []).append(item.name)
        else:
            group, resource, uid = "authentication.k8s.io", "uids", item.name
        if not authorizer.allowed(requester, "impersonate", group, resource, namespace or None, item.name):
            raise forbidden_request(requester.name, "impersonate", group, resource, namespace or None, item.name)
    if username != ANONYMOUS:
        if AUTHENTICATED not in groups and UNAUTHENTICATED not in groups:
            groups.append(AUTHENTICATED)
    elif UNAUTHENTICATED not in groups:
        groups.append(UNAUTHENTICATED)
    return User(username, tuple(groups), account, extra, uid)
