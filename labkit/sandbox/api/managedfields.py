"""Field ownership: ``metadata.managedFields`` and server-side apply, as pure functions.

- :func:`record_update` gives a create, update or patch's manager the fields it changed;
- :func:`server_side_apply` (``application/apply-patch+yaml``) merges an apply configuration and
  raises the conflicts a real cluster raises when another manager owns a changed field.

Like :mod:`labkit.sandbox.api.patch`, every function returns a new object and never mutates its inputs
(:func:`record_update`'s result shares all but its top level and metadata with its input).

>>> format_field_path(("f:spec", "f:containers", 'k:{"name":"web"}', "f:image"))
'.spec.containers[name="web"].image'
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from labkit.sandbox.api.patch import deep_copy
from labkit.sandbox.api.schemas import Node, child_of, schemas
from labkit.sandbox.api.status import StatusError

if TYPE_CHECKING:
    from labkit.sandbox.api.registry import Resource

FieldPath = tuple[str, ...]
"""A managed-field path in FieldsV1 notation: ``("f:spec", "f:containers", 'k:{"name":"c"}', "f:image")``."""

_ITEM = object()  # the "." membership of a list-map item in a flattened field set
_UNTRACKED_TOP = frozenset({"apiVersion", "kind"})
_SERVER_METADATA = frozenset(
    {
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "managedFields",
        "selfLink",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
    }
)
#: the keys of a managedFields entry as :meth:`_Entry.to_dict` writes it, without and with a subresource
_ENTRY_KEYS = (
    frozenset({"manager", "operation", "apiVersion", "time", "fieldsType", "fieldsV1"}),
    frozenset({"manager", "operation", "apiVersion", "time", "fieldsType", "fieldsV1", "subresource"}),
)
# list-map keys the server defaults before computing ownership (ports without a protocol are TCP)
_KEY_DEFAULTS = {"protocol": "TCP"}


def _key_element(item: dict[str, Any], keys: Iterable[str]) -> str:
    chosen = {k: item.get(k, _KEY_DEFAULTS.get(k)) for k in sorted(keys)}
    return "k:" + json.dumps({k: v for k, v in chosen.items() if v is not None}, separators=(",", ":"))


def flatten_fields(obj: dict[str, Any], node: Node | None, status: bool = False) -> dict[FieldPath, Any]:
    """The leaf fields of ``obj`` with their values, keyed by FieldsV1 path.

    Server-set metadata (uid, resourceVersion, managedFields…), ``apiVersion`` and ``kind``
    are not tracked, nor is ``status``. With ``status`` (a write to the status subresource) only
    ``status`` is: that write changes nothing else (kube-apiserver resets ``spec`` on it,
    ``GetResetFields`` in ``pkg/registry/core/pod/strategy.go``; the sandbox also keeps the metadata).
    List-map items get their own ``k:`` element. What is not tracked is never walked: a pod's
    status is most of it, and every write flattens the object twice.
    """
    out: dict[FieldPath, Any] = {}
    for key, value in obj.items():
        if (key == "status") != status or key in _UNTRACKED_TOP:
            continue
        tracked = value
        if key == "metadata" and isinstance(value, dict) and value:
            tracked = {k: v for k, v in value.items() if k not in _SERVER_METADATA}
            if not tracked:
                continue
        _flatten(tracked, child_of(node, key), (f"f:{key}",), out)
    return out


def _flatten(value: Any, node: Node | None, path: FieldPath, out: dict[FieldPath, Any]) -> None:
    if (
        isinstance(value, dict)
        and value
        and not (node is not None and (node.atomic or node.kind not in ("struct", "map", "any")))
    ):
        for key, item in value.items():
            _flatten(item, child_of(node, key), (*path, f"f:{key}"), out)
        return
    list_type = node.patch.list_type if node is not None and node.kind == "array" else None
    if (
        node is not None
        and list_type == "map"
        and isinstance(value, list)
        and value
        and all(isinstance(i, dict) for i in value)
    ):
        for item in value:
            element = (*path, _key_element(item, node.patch.list_map_keys))
            out[element] = _ITEM
            for key, field in item.items():
                _flatten(field, child_of(node.items, key), (*element, f"f:{key}"), out)
        return
    if isinstance(value, list) and value and list_type == "set":
        for item in value:
            out[(*path, "v:" + json.dumps(item, separators=(",", ":")))] = item
        return
    if path:
        out[path] = value


def fields_v1(paths: Iterable[FieldPath]) -> dict[str, Any]:
    """A set of field paths as the nested ``fieldsV1`` trie (``"."`` marks a member with children), keys sorted.

    Built from the sorted paths, so every node's keys arrive in order ("." sorts before "f:", "i:", "k:", "v:")
    and a path's descendants come right after it: no second pass to mark members, none to sort.
    """
    root: dict[str, Any] = {}
    ordered = sorted(set(paths))
    for i, path in enumerate(ordered):
        node = root
        for element in path:
            node = node.setdefault(element, {})
        if i + 1 < len(ordered) and ordered[i + 1][: len(path)] == path:
            node["."] = {}
    return root


def parse_fields_v1(trie: dict[str, Any], prefix: FieldPath = ()) -> set[FieldPath]:
    """The set of field paths in a ``fieldsV1`` trie (inverse of :func:`fields_v1`)."""
    out: set[FieldPath] = set()
    for key, sub in trie.items():
        if key == ".":
            out.add(prefix)
        elif not sub:
            out.add((*prefix, key))
        else:
            out |= parse_fields_v1(sub, (*prefix, key))
    return out


def format_field_path(path: FieldPath) -> str:
    """``.spec.template.spec.containers[name="web"].image``, as conflict messages print paths."""
    out = ""
    for element in path:
        kind, _, rest = element.partition(":")
        if kind == "f":
            out += f".{rest}"
        elif kind == "k":
            out += "[" + ",".join(f"{k}={json.dumps(v)}" for k, v in json.loads(rest).items()) + "]"
        else:
            out += f"[={rest}]"
    return out


class _Entry:
    """One ``managedFields`` entry with its field set parsed."""

    def __init__(self, raw: dict[str, Any]) -> None:
        self.manager: str = raw.get("manager", "")
        self.operation: str = raw.get("operation", "Update")
        self.api_version: str = raw.get("apiVersion", "")
        self.subresource: str = raw.get("subresource", "")
        self.time: str = raw.get("time", "")
        self.fields = parse_fields_v1(raw.get("fieldsV1") or {})
        #: the entry as it came, written back as it is while nothing in it changed: rebuilding every manager's
        #: trie on each write was most of a write's cost
        canonical = raw.keys() == _ENTRY_KEYS[bool(self.subresource)] and raw["fieldsType"] == "FieldsV1"
        self._raw = raw if canonical else None
        self._parsed = frozenset(self.fields)

    def same_manager(self, manager: str, operation: str, subresource: str = "") -> bool:
        return (self.manager, self.operation, self.subresource) == (manager, operation, subresource)

    def describe(self) -> str:
        """How conflict messages name a manager: ``"kubectl-client-side-apply" using apps/v1``."""
        text = json.dumps(self.manager)
        if self.subresource:
            text += f" with subresource {json.dumps(self.subresource)}"
        return f"{text} using {self.api_version}" if self.operation == "Update" else text

    def to_dict(self) -> dict[str, Any]:
        raw = self._raw
        unchanged = raw is not None and (raw["time"], raw["apiVersion"]) == (self.time, self.api_version)
        if unchanged and self.fields == self._parsed:
            kept: dict[str, Any] = deep_copy(raw)
            return kept
        out = {
            "manager": self.manager,
            "operation": self.operation,
            "apiVersion": self.api_version,
            "time": self.time,
            "fieldsType": "FieldsV1",
            "fieldsV1": fields_v1(self.fields),
        }
        if self.subresource:
            out["subresource"] = self.subresource
        return out


def _entries(obj: dict[str, Any] | None) -> list[_Entry]:
    return [_Entry(raw) for raw in ((obj or {}).get("metadata") or {}).get("managedFields") or []]


def _own(entries: list[_Entry], resource: Resource, manager: str, operation: str, subresource: str = "") -> _Entry:
    for entry in entries:
        if entry.same_manager(manager, operation, subresource):
            return entry
    entry = _Entry({"manager": manager, "operation": operation, "subresource": subresource})
    entries.append(entry)
    return entry


def _store(obj: dict[str, Any], entries: list[_Entry], touched: _Entry, resource: Resource) -> dict[str, Any]:
    touched.api_version = resource.api_version
    touched.time = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    kept = [e.to_dict() for e in entries if e.fields]
    meta = obj.setdefault("metadata", {})
    if kept:
        meta["managedFields"] = kept
    else:
        meta.pop("managedFields", None)
    return obj


def record_update(
    resource: Resource,
    old: dict[str, Any] | None,
    new: dict[str, Any],
    manager: str,
    operation: str = "Update",
    subresource: str = "",
) -> dict[str, Any]:
    """``new`` with managedFields updated for a create, update or patch by ``manager``.

    The manager takes ownership of every field it changed (from whoever owned it, without
    conflict, as on a real server); removed fields leave every manager's set.
    """
    # a new top level and metadata: _store writes only metadata.managedFields, so the rest may be shared
    result = {**new, "metadata": dict(new.get("metadata") or {})}
    node = schemas().root(resource)
    entries = _entries(old)
    status = subresource == "status"
    before = flatten_fields(old, node, status) if old is not None else {}
    after = flatten_fields(result, node, status)
    changed = {p for p, v in after.items() if p not in before or before[p] != v}
    removed = before.keys() - after.keys()
    for entry in entries:
        entry.fields -= changed | removed
    mine = _own(entries, resource, manager, operation, subresource)
    mine.fields |= changed
    return _store(result, entries, mine, resource)


def _apply_merge(live: dict[str, Any], applied: dict[str, Any], node: Node | None) -> None:
    """Merge an apply configuration into ``live`` in place: list-maps item by item, sets by value."""
    for key, value in applied.items():
        child = child_of(node, key)
        current = live.get(key)
        list_type = child.patch.list_type if child is not None and child.kind == "array" else None
        if isinstance(value, dict) and isinstance(current, dict) and not (child is not None and child.atomic):
            _apply_merge(current, value, child)
        elif child is not None and list_type == "map" and isinstance(value, list) and isinstance(current, list):
            keys = child.patch.list_map_keys
            for item in value:
                ident = _key_element(item, keys) if isinstance(item, dict) else None
                match = next((c for c in current if isinstance(c, dict) and _key_element(c, keys) == ident), None)
                if match is None or not isinstance(item, dict):
                    current.append(deep_copy(item))
                else:
                    _apply_merge(match, item, child.items)
        elif isinstance(value, list) and isinstance(current, list) and list_type == "set":
            current.extend(deep_copy(v) for v in value if v not in current)
        elif value is not None:
            live[key] = deep_copy(value)


def _remove_field(obj: dict[str, Any], path: FieldPath, node: Node | None) -> None:
    """Delete the field at ``path`` from ``obj`` if it is still there."""
    container: Any = obj
    for position, element in enumerate(path):
        last = position == len(path) - 1
        kind, _, rest = element.partition(":")
        if kind == "f" and isinstance(container, dict):
            if last:
                container.pop(rest, None)
                return
            node = child_of(node, rest)
            container = container.get(rest)
        elif kind in ("k", "v") and isinstance(container, list):
            keys = node.patch.list_map_keys if node is not None else ()
            want = json.loads(rest)
            index = next(
                (
                    i
                    for i, item in enumerate(container)
                    if (kind == "v" and item == want)
                    or (kind == "k" and isinstance(item, dict) and _key_element(item, keys) == element)
                ),
                None,
            )
            if index is None:
                return
            if last:
                del container[index]
                return
            node = node.items if node is not None else None
            container = container[index]
        else:
            return


def _is_under(path: FieldPath, owned: set[FieldPath]) -> bool:
    """Whether ``path`` or anything beneath it is in ``owned``."""
    return any(p[: len(path)] == path for p in owned)


def server_side_apply(
    resource: Resource, live: dict[str, Any] | None, applied: dict[str, Any], manager: str, force: bool = False
) -> dict[str, Any]:
    """Apply a configuration the way ``kubectl apply --server-side`` expects (approximately).

    The result is ``live`` with ``applied`` merged in and ``manager``'s Apply entry in
    ``metadata.managedFields`` set to exactly the applied fields. Fields the manager applied
    before but no longer applies are removed unless another manager owns them. Changing a
    field another manager owns raises 409 Conflict unless ``force`` takes it over.
    """
    applied = deep_copy(applied)
    (applied.get("metadata") or {}).pop("managedFields", None)
    node = schemas().root(resource)
    wanted = flatten_fields(applied, node)
    entries = _entries(live)
    mine = _own(entries, resource, manager, "Apply")
    others = [e for e in entries if e is not mine]
    if live is None:
        result = applied
    else:
        current = flatten_fields(live, node)
        conflicts = [
            (e, p)
            for e in others
            for p in sorted(e.fields & wanted.keys())
            if p not in current or current[p] != wanted[p]
        ]
        if conflicts and not force:
            raise _conflict_error(conflicts)
        for entry, path in conflicts:
            entry.fields.discard(path)
        result = deep_copy(live)
        _apply_merge(result, applied, node)
        still_owned = set().union(*(e.fields for e in others)) | wanted.keys()
        for path in sorted(mine.fields - wanted.keys(), key=len):
            if not _is_under(path, still_owned):
                _remove_field(result, path, node)
    mine.fields = set(wanted)
    return _store(result, entries, mine, resource)


def _conflict_error(conflicts: list[tuple[_Entry, FieldPath]]) -> StatusError:
    causes = [
        {"reason": "FieldManagerConflict", "message": f"conflict with {e.describe()}", "field": format_field_path(p)}
        for e, p in conflicts
    ]
    if len(conflicts) == 1:
        entry, path = conflicts[0]
        message = f"Apply failed with 1 conflict: conflict with {entry.describe()}: {format_field_path(path)}"
    else:
        by_manager: dict[str, list[str]] = {}
        for entry, path in conflicts:
            by_manager.setdefault(entry.describe(), []).append(format_field_path(path))
        lines = []
        for who in sorted(by_manager):
            lines.append(f"conflicts with {who}:")
            lines.extend(f"- {p}" for p in by_manager[who])
        message = f"Apply failed with {len(conflicts)} conflicts: " + "\n".join(lines)
    return StatusError(409, "Conflict", message, {"causes": causes})
