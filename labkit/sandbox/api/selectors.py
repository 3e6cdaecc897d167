"""Label and field selectors with the Kubernetes grammar, matching and error wording.

Label selectors (``-l`` / ``labelSelector=``) support ``k=v``, ``k==v``,
``k!=v``, ``k in (a,b)``, ``k notin (a,b)``, ``k`` (exists), ``!k``, and the
numeric ``k>3`` / ``k<3``; a comma means AND. Field selectors
(``fieldSelector=``) support ``=``, ``==`` and ``!=`` on dotted paths.

>>> sel = parse_label_selector("app in (web, api), tier!=db, !canary")
>>> sel.matches({"app": "web", "tier": "front"}), sel.matches({"app": "web", "canary": "1"})
(True, False)
>>> sel.to_string()
'app in (api,web),!canary,tier!=db'
>>> parse_field_selector("metadata.name=web,status.phase!=Failed").matches(
...     {"metadata": {"name": "web"}, "status": {"phase": "Running"}})
True
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from labkit.sandbox.api.status import bad_request

# --- label key and value validation (wording of k8s.io/apimachinery/pkg/util/validation) ---------------------------

_QNAME = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_QNAME_RE = re.compile(f"^{_QNAME}$")
_DNS1123_SUBDOMAIN = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
_DNS1123_SUBDOMAIN_RE = re.compile(f"^{_DNS1123_SUBDOMAIN}$")
_QNAME_HELP = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric "
    f"character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '{_QNAME}')"
)
_LABEL_VALUE_HELP = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start "
    "and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation "
    f"is '({_QNAME})?')"
)


def validate_label_key(key: str) -> list[str]:
    """Problems with a label key (a qualified name such as ``app.kubernetes.io/name``); empty when valid."""
    parts = key.split("/")
    if len(parts) > 2:
        return [
            f"a qualified name {_QNAME_HELP} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ]
    errors: list[str] = []
    name = parts[-1]
    if len(parts) == 2:
        prefix = parts[0]
        if not prefix:
            errors.append("prefix part must be non-empty")
        elif len(prefix) > 253:
            errors.append("prefix part must be no more than 253 characters")
        elif not _DNS1123_SUBDOMAIN_RE.match(prefix):
            errors.append(
                "prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' "
                "or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for "
                f"validation is '{_DNS1123_SUBDOMAIN}')"
            )
    if not name:
        errors.append("name part must be non-empty")
    elif len(name) > 63:
        errors.append("name part must be no more than 63 characters")
    elif not _QNAME_RE.match(name):
        errors.append(f"name part {_QNAME_HELP}")
    return errors


def validate_label_value(value: str) -> list[str]:
    """Problems with a label value (empty, or up to 63 of ``[-A-Za-z0-9_.]`` framed by alphanumerics)."""
    errors: list[str] = []
    if len(value) > 63:
        errors.append("must be no more than 63 characters")
    if value and not _QNAME_RE.match(value):
        errors.append(_LABEL_VALUE_HELP)
    return errors


# --- label selectors ------------------------------------------------------------------------------------------------

#: Operators as they appear in selector strings; ``exists``/``!`` are the unary ones.
EQUALS, DOUBLE_EQUALS, NOT_EQUALS, IN, NOT_IN, EXISTS, DOES_NOT_EXIST, GREATER, LESS = (
    "=",
    "==",
    "!=",
    "in",
    "notin",
    "exists",
    "!",
    ">",
    "<",
)
_SET_OPS = (IN, NOT_IN)
_EXACT_OPS = (EQUALS, DOUBLE_EQUALS, NOT_EQUALS)
_NUMERIC_OPS = (GREATER, LESS)


@dataclass(frozen=True)
class Requirement:
    """One ANDed term of a label selector: ``key``, an operator constant above, sorted unique ``values``."""

    key: str
    op: str
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        if self.op in (EQUALS, DOUBLE_EQUALS, IN):
            return present and labels[self.key] in self.values
        if self.op in (NOT_EQUALS, NOT_IN):
            return not present or labels[self.key] not in self.values
        if self.op == EXISTS:
            return present
        if self.op == DOES_NOT_EXIST:
            return not present
        # GREATER / LESS compare integers; a label that is not an integer never matches
        try:
            have, want = int(labels[self.key]), int(self.values[0])
        except (KeyError, ValueError):
            return False
        return have > want if self.op == GREATER else have < want

    def to_string(self) -> str:
        if self.op == EXISTS:
            return self.key
        if self.op == DOES_NOT_EXIST:
            return f"!{self.key}"
        if self.op in _SET_OPS:
            return f"{self.key} {self.op} ({','.join(self.values)})"
        return f"{self.key}{self.op}{self.values[0]}"


def _requirement(key: str, op: str, values: Iterable[str]) -> Requirement:
    """Validated requirement; raises ``ValueError`` with the apimachinery wording."""
    vals = tuple(sorted(set(values)))
    _check_key(key)
    if op in _SET_OPS and not vals:
        raise ValueError("for 'in', 'notin' operators, values set can't be empty")
    if op in _EXACT_OPS and len(vals) != 1:
        raise ValueError("exact-match compatibility requires one single value")
    if op in (EXISTS, DOES_NOT_EXIST) and vals:
        raise ValueError("values set must be empty for exists and does not exist")
    if op in _NUMERIC_OPS:
        if len(vals) != 1:
            raise ValueError("for 'Gt', 'Lt' operators, exactly one value is required")
        try:
            int(vals[0])
        except ValueError:
            raise ValueError("for 'Gt', 'Lt' operators, the value must be an integer") from None
    for value in vals:
        if errors := validate_label_value(value):
            raise ValueError(f"invalid label value: {_go_quote(value)}: at key: {_go_quote(key)}: {'; '.join(errors)}")
    return Requirement(key, op, vals)


def _check_key(key: str) -> None:
    if errors := validate_label_key(key):
        raise ValueError(f"invalid label key {_go_quote(key)}: {'; '.join(errors)}")


def _go_quote(text: str) -> str:
    """Go's ``%q`` for the ASCII strings selectors contain."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True)
class LabelSelector:
    """ANDed requirements, sorted by key. ``nothing`` marks the selector that matches no object at all
    (what a nil ``metav1.LabelSelector`` means to controllers)."""

    requirements: tuple[Requirement, ...] = ()
    nothing: bool = False

    @property
    def empty(self) -> bool:
        """True when the selector matches everything."""
        return not self.requirements and not self.nothing

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        if self.nothing:
            return False
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)

    def to_string(self) -> str:
        """The canonical string form, parseable by :func:`parse_label_selector`."""
        return ",".join(r.to_string() for r in self.requirements)


# Tokens of the selector lexer. Words are identifiers unless they are the keywords "in"/"notin".
_SPECIAL = "=!(),<>"
_WHITESPACE = " \t\r\n"
_IDENT, _END = "identifier", "end of string"


class _Tokens:
    """The token stream of a label selector: ``(kind, literal)`` pairs, ending with ``(_END, "")``."""

    def __init__(self, text: str) -> None:
        self.items = list(self._lex(text))
        self.pos = 0

    @staticmethod
    def _lex(text: str) -> Iterable[tuple[str, str]]:
        i, n = 0, len(text)
        while True:
            while i < n and text[i] in _WHITESPACE:
                i += 1
            if i >= n:
                yield _END, ""
                return
            if text[i] in _SPECIAL:
                two = text[i : i + 2]
                lit = two if two in ("==", "!=") else text[i]
                i += len(lit)
                yield lit, lit
                continue
            start = i
            while i < n and text[i] not in _SPECIAL and text[i] not in _WHITESPACE:
                i += 1
            word = text[start:i]
            yield (word if word in (IN, NOT_IN) else _IDENT), word

    def peek(self, *, keywords: bool = False) -> tuple[str, str]:
        """The next token; ``in``/``notin`` count as identifiers unless an operator is expected (``keywords``)."""
        kind, lit = self.items[self.pos]
        return (_IDENT if kind in (IN, NOT_IN) and not keywords else kind), lit

    def take(self, *, keywords: bool = False) -> tuple[str, str]:
        token = self.peek(keywords=keywords)
        self.pos += 1
        return token


def _parse_requirement(tokens: _Tokens) -> Requirement:
    kind, key = tokens.take()
    negated = kind == DOES_NOT_EXIST
    if negated:
        kind, key = tokens.take()
    if kind != _IDENT:
        raise ValueError(f"found '{key}', expected: identifier")
    _check_key(key)  # before the operator, so a bad key is what the error names
    if negated:
        return _requirement(key, DOES_NOT_EXIST, ())
    if tokens.peek()[0] in (_END, ","):
        return _requirement(key, EXISTS, ())
    op, lit = tokens.take(keywords=True)
    if op not in _SET_OPS + _EXACT_OPS + _NUMERIC_OPS:
        raise ValueError(f"found '{lit}', expected: '=', '!=', '==', 'in', notin'")
    values = _parse_set(tokens) if op in _SET_OPS else [_parse_exact_value(tokens)]
    return _requirement(key, op, values)


def _parse_exact_value(tokens: _Tokens) -> str:
    kind, lit = tokens.peek()
    if kind in (_END, ","):
        return ""  # "k=" selects an empty value
    tokens.take()
    if kind != _IDENT:
        raise ValueError(f"found '{lit}', expected: identifier")
    return lit


def _parse_set(tokens: _Tokens) -> list[str]:
    """``(a, b)``; empty members are allowed and mean the empty value, as in Kubernetes (``(a,)``, ``()``)."""
    kind, lit = tokens.take()
    if kind != "(":
        raise ValueError(f"found '{lit}' expected: '('")
    kind, lit = tokens.peek()
    if kind not in (_IDENT, ",", ")"):
        raise ValueError(f"found '{lit}', expected: ',', ')' or identifier")
    values: list[str] = []
    expect_value = True
    while True:
        kind, lit = tokens.take()
        if kind == ")":
            if expect_value:
                values.append("")
            return values
        if kind == ",":
            if expect_value:
                values.append("")
            expect_value = True
        elif kind == _IDENT and expect_value:
            values.append(lit)
            expect_value = False
        elif kind == _IDENT:
            raise ValueError(f"found '{lit}', expected: ',' or ')'")
        else:
            raise ValueError(f"found '{lit}', expected: ',', or identifier")


@functools.lru_cache(maxsize=1024)
def parse_label_selector(text: str) -> LabelSelector:
    """Parse a label selector string; ``""`` selects everything. Selectors are immutable, so a
    controller or a client repeating one (every watch event, every list) parses it once.

    Bad syntax raises :class:`StatusError` 400 BadRequest with the API server's wording:

    >>> parse_label_selector("app in web")
    Traceback (most recent call last):
    ...
    labkit.sandbox.api.status.StatusError: unable to parse requirement: found 'web' expected: '('
    """
    tokens = _Tokens(text)
    requirements: list[Requirement] = []
    while True:
        kind, lit = tokens.peek()
        if kind == _END:
            break
        if kind not in (_IDENT, DOES_NOT_EXIST):
            raise bad_request(f"found '{lit}', expected: !, identifier, or 'end of string'")
        try:
            requirements.append(_parse_requirement(tokens))
        except ValueError as err:
            raise bad_request(f"unable to parse requirement: {err}") from None
        kind, lit = tokens.take()
        if kind == _END:
            break
        if kind != ",":
            raise bad_request(f"found '{lit}', expected: ',' or 'end of string'")
        kind, lit = tokens.peek()
        if kind not in (_IDENT, DOES_NOT_EXIST):
            raise bad_request(f"found '{lit}', expected: identifier after ','")
    return LabelSelector(tuple(sorted(requirements, key=lambda r: r.key)))


_MATCH_OPERATORS = {"In": IN, "NotIn": NOT_IN, "Exists": EXISTS, "DoesNotExist": DOES_NOT_EXIST}


def label_selector_from_match(selector: Mapping[str, Any] | None) -> LabelSelector:
    """Turn a ``metav1.LabelSelector`` (``matchLabels`` + ``matchExpressions``) into a :class:`LabelSelector`.

    As in Kubernetes, ``None`` matches nothing and ``{}`` matches everything.

    >>> label_selector_from_match({"matchLabels": {"app": "web"},
    ...     "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["db"]}]}).to_string()
    'app=web,tier notin (db)'
    """
    if selector is None:
        return LabelSelector(nothing=True)
    requirements: list[Requirement] = []
    try:
        for key, value in (selector.get("matchLabels") or {}).items():
            requirements.append(_requirement(key, EQUALS, [value]))
        for expr in selector.get("matchExpressions") or []:
            op = _MATCH_OPERATORS.get(expr.get("operator", ""))
            if op is None:
                raise ValueError(f"{_go_quote(str(expr.get('operator', '')))} is not a valid label selector operator")
            requirements.append(_requirement(expr.get("key", ""), op, expr.get("values") or ()))
    except ValueError as err:
        raise bad_request(str(err)) from None
    return LabelSelector(tuple(sorted(requirements, key=lambda r: r.key)))


# --- field selectors ------------------------------------------------------------------------------------------------

_FIELD_OPERATORS = ("!=", "==", "=")  # tried in this order at each position, as the API server does


@dataclass(frozen=True)
class FieldTerm:
    """``field`` (a dotted path such as ``status.phase``), ``op`` (``=``, ``==`` or ``!=``) and ``value``."""

    field: str
    op: str
    value: str

    def matches(self, obj: Mapping[str, Any]) -> bool:
        return (field_value(obj, self.field) == self.value) == (self.op != "!=")


@dataclass(frozen=True)
class FieldSelector:
    """ANDed :class:`FieldTerm` s; no terms selects everything."""

    terms: tuple[FieldTerm, ...] = ()

    def matches(self, obj: Mapping[str, Any]) -> bool:
        return all(t.matches(obj) for t in self.terms)

    def exact_name(self) -> str | None:
        """The name the selector pins with ``metadata.name=``/``==``, for a direct lookup; else ``None``."""
        for term in self.terms:
            if term.field == "metadata.name" and term.op != "!=":
                return term.value
        return None


def field_value(obj: Mapping[str, Any], path: str) -> str:
    """The field at a dotted ``path`` as a field selector sees it: a string, ``"true"``/``"false"`` for
    booleans, ``""`` for anything missing or not a scalar.

    >>> field_value({"spec": {"hostNetwork": True}}, "spec.hostNetwork"), field_value({}, "spec.nodeName")
    ('true', '')
    """
    value: Any = obj
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return ""
        value = value.get(part)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    return ""


def _split_unescaped_commas(text: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    escaped = False
    for ch in text:
        if ch == "," and not escaped:
            parts.append("".join(current))
            current = []
            continue
        current.append(ch)
        escaped = ch == "\\" and not escaped
    parts.append("".join(current))
    return parts


def _unescape_field_value(raw: str) -> str:
    """Values escape ``\\``, ``,`` and ``=`` with a backslash; anything else is an error, as in Kubernetes."""
    out: list[str] = []
    chars = iter(raw)
    for ch in chars:
        if ch == "\\":
            nxt = next(chars, "")
            if nxt not in ("\\", ",", "="):
                raise bad_request(f"invalid field selector: invalid escape sequence: \\{nxt}")
            out.append(nxt)
        elif ch in ",=":
            raise bad_request(f"invalid field selector: unescaped character in value: {ch}")
        else:
            out.append(ch)
    return "".join(out)


def _split_field_term(term: str) -> tuple[str, str, str] | None:
    for i in range(len(term)):
        for op in _FIELD_OPERATORS:
            if term.startswith(op, i):
                return term[:i], op, term[i + len(op) :]
    return None


@functools.lru_cache(maxsize=1024)
def parse_field_selector(text: str) -> FieldSelector:
    """Parse a field selector string; ``""`` selects everything (parsed once per string, like labels).

    A term without an operator raises :class:`StatusError` 400 with the API server's wording:

    >>> parse_field_selector("metadata.name")
    Traceback (most recent call last):
    ...
    labkit.sandbox.api.status.StatusError: invalid selector: 'metadata.name'; can't understand 'metadata.name'
    """
    terms: list[FieldTerm] = []
    for part in sorted(_split_unescaped_commas(text)):
        if not part:
            continue
        split = _split_field_term(part)
        if split is None:
            raise bad_request(f"invalid selector: '{text}'; can't understand '{part}'")
        field, op, raw = split
        terms.append(FieldTerm(field.strip(), op, _unescape_field_value(raw)))
    return FieldSelector(tuple(terms))


# --- the field labels each kind supports -----------------------------------------------------------------------------
# The field labels kube-apiserver 1.32 accepts, by (API group, kind): the AddFieldLabelConversionFunc tables of
# pkg/apis/core/v1/conversion.go and pkg/apis/batch/v1/conversion.go. Every other kind has apimachinery's
# DefaultMetaV1FieldSelectorConversion: metadata.name and metadata.namespace only, with its own wording.
_POD_FIELDS = (
    "metadata.name", "metadata.namespace", "spec.nodeName", "spec.restartPolicy", "spec.schedulerName",
    "spec.serviceAccountName", "spec.hostNetwork", "status.phase", "status.podIP", "status.podIPs",
    "status.nominatedNodeName",
)  # fmt: skip
_EVENT_FIELDS = (
    "involvedObject.kind", "involvedObject.namespace", "involvedObject.name", "involvedObject.uid",
    "involvedObject.apiVersion", "involvedObject.resourceVersion", "involvedObject.fieldPath", "reason",
    "reportingComponent", "source", "type", "metadata.namespace", "metadata.name",
)  # fmt: skip
FIELD_LABELS: dict[tuple[str, str], tuple[str, ...]] = {
    ("", "Pod"): _POD_FIELDS,
    ("", "Node"): ("metadata.name", "spec.unschedulable"),
    ("", "ReplicationController"): ("metadata.name", "metadata.namespace", "status.replicas"),
    ("", "Event"): _EVENT_FIELDS,
    ("", "Namespace"): ("status.phase", "metadata.name"),
    ("", "Secret"): ("type", "metadata.namespace", "metadata.name"),
    ("", "Service"): ("metadata.namespace", "metadata.name", "spec.clusterIP", "spec.type"),
    ("batch", "Job"): ("metadata.name", "metadata.namespace", "status.successful"),
}


def check_field_labels(group: str, kind: str, selector: FieldSelector) -> None:
    """400 with upstream's wording when ``selector`` names a field label the kind does not support. (The Pod
    conversion also accepts the pre-1.0 ``spec.host`` as ``spec.nodeName``; the sandbox does not.)

    >>> check_field_labels("", "ConfigMap", parse_field_selector("spec.x=1"))
    Traceback (most recent call last):
    ...
    labkit.sandbox.api.status.StatusError: "spec.x" is not a known field selector: only "metadata.name", \
"metadata.namespace"
    >>> check_field_labels("", "Pod", parse_field_selector("spec.nodeName=n1,status.phase!=Failed"))
    """
    supported = FIELD_LABELS.get((group, kind))
    for term in selector.terms:
        label = term.field
        if supported is None and label not in ("metadata.name", "metadata.namespace"):
            raise bad_request(f'"{label}" is not a known field selector: only "metadata.name", "metadata.namespace"')
        if supported is not None and label not in supported:
            raise bad_request(
                f'field label "{label}" not supported for Job'
                if kind == "Job"
                else f"field label not supported: {label}"
            )
