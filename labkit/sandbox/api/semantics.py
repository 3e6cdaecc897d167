"""The semantic rules of a write, as upstream's ``Validate*`` functions apply them after decoding.

The real API server's "required" checks are Go code, not the schema's ``required`` lists (which
kubernetes-validate marks loosely). This is an explicit table of the rules a learner of this kit meets,
with the server's wording; :func:`labkit.sandbox.api.validation.validate` runs it after the schema walk.

>>> dns_label("metadata.name", "Web_1")[0]["message"][:55]
'Invalid value: "Web_1": a lowercase RFC 1123 label must'
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from labkit.sandbox.api import crds

if TYPE_CHECKING:
    from labkit.sandbox.api.registry import Resource


Cause = dict[str, str]

_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_DNS1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
_ENV_NAME = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*")
_MSG_LABEL = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must "
    "start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for "
    "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
_MSG_SUBDOMAIN = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
    "and must start and end with an alphanumeric character (e.g. 'example.com', regex used for "
    "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
_MSG_DNS1035 = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
    "alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', "
    "regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
)
_MSG_LABEL_VALUE = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
    "and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or "
    "'12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
)
_MSG_LABEL_NAME = (
    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with "
    "an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for "
    "validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
)
_MSG_ENV = (
    "a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', "
    "and must not start with a digit (e.g. 'my.env-name',  or 'MY_ENV.NAME',  or 'MyEnvName1', regex "
    "used for validation is '[-._a-zA-Z][-._a-zA-Z0-9]*')"
)
_MSG_PORT = "must be between 1 and 65535, inclusive"
_PORT_NAME = re.compile(r"[-a-z0-9]+")
_HEADER_NAME = re.compile(r"[-A-Za-z0-9]+")
_MSG_HEADER = (
    "a valid HTTP header must consist of alphanumeric characters or '-' (e.g. 'X-Header-Name', "
    "regex used for validation is '[-A-Za-z0-9]+')"
)
_FORBIDDEN_HANDLERS = "Forbidden: may not specify more than 1 handler type"
_HTTP_SCHEMES = ("HTTP", "HTTPS")
_PROTOCOLS = ("SCTP", "TCP", "UDP")


def _go_value(value: Any) -> str:
    """A bad value as Go's field errors print it: ``"Foo"``, ``0``, ``map[string]string{"a":"b"}``."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "map[string]string(nil)"  # the only nil value these rules print: absent labels
    if isinstance(value, dict):
        inner = ", ".join(f"{json.dumps(k)}:{json.dumps(v)}" for k, v in sorted(value.items()))
        return f"map[string]string{{{inner}}}"
    return json.dumps(value)


def required(field: str, detail: str = "") -> Cause:
    return {
        "reason": "FieldValueRequired",
        "message": "Required value" + (f": {detail}" if detail else ""),
        "field": field,
    }


def invalid_value(field: str, value: Any, detail: str) -> Cause:
    return {"reason": "FieldValueInvalid", "message": f"Invalid value: {_go_value(value)}: {detail}", "field": field}


def not_supported(field: str, value: Any, supported: Iterable[str]) -> Cause:
    listed = ", ".join(f'"{s}"' for s in supported)
    return {
        "reason": "FieldValueNotSupported",
        "message": f"Unsupported value: {_go_value(value)}: supported values: {listed}",
        "field": field,
    }


def _duplicate(field: str, value: Any) -> Cause:
    return {"reason": "FieldValueDuplicate", "message": f"Duplicate value: {_go_value(value)}", "field": field}


def _unique_name(field: str, name: str | None, seen: set[str]) -> list[Cause]:
    """A required DNS-label name, unique among *seen* (which it joins): volumes, containers."""
    if not name:
        return [required(field)]
    causes = dns_label(field, name) + ([_duplicate(field, name)] if name in seen else [])
    seen.add(name)
    return causes


def _not_found(field: str, value: Any) -> Cause:
    return {"reason": "FieldValueNotFound", "message": f"Not found: {_go_value(value)}", "field": field}


def _name_format(field: str, value: str, pattern: re.Pattern[str], message: str, max_len: int) -> list[Cause]:
    causes = []
    if len(value) > max_len:
        causes.append(invalid_value(field, value, f"must be no more than {max_len} characters"))
    if not pattern.fullmatch(value):
        causes.append(invalid_value(field, value, message))
    return causes


def dns_label(field: str, value: str) -> list[Cause]:
    """RFC 1123 label rules (namespace, container, port and volume names, RuntimeClass handler)."""
    return _name_format(field, value, _DNS1123_LABEL, _MSG_LABEL, 63)


def dns_subdomain(field: str, value: str) -> list[Cause]:
    """RFC 1123 subdomain rules (most object names)."""
    return _name_format(field, value, _DNS1123_SUBDOMAIN, _MSG_SUBDOMAIN, 253)


def _dns1035(field: str, value: str) -> list[Cause]:
    return _name_format(field, value, _DNS1035_LABEL, _MSG_DNS1035, 63)


def _path_segment(field: str, value: str) -> list[Cause]:
    """RBAC object names: anything that is a valid URL path segment."""
    if value in (".", ".."):
        return [invalid_value(field, value, f"may not be '{value}'")]
    return [invalid_value(field, value, f"may not contain '{c}'") for c in "/%" if c in value]


_NAME_RULES: dict[str, Callable[[str, str], list[Cause]]] = {
    "Namespace": dns_label,
    "Service": _dns1035,
    "Role": _path_segment,
    "RoleBinding": _path_segment,
    "ClusterRole": _path_segment,
    "ClusterRoleBinding": _path_segment,
}
_NAMELESS = {
    "SelfSubjectAccessReview", "SubjectAccessReview", "LocalSubjectAccessReview", "SelfSubjectRulesReview",
    "TokenReview",
}  # fmt: skip


def _labels(field: str, labels: dict[str, Any]) -> list[Cause]:
    causes: list[Cause] = []
    for key, value in labels.items():
        prefix, _, name = key.rpartition("/")
        if "/" in key and (not prefix or not _DNS1123_SUBDOMAIN.fullmatch(prefix) or len(prefix) > 253):
            causes.append(invalid_value(field, key, "prefix part " + _MSG_SUBDOMAIN))
        if not name:
            causes.append(invalid_value(field, key, "name part must be non-empty"))
        elif len(name) > 63:
            causes.append(invalid_value(field, key, "name part must be no more than 63 characters"))
        elif not _LABEL_VALUE.fullmatch(name):
            causes.append(invalid_value(field, key, _MSG_LABEL_NAME))
        causes.extend(_name_format(field, value or "", _LABEL_VALUE, _MSG_LABEL_VALUE, 63))
    return causes


def _metadata(resource: Resource, meta: dict[str, Any], field: str = "metadata") -> list[Cause]:
    causes: list[Cause] = []
    name = meta.get("name")
    if field == "metadata" and resource.kind not in _NAMELESS:
        if name:
            causes += _NAME_RULES.get(resource.kind, dns_subdomain)(f"{field}.name", name)
        elif not meta.get("generateName"):
            causes.append(required(f"{field}.name", "name or generateName is required"))
    causes += _labels(f"{field}.labels", meta.get("labels") or {})
    return causes


def _port_number(field: str, value: Any) -> list[Cause]:
    if not value:
        return [required(field)]
    return [] if 1 <= value <= 65535 else [invalid_value(field, value, _MSG_PORT)]


def _protocol(field: str, value: Any) -> list[Cause]:
    return [] if value in (None, *_PROTOCOLS) else [not_supported(field, value, _PROTOCOLS)]


def _no_backsteps(field: str, path: str) -> list[Cause]:
    """validatePathNoBacksteps (pkg/apis/core/validation/validation.go): no ``..`` element; one cause is enough."""
    return [invalid_value(field, path, "must not contain '..'")] if ".." in path.split("/") else []


def _descending(field: str, path: str) -> list[Cause]:
    """validateLocalDescendingPath: a relative path without ``..`` (volumeMount subPath)."""
    causes = [invalid_value(field, path, "must be a relative path")] if path.startswith("/") else []
    return causes + _no_backsteps(field, path)


def _non_reserved(field: str, path: str) -> list[Cause]:
    """validateLocalNonReservedPath: also not starting with ``..`` (configMap/secret item paths)."""
    causes = _descending(field, path)
    if path.startswith("..") and not path.startswith("../"):
        causes.append(invalid_value(field, path, "must not start with '..'"))
    return causes


def _volume_source(field: str, volume: dict[str, Any]) -> list[Cause]:
    """The path rules of validateHostPathVolumeSource and validateKeyToPath, which keep a pod on its node."""
    host_path = volume.get("hostPath")
    if isinstance(host_path, dict):
        path = host_path.get("path") or ""
        return _no_backsteps(f"{field}.hostPath.path", path) if path else [required(f"{field}.hostPath.path")]
    causes: list[Cause] = []
    for kind in ("configMap", "secret"):
        for i, item in enumerate((volume.get(kind) or {}).get("items") or []):
            if not item.get("path"):
                causes.append(required(f"{field}.{kind}.items[{i}].path"))
            else:
                causes += _non_reserved(f"{field}.{kind}.items[{i}].path", item["path"])
    return causes


def _port_num_or_name(field: str, port: Any) -> list[Cause]:
    """ValidatePortNumOrName: a port number, or an IANA_SVC_NAME (validation.IsValidPortName)."""
    if not isinstance(port, str):
        return [] if isinstance(port, int) and 1 <= port <= 65535 else [invalid_value(field, port or 0, _MSG_PORT)]
    checks = (
        (len(port) > 15, "must be no more than 15 characters"),
        (not _PORT_NAME.fullmatch(port), "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)"),
        (not re.search("[a-z]", port), "must contain at least one letter (a-z)"),
        ("--" in port, "must not contain consecutive hyphens"),
        (port.startswith("-") or port.endswith("-"), "must not begin or end with a hyphen"),
    )
    return [invalid_value(field, port, message) for failed, message in checks if failed]


def _probe_handler(field: str, probe: dict[str, Any]) -> list[Cause]:
    """validateHandler(handlerFromProbe(...)): exactly one of exec, httpGet, tcpSocket, grpc."""
    causes: list[Cause] = []
    handlers = [h for h in ("exec", "httpGet", "tcpSocket", "grpc") if probe.get(h) is not None]
    for extra in handlers[1:]:
        causes.append({"reason": "FieldValueForbidden", "message": _FORBIDDEN_HANDLERS, "field": f"{field}.{extra}"})
    if not handlers:
        return [required(field, "must specify a handler type")]
    kind, action = handlers[0], probe[handlers[0]] or {}
    if kind == "exec" and not action.get("command"):
        causes.append(required(f"{field}.exec.command"))
    elif kind == "httpGet":  # path and scheme are defaulted ("/", "HTTP") before upstream validates them
        causes += _port_num_or_name(f"{field}.httpGet.port", action.get("port"))
        if (action.get("scheme") or "HTTP") not in _HTTP_SCHEMES:
            causes.append(not_supported(f"{field}.httpGet.scheme", action["scheme"], _HTTP_SCHEMES))
        for header in action.get("httpHeaders") or ():
            if not _HEADER_NAME.fullmatch(header.get("name") or ""):
                causes.append(invalid_value(f"{field}.httpGet.httpHeaders", header.get("name") or "", _MSG_HEADER))
    elif kind in ("tcpSocket", "grpc"):
        causes += _port_num_or_name(f"{field}.{kind}.port", action.get("port"))
    return causes


def _probes(field: str, c: dict[str, Any]) -> list[Cause]:
    """validateLivenessProbe, validateReadinessProbe, validateStartupProbe and validateProbe
    (pkg/apis/core/validation/validation.go). Upstream validates after SetDefaults_Probe, which turns a zero
    threshold into its default; this table runs before defaulting, so it reads a zero as the default too."""
    causes: list[Cause] = []
    for kind in ("livenessProbe", "readinessProbe", "startupProbe"):
        probe = c.get(kind)
        if not isinstance(probe, dict):
            continue
        pfield = f"{field}.{kind}"
        causes += _probe_handler(pfield, probe)
        for number in (
            "initialDelaySeconds",
            "timeoutSeconds",
            "periodSeconds",
            "successThreshold",
            "failureThreshold",
        ):
            value = probe.get(number)
            if isinstance(value, int) and value < 0:
                causes.append(invalid_value(f"{pfield}.{number}", value, "must be greater than or equal to 0"))
        grace = probe.get("terminationGracePeriodSeconds")
        if isinstance(grace, int) and grace <= 0:
            causes.append(invalid_value(f"{pfield}.terminationGracePeriodSeconds", grace, "must be greater than 0"))
        if kind == "readinessProbe" and grace is not None:
            causes.append(
                invalid_value(f"{pfield}.terminationGracePeriodSeconds", grace, "must not be set for readinessProbes")
            )
        success = probe.get("successThreshold") or 1
        if kind != "readinessProbe" and success != 1:
            causes.append(invalid_value(f"{pfield}.successThreshold", success, "must be 1"))
    return causes


def _container(field: str, c: dict[str, Any], volumes: set[str]) -> list[Cause]:
    causes = [] if c.get("image") else [required(f"{field}.image")]
    for i, port in enumerate(c.get("ports") or []):
        causes += _port_number(f"{field}.ports[{i}].containerPort", port.get("containerPort"))
        causes += _protocol(f"{field}.ports[{i}].protocol", port.get("protocol"))
    for i, env in enumerate(c.get("env") or []):
        if not env.get("name"):
            causes.append(required(f"{field}.env[{i}].name"))
        elif not _ENV_NAME.fullmatch(env["name"]):
            causes.append(invalid_value(f"{field}.env[{i}].name", env["name"], _MSG_ENV))
    for i, mount in enumerate(c.get("volumeMounts") or []):
        if not mount.get("name"):
            causes.append(required(f"{field}.volumeMounts[{i}].name"))
        elif mount["name"] not in volumes:
            causes.append(_not_found(f"{field}.volumeMounts[{i}].name", mount["name"]))
        if not mount.get("mountPath"):
            causes.append(required(f"{field}.volumeMounts[{i}].mountPath"))
        if mount.get("subPath"):
            causes += _descending(f"{field}.volumeMounts[{i}].subPath", mount["subPath"])
    return causes


def _pod_spec(
    field: str, spec: dict[str, Any], restart_policies: tuple[str, ...] = ("Always", "OnFailure", "Never")
) -> list[Cause]:
    causes: list[Cause] = []
    volumes: set[str] = set()
    for i, volume in enumerate(spec.get("volumes") or []):
        vfield = f"{field}.volumes[{i}]"
        causes += _unique_name(f"{vfield}.name", volume.get("name"), volumes)
        if not set(volume) - {"name"}:
            causes.append(required(vfield, "must specify a volume type"))
        causes += _volume_source(vfield, volume)
    if not spec.get("containers"):
        causes.append(required(f"{field}.containers"))
    seen: set[str] = set()
    for list_name in ("initContainers", "containers"):
        for i, container in enumerate(spec.get(list_name) or []):
            cfield = f"{field}.{list_name}[{i}]"
            causes += _unique_name(f"{cfield}.name", container.get("name"), seen)
            causes += _container(cfield, container, volumes)
            if list_name == "containers":  # init containers without restartPolicy=Always may not have probes
                causes += _probes(cfield, container)
    policy = spec.get("restartPolicy")
    if policy is not None and policy not in restart_policies:
        causes.append(not_supported(f"{field}.restartPolicy", policy, restart_policies))
    if spec.get("runtimeClassName"):
        causes += dns_subdomain(f"{field}.runtimeClassName", spec["runtimeClassName"])
    return causes


def selector_matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a LabelSelector (matchLabels and matchExpressions) selects ``labels``."""
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        present = key in labels
        if (
            (op == "In" and (not present or labels[key] not in values))
            or (op == "NotIn" and present and labels[key] in values)
            or (op == "Exists" and not present)
            or (op == "DoesNotExist" and present)
        ):
            return False
    return True


def _empty_selector(selector: dict[str, Any]) -> str:
    """Go's ``%#v`` of an empty LabelSelector, as the real message prints it."""
    labels = "map[string]string{}" if selector.get("matchLabels") == {} else "map[string]string(nil)"
    exprs = (
        "[]v1.LabelSelectorRequirement{}"
        if selector.get("matchExpressions") == []
        else "[]v1.LabelSelectorRequirement(nil)"
    )
    return f"v1.LabelSelector{{MatchLabels:{labels}, MatchExpressions:{exprs}}}"


def _template(spec: dict[str, Any], selector: dict[str, Any] | None, policies: tuple[str, ...]) -> list[Cause]:
    template = spec.get("template")
    if not isinstance(template, dict):
        return [required("spec.template")]
    labels = (template.get("metadata") or {}).get("labels")
    causes = _labels("spec.template.metadata.labels", labels or {})
    if (
        selector
        and (selector.get("matchLabels") or selector.get("matchExpressions"))
        and not selector_matches(selector, labels or {})
    ):
        causes.append(
            {
                "reason": "FieldValueInvalid",
                "field": "spec.template.metadata.labels",
                "message": f"Invalid value: {_go_value(labels)}: `selector` does not match template `labels`",
            }
        )
    pod_spec = template.get("spec") or {}
    if pod_spec.get("ephemeralContainers"):  # ValidatePodTemplateSpec: they come only through pods/ephemeralcontainers
        causes.append(
            {
                "reason": "FieldValueForbidden",
                "field": "spec.template.spec.ephemeralContainers",
                "message": "Forbidden: ephemeral containers not allowed in pod template",
            }
        )
    return causes + _pod_spec("spec.template.spec", pod_spec, policies)


def _replicated(obj: dict[str, Any], policies: tuple[str, ...]) -> list[Cause]:
    spec = obj.get("spec") or {}
    causes: list[Cause] = []
    replicas = spec.get("replicas")
    if isinstance(replicas, int) and replicas < 0:
        causes.append(invalid_value("spec.replicas", replicas, "must be greater than or equal to 0"))
    selector = spec.get("selector")
    if selector is None:
        causes.append(required("spec.selector"))
    elif not (selector.get("matchLabels") or selector.get("matchExpressions")):
        causes.append(
            {
                "reason": "FieldValueInvalid",
                "field": "spec.selector",
                "message": f"Invalid value: {_empty_selector(selector)}: empty selector is invalid for deployment",
            }
        )
    return causes + _template(spec, selector, policies)


def _job(obj: dict[str, Any]) -> list[Cause]:
    spec = obj.get("spec") or {}
    policy = ((spec.get("template") or {}).get("spec") or {}).get("restartPolicy")
    causes: list[Cause] = []
    if policy in (None, "", "Always"):  # the server defaults an empty policy to Always first
        causes.append(required("spec.template.spec.restartPolicy", 'valid values: "OnFailure", "Never"'))
    # a Job without a selector gets a generated one, so only a given selector is checked
    return causes + _template(spec, spec.get("selector"), ("OnFailure", "Never", "Always"))


def _service(obj: dict[str, Any]) -> list[Cause]:
    spec = obj.get("spec") or {}
    causes: list[Cause] = []
    kind = spec.get("type", "ClusterIP")
    types = ("ClusterIP", "ExternalName", "LoadBalancer", "NodePort")
    if kind not in types:
        causes.append(not_supported("spec.type", kind, types))
    ports = spec.get("ports") or []
    if not ports and kind != "ExternalName" and spec.get("clusterIP") != "None":
        causes.append(required("spec.ports"))
    names: set[str] = set()
    for i, port in enumerate(ports):
        field = f"spec.ports[{i}]"
        name = port.get("name")
        if not name:
            causes += [required(f"{field}.name")] if len(ports) > 1 else []
        else:
            causes += dns_label(f"{field}.name", name)
            causes += [_duplicate(f"{field}.name", name)] if name in names else []
            names.add(name)
        number = port.get("port")
        if not isinstance(number, int) or not 1 <= number <= 65535:
            causes.append(invalid_value(f"{field}.port", number or 0, _MSG_PORT))
        causes += _protocol(f"{field}.protocol", port.get("protocol"))
        target = port.get("targetPort")
        if isinstance(target, int) and not 1 <= target <= 65535:
            causes.append(invalid_value(f"{field}.targetPort", target, _MSG_PORT))
    return causes


def _runtime_class(obj: dict[str, Any]) -> list[Cause]:
    handler = obj.get("handler")
    return dns_label("handler", handler) if handler else [required("handler")]


def _crd_names(crd: dict[str, Any]) -> list[Cause]:
    """ValidateCustomResourceDefinitionNames: the names become URL path segments and JSON kinds, so each is a
    DNS-1035 label (the kinds lowercased), and the group a DNS subdomain."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    causes = dns_subdomain("spec.group", spec["group"]) if spec.get("group") else []
    for field in ("plural", "singular", "kind", "listKind"):
        value = names.get(field)
        if isinstance(value, str) and value:
            causes += _dns1035(f"spec.names.{field}", value.lower() if "ind" in field else value)
    for i, short in enumerate(names.get("shortNames") or ()):
        causes += _dns1035(f"spec.names.shortNames[{i}]", short)
    return causes


def _local_review(obj: dict[str, Any]) -> list[Cause]:
    """A LocalSubjectAccessReview asks about its own namespace only (``ValidateLocalSubjectAccessReview``,
    pkg/apis/authorization/validation/validation.go); metadata.namespace is the request's by then."""
    spec = obj.get("spec") or {}
    attributes = spec.get("resourceAttributes")
    causes = []
    if attributes is not None:
        namespace = attributes.get("namespace") or ""
        if namespace != (obj.get("metadata") or {}).get("namespace"):
            field = "spec.resourceAttributes.namespace"
            causes.append(invalid_value(field, namespace, "must match metadata.namespace"))
    if spec.get("nonResourceAttributes") is not None:
        causes.append(invalid_value("spec.nonResourceAttributes", "object", "disallowed on this kind of request"))
    return causes


_KIND_RULES: dict[str, Callable[[dict[str, Any]], list[Cause]]] = {
    "Pod": lambda obj: _pod_spec("spec", obj.get("spec") or {}),
    "Deployment": lambda obj: _replicated(obj, ("Always",)),
    "ReplicaSet": lambda obj: _replicated(obj, ("Always",)),
    "Job": _job,
    "Service": _service,
    "RuntimeClass": _runtime_class,
    "CustomResourceDefinition": lambda obj: crds.crd_causes(obj) + _crd_names(obj),
    "LocalSubjectAccessReview": _local_review,
}


def semantic_causes(resource: Resource, obj: dict[str, Any]) -> list[Cause]:
    """The 422 causes the real server would report for ``obj`` (empty when valid).

    >>> from labkit.sandbox.api.registry import RESOURCES
    >>> semantic_causes(RESOURCES.by_kind("node.k8s.io", "v1", "RuntimeClass"),
    ...                 {"metadata": {"name": "wasm"}})
    [{'reason': 'FieldValueRequired', 'message': 'Required value', 'field': 'handler'}]
    """
    causes = _metadata(resource, obj.get("metadata") or {})
    rule = _KIND_RULES.get(resource.kind)
    return causes + rule(obj) if rule else causes
