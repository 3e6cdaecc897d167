"""Decode the protobuf request bodies kubectl 1.32 sends for typed ``create`` commands.

kubectl >= 1.32 posts ``kubectl create configmap|deployment|namespace|...`` and
``kubectl auth can-i`` as ``application/vnd.kubernetes.protobuf``.  Answering 415
is a dead end (kubectl does not retry in JSON), so the API server turns these
bodies into the JSON dict the same object would have had as a JSON body.

Wire format: the magic ``k8s\\x00``, then a ``runtime.Unknown`` message
(1 typeMeta {1 apiVersion, 2 kind}, 2 raw, 3 contentEncoding, 4 contentType);
``raw`` is the typed object.  It is decoded with the field tables below, read
from the ``generated.proto`` and ``types.go`` of k8s.io/api and
k8s.io/apimachinery v1.32 (field numbers, JSON names, ``omitempty``).

>>> decode(b"k8s\\x00\\n\\x0f\\n\\x02v1\\x12\\tNamespace\\x12\\x07\\n\\x05\\n\\x03lab")
{'kind': 'Namespace', 'apiVersion': 'v1', 'metadata': {'name': 'lab'}}
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from labkit.sandbox.api.status import StatusError, bad_request, unsupported_media_type

MEDIA_TYPE = "application/vnd.kubernetes.protobuf"
MAGIC = b"k8s\x00"

# Wire types of the protobuf encoding.
VARINT, FIXED64, LENGTH, FIXED32 = 0, 1, 2, 5


def is_protobuf(content_type: str | None) -> bool:
    """True for ``application/vnd.kubernetes.protobuf`` (parameters ignored).

    >>> is_protobuf("application/vnd.kubernetes.protobuf; charset=utf-8"), is_protobuf("application/json")
    (True, False)
    """
    return content_type is not None and content_type.split(";", 1)[0].strip().lower() == MEDIA_TYPE


# --------------------------------------------------------------------------- wire reader


class WireError(ValueError):
    """The bytes are not a well-formed protobuf message."""


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise WireError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise WireError("varint longer than 10 bytes")


def fields(data: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """Yield ``(field number, wire type, value)``; value is an int or the raw bytes.

    >>> list(fields(b"\\x08\\x96\\x01\\x12\\x02hi"))
    [(1, 0, 150), (2, 2, b'hi')]
    """
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise WireError("field number 0")
        value: int | bytes
        if wire == VARINT:
            value, pos = _varint(data, pos)
        elif wire == LENGTH:
            size, pos = _varint(data, pos)
            if pos + size > len(data):
                raise WireError(f"field {number} runs past the end of the message")
            value, pos = data[pos : pos + size], pos + size
        elif wire in (FIXED64, FIXED32):
            width = 8 if wire == FIXED64 else 4
            if pos + width > len(data):
                raise WireError(f"field {number} runs past the end of the message")
            value, pos = int.from_bytes(data[pos : pos + width], "little"), pos + width
        else:
            raise WireError(f"unsupported wire type {wire} (groups are not used by Kubernetes)")
        yield number, wire, value


# --------------------------------------------------------------------------- field tables

# One message per entry: ``Name: <number> <jsonName> <type>[*][!], ...``.
# Types: s string, i integer, b bool, B bytes (base64 in JSON), T metav1.Time,
# Q resource.Quantity, IS intstr.IntOrString, map:s:<type> a map, {} a message kept as an empty
# object (statuses, which the server ignores on create), or another message name.
# ``*`` = repeated; ``!`` = no ``omitempty`` in the Go JSON tag; jsonName ``-`` =
# an embedded (inline) struct whose fields merge into the parent.
# Messages a create body never carries (security contexts, affinity, exotic
# volume sources, managedFields, ...) are left out: their fields are skipped.
_TABLE = """
Namespace: 1 metadata ObjectMeta, 2 spec NamespaceSpec, 3 status {}
ConfigMap: 1 metadata ObjectMeta, 2 data map:s:s, 3 binaryData map:s:B, 4 immutable b
Secret: 1 metadata ObjectMeta, 2 data map:s:B, 3 type s, 4 stringData map:s:s, 5 immutable b
ServiceAccount: 1 metadata ObjectMeta, 2 secrets ObjectReference*, 3 imagePullSecrets LocalObjectReference*,
    4 automountServiceAccountToken b
Service: 1 metadata ObjectMeta, 2 spec ServiceSpec, 3 status ServiceStatus
ServiceStatus: 1 loadBalancer {}
Deployment: 1 metadata ObjectMeta, 2 spec DeploymentSpec, 3 status {}
Job: 1 metadata ObjectMeta, 2 spec JobSpec, 3 status {}
CronJob: 1 metadata ObjectMeta, 2 spec CronJobSpec, 3 status {}
Role: 1 metadata ObjectMeta, 2 rules PolicyRule*!
RoleBinding: 1 metadata ObjectMeta, 2 subjects Subject*, 3 roleRef RoleRef!
ClusterRole: 1 metadata ObjectMeta, 2 rules PolicyRule*!, 3 aggregationRule AggregationRule
ClusterRoleBinding: 1 metadata ObjectMeta, 2 subjects Subject*, 3 roleRef RoleRef!
SelfSubjectAccessReview: 1 metadata ObjectMeta, 2 spec SelfSubjectAccessReviewSpec!,
    3 status SubjectAccessReviewStatus
SelfSubjectRulesReview: 1 metadata ObjectMeta, 2 spec SelfSubjectRulesReviewSpec!,
    3 status SubjectRulesReviewStatus
SelfSubjectRulesReviewSpec: 1 namespace s
SubjectRulesReviewStatus: 1 resourceRules {}*!, 2 nonResourceRules {}*!, 3 incomplete b!, 4 evaluationError s
SelfSubjectReview: 1 metadata ObjectMeta, 2 status {}
TokenRequest: 1 metadata ObjectMeta, 2 spec TokenRequestSpec!, 3 status TokenRequestStatus
ResourceQuota: 1 metadata ObjectMeta, 2 spec ResourceQuotaSpec, 3 status {}
DeleteOptions: 1 gracePeriodSeconds i!, 2 preconditions Preconditions, 3 orphanDependents b!,
    4 propagationPolicy s, 5 dryRun s*
Preconditions: 1 uid s, 2 resourceVersion s
Eviction: 1 metadata ObjectMeta, 2 deleteOptions DeleteOptions
PodDisruptionBudget: 1 metadata ObjectMeta, 2 spec PodDisruptionBudgetSpec, 3 status {}
PodDisruptionBudgetSpec: 1 minAvailable IS, 2 selector LabelSelector, 3 maxUnavailable IS,
    4 unhealthyPodEvictionPolicy s
Pod: 1 metadata ObjectMeta, 2 spec PodSpec, 3 status {}
ReplicaSet: 1 metadata ObjectMeta, 2 spec ReplicaSetSpec, 3 status {}
ObjectMeta: 1 name s, 2 generateName s, 3 namespace s, 4 selfLink s, 5 uid s, 6 resourceVersion s,
    7 generation i, 8 creationTimestamp T, 9 deletionTimestamp T, 10 deletionGracePeriodSeconds i,
    11 labels map:s:s, 12 annotations map:s:s, 13 ownerReferences OwnerReference*, 14 finalizers s*
NamespaceSpec: 1 finalizers s*
ObjectReference: 1 kind s, 2 namespace s, 3 name s, 4 uid s, 5 apiVersion s, 6 resourceVersion s, 7 fieldPath s
LocalObjectReference: 1 name s
ServiceSpec: 1 ports ServicePort*, 2 selector map:s:s, 3 clusterIP s, 4 type s, 5 externalIPs s*,
    7 sessionAffinity s, 8 loadBalancerIP s, 9 loadBalancerSourceRanges s*, 10 externalName s,
    11 externalTrafficPolicy s, 12 healthCheckNodePort i, 13 publishNotReadyAddresses b,
    14 sessionAffinityConfig SessionAffinityConfig, 17 ipFamilyPolicy s, 18 clusterIPs s*, 19 ipFamilies s*,
    20 allocateLoadBalancerNodePorts b, 21 loadBalancerClass s, 22 internalTrafficPolicy s,
    23 trafficDistribution s
DeploymentSpec: 1 replicas i, 2 selector LabelSelector!, 3 template PodTemplateSpec!,
    4 strategy DeploymentStrategy, 5 minReadySeconds i, 6 revisionHistoryLimit i, 7 paused b,
    9 progressDeadlineSeconds i
JobSpec: 1 parallelism i, 2 completions i, 3 activeDeadlineSeconds i, 4 selector LabelSelector,
    5 manualSelector b, 6 template PodTemplateSpec!, 7 backoffLimit i, 8 ttlSecondsAfterFinished i,
    9 completionMode s, 10 suspend b, 12 backoffLimitPerIndex i, 13 maxFailedIndexes i,
    14 podReplacementPolicy s, 15 managedBy s
CronJobSpec: 1 schedule s!, 2 startingDeadlineSeconds i, 3 concurrencyPolicy s, 4 suspend b,
    5 jobTemplate JobTemplateSpec!, 6 successfulJobsHistoryLimit i, 7 failedJobsHistoryLimit i, 8 timeZone s
PolicyRule: 1 verbs s*!, 2 apiGroups s*, 3 resources s*, 4 resourceNames s*, 5 nonResourceURLs s*
Subject: 1 kind s!, 2 apiGroup s, 3 name s!, 4 namespace s
RoleRef: 1 apiGroup s!, 2 kind s!, 3 name s!
AggregationRule: 1 clusterRoleSelectors LabelSelector*
SelfSubjectAccessReviewSpec: 1 resourceAttributes ResourceAttributes,
    2 nonResourceAttributes NonResourceAttributes
SubjectAccessReviewStatus: 1 allowed b!, 2 reason s, 3 evaluationError s, 4 denied b
TokenRequestSpec: 1 audiences s*!, 3 boundObjectRef BoundObjectReference!, 4 expirationSeconds i!
TokenRequestStatus: 1 token s!, 2 expirationTimestamp T!
ResourceQuotaSpec: 1 hard map:s:Q, 2 scopes s*, 3 scopeSelector ScopeSelector
ResourceQuotaStatus: 1 hard map:s:Q, 2 used map:s:Q
PodSpec: 1 volumes Volume*, 2 containers Container*!, 3 restartPolicy s, 4 terminationGracePeriodSeconds i,
    5 activeDeadlineSeconds i, 6 dnsPolicy s, 7 nodeSelector map:s:s, 8 serviceAccountName s, 9 serviceAccount s,
    10 nodeName s, 11 hostNetwork b, 12 hostPID b, 13 hostIPC b, 15 imagePullSecrets LocalObjectReference*,
    16 hostname s, 17 subdomain s, 19 schedulerName s, 20 initContainers Container*,
    21 automountServiceAccountToken b, 22 tolerations Toleration*, 23 hostAliases HostAlias*,
    24 priorityClassName s, 25 priority i, 27 shareProcessNamespace b, 28 readinessGates PodReadinessGate*,
    29 runtimeClassName s, 30 enableServiceLinks b, 31 preemptionPolicy s, 32 overhead map:s:Q,
    35 setHostnameAsFQDN b, 36 os PodOS, 37 hostUsers b, 38 schedulingGates PodSchedulingGate*,
    40 resources ResourceRequirements
ReplicaSetSpec: 1 replicas i, 2 selector LabelSelector!, 3 template PodTemplateSpec, 4 minReadySeconds i
OwnerReference: 1 kind s!, 3 name s!, 4 uid s!, 5 apiVersion s!, 6 controller b, 7 blockOwnerDeletion b
ServicePort: 1 name s, 2 protocol s, 3 port i!, 4 targetPort IS, 5 nodePort i, 6 appProtocol s
SessionAffinityConfig: 1 clientIP ClientIPConfig
LabelSelector: 1 matchLabels map:s:s, 2 matchExpressions LabelSelectorRequirement*
PodTemplateSpec: 1 metadata ObjectMeta, 2 spec PodSpec
DeploymentStrategy: 1 type s, 2 rollingUpdate RollingUpdateDeployment
JobTemplateSpec: 1 metadata ObjectMeta, 2 spec JobSpec
ResourceAttributes: 1 namespace s, 2 verb s, 3 group s, 4 version s, 5 resource s, 6 subresource s, 7 name s,
    8 fieldSelector FieldSelectorAttributes, 9 labelSelector LabelSelectorAttributes
NonResourceAttributes: 1 path s, 2 verb s
BoundObjectReference: 1 kind s, 2 apiVersion s, 3 name s, 4 uid s
ScopeSelector: 1 matchExpressions ScopedResourceSelectorRequirement*
Volume: 1 name s!, 2 - VolumeSource!
Container: 1 name s!, 2 image s, 3 command s*, 4 args s*, 5 workingDir s, 6 ports ContainerPort*, 7 env EnvVar*,
    8 resources ResourceRequirements, 9 volumeMounts VolumeMount*, 10 livenessProbe Probe,
    11 readinessProbe Probe, 13 terminationMessagePath s, 14 imagePullPolicy s, 16 stdin b, 17 stdinOnce b,
    18 tty b, 19 envFrom EnvFromSource*, 20 terminationMessagePolicy s, 22 startupProbe Probe, 24 restartPolicy s
Toleration: 1 key s, 2 operator s, 3 value s, 4 effect s, 5 tolerationSeconds i
HostAlias: 1 ip s!, 2 hostnames s*
PodReadinessGate: 1 conditionType s!
PodOS: 1 name s!
PodSchedulingGate: 1 name s!
ResourceRequirements: 1 limits map:s:Q, 2 requests map:s:Q
ClientIPConfig: 1 timeoutSeconds i
LabelSelectorRequirement: 1 key s!, 2 operator s!, 3 values s*
RollingUpdateDeployment: 1 maxUnavailable IS, 2 maxSurge IS
FieldSelectorAttributes: 1 rawSelector s, 2 requirements FieldSelectorRequirement*
LabelSelectorAttributes: 1 rawSelector s, 2 requirements LabelSelectorRequirement*
ScopedResourceSelectorRequirement: 1 scopeName s!, 2 operator s!, 3 values s*
VolumeSource: 1 hostPath HostPathVolumeSource, 2 emptyDir EmptyDirVolumeSource, 6 secret SecretVolumeSource,
    16 downwardAPI DownwardAPIVolumeSource, 19 configMap ConfigMapVolumeSource,
    26 projected ProjectedVolumeSource
ContainerPort: 1 name s, 2 hostPort i, 3 containerPort i!, 4 protocol s, 5 hostIP s
EnvVar: 1 name s!, 2 value s, 3 valueFrom EnvVarSource
VolumeMount: 1 name s!, 2 readOnly b, 3 mountPath s!, 4 subPath s, 5 mountPropagation s, 6 subPathExpr s,
    7 recursiveReadOnly s
Probe: 1 - ProbeHandler!, 2 initialDelaySeconds i, 3 timeoutSeconds i, 4 periodSeconds i, 5 successThreshold i,
    6 failureThreshold i, 7 terminationGracePeriodSeconds i
EnvFromSource: 1 prefix s, 2 configMapRef ConfigMapEnvSource, 3 secretRef SecretEnvSource
FieldSelectorRequirement: 1 key s!, 2 operator s!, 3 values s*
HostPathVolumeSource: 1 path s!, 2 type s
EmptyDirVolumeSource: 1 medium s, 2 sizeLimit Q
SecretVolumeSource: 1 secretName s, 2 items KeyToPath*, 3 defaultMode i, 4 optional b
DownwardAPIVolumeSource: 1 items DownwardAPIVolumeFile*, 2 defaultMode i
ConfigMapVolumeSource: 1 - LocalObjectReference!, 2 items KeyToPath*, 3 defaultMode i, 4 optional b
ProjectedVolumeSource: 1 sources VolumeProjection*!, 2 defaultMode i
EnvVarSource: 1 fieldRef ObjectFieldSelector, 2 resourceFieldRef ResourceFieldSelector,
    3 configMapKeyRef ConfigMapKeySelector, 4 secretKeyRef SecretKeySelector
ProbeHandler: 1 exec ExecAction, 2 httpGet HTTPGetAction, 3 tcpSocket TCPSocketAction, 4 grpc GRPCAction
ConfigMapEnvSource: 1 - LocalObjectReference!, 2 optional b
SecretEnvSource: 1 - LocalObjectReference!, 2 optional b
KeyToPath: 1 key s!, 2 path s!, 3 mode i
DownwardAPIVolumeFile: 1 path s!, 2 fieldRef ObjectFieldSelector, 3 resourceFieldRef ResourceFieldSelector,
    4 mode i
VolumeProjection: 1 secret SecretProjection, 2 downwardAPI DownwardAPIProjection, 3 configMap ConfigMapProjection
ObjectFieldSelector: 1 apiVersion s, 2 fieldPath s!
ResourceFieldSelector: 1 containerName s, 2 resource s!, 3 divisor Q
ConfigMapKeySelector: 1 - LocalObjectReference!, 2 key s!, 3 optional b
SecretKeySelector: 1 - LocalObjectReference!, 2 key s!, 3 optional b
ExecAction: 1 command s*
HTTPGetAction: 1 path s, 2 port IS!, 3 host s, 4 scheme s, 5 httpHeaders HTTPHeader*
TCPSocketAction: 1 port IS!, 2 host s
GRPCAction: 1 port i!, 2 service s!
SecretProjection: 1 - LocalObjectReference!, 2 items KeyToPath*, 4 optional b
DownwardAPIProjection: 1 items DownwardAPIVolumeFile*
ConfigMapProjection: 1 - LocalObjectReference!, 2 items KeyToPath*, 4 optional b
HTTPHeader: 1 name s!, 2 value s!
"""


@dataclass(frozen=True)
class Field:
    name: str  # JSON name; "-" for an inline struct
    type: str
    repeated: bool
    keep_zero: bool  # Go emits the zero value (no omitempty)


def _parse_table(text: str) -> dict[str, dict[int, Field]]:
    messages: dict[str, dict[int, Field]] = {}
    entries: list[str] = []
    for line in text.strip().splitlines():
        if line.startswith(" ") and entries:
            entries[-1] += " " + line.strip()
        else:
            entries.append(line.strip())
    for entry in entries:
        name, _, body = entry.partition(":")
        table: dict[int, Field] = {}
        for spec in filter(None, (s.strip() for s in body.split(","))):
            number, json_name, typ = spec.split()
            keep_zero = typ.endswith("!")
            typ = typ.rstrip("!")
            repeated = typ.endswith("*")
            table[int(number)] = Field(json_name, typ.rstrip("*"), repeated, keep_zero)
        messages[name.strip()] = table
    return messages


MESSAGES = _parse_table(_TABLE)

#: the kinds a protobuf body may carry (each decoded with the message of the same name)
KINDS = (
    "Namespace", "ConfigMap", "Secret", "ServiceAccount", "Service", "Deployment", "ReplicaSet", "Pod", "Job",
    "CronJob", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding", "SelfSubjectAccessReview",
    "SelfSubjectRulesReview", "SelfSubjectReview", "TokenRequest", "ResourceQuota", "DeleteOptions", "Eviction",
    "PodDisruptionBudget",
)  # fmt: skip


# --------------------------------------------------------------------------- typed decoding

_SCALARS = {"s", "B", "b", "i", "T", "Q", "IS", "{}"}


def _signed(value: int) -> int:
    # int32/int64 negatives travel as 64-bit two's complement varints.
    return value - (1 << 64) if value >= 1 << 63 else value


def _time(data: bytes) -> str | None:
    if not data:
        return None  # a zero metav1.Time marshals to an empty message and to JSON null
    # metav1.Time keeps whole seconds only (field 1); its nanos (field 2) are dropped by Kubernetes too
    seconds = next((_signed(int(v)) for n, _, v in fields(data) if n == 1), 0)
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _quantity(data: bytes) -> str:
    return next((v.decode() for n, _, v in fields(data) if n == 1 and isinstance(v, bytes)), "")


def _int_or_string(data: bytes) -> int | str:
    kind, int_val, str_val = 0, 0, ""
    for number, _, value in fields(data):
        if number == 1:
            kind = int(value)
        elif number == 2:
            int_val = _signed(int(value))
        elif number == 3 and isinstance(value, bytes):
            str_val = value.decode()
    return str_val if kind == 1 else int_val


def _scalar(typ: str, wire: int, value: int | bytes) -> Any:
    """One value of a non-message type."""
    if typ == "s":
        return _bytes(value).decode()
    if typ == "B":
        return base64.b64encode(_bytes(value)).decode()
    if typ == "b":
        return bool(_number(value, wire))
    if typ == "i":
        return _signed(_number(value, wire))
    if typ == "T":
        return _time(_bytes(value))
    if typ == "Q":
        return _quantity(_bytes(value))
    if typ == "IS":
        return _int_or_string(_bytes(value))
    if typ == "{}":
        return {}
    raise ValueError(f"no decoder for field type {typ!r}")


def _bytes(value: int | bytes) -> bytes:
    if not isinstance(value, bytes):
        raise WireError("expected a length-delimited field")
    return value


def _number(value: int | bytes, wire: int) -> int:
    # A few fields (PodSpec.hostUsers, PodSpec.priority) carry a "bytes" protobuf tag in
    # types.go but are written as varints; trust the wire, not the tag.
    if wire == LENGTH:
        return _varint(_bytes(value), 0)[0]
    return int(value)


def _map_entry(data: bytes, value_type: str) -> tuple[str, Any]:
    key, val = "", None
    for number, wire, value in fields(data):
        if number == 1:
            key = _bytes(value).decode()
        elif number == 2:
            val = _value(value_type, wire, value)
    if val is None:
        val = _zero(value_type)
    return key, val


def _zero(typ: str) -> Any:
    return {"s": "", "B": "", "b": False, "i": 0, "Q": "0", "IS": 0}.get(typ, {})


def _value(typ: str, wire: int, value: int | bytes) -> Any:
    if typ in MESSAGES:
        return decode_message(typ, _bytes(value))
    return _scalar(typ, wire, value)


def _is_empty(value: Any) -> bool:
    return value in ("", 0, False, None, [], {}) and not isinstance(value, dict)


def decode_message(name: str, data: bytes) -> dict[str, Any]:
    """Decode one typed message into its JSON form; unknown field numbers are skipped.

    >>> decode_message("ContainerPort", b"\\x18\\x90\\x3f\\x22\\x03TCP")
    {'containerPort': 8080, 'protocol': 'TCP'}
    """
    table = MESSAGES[name]
    out: dict[str, Any] = {}
    for number, wire, value in fields(data):
        field = table.get(number)
        if field is None:
            continue  # forward compatibility: a newer client may send fields we do not know
        if field.type.startswith("map:"):
            key, item = _map_entry(_bytes(value), field.type.split(":", 2)[2])
            out.setdefault(field.name, {})[key] = item
            continue
        if field.type not in MESSAGES and field.type not in _SCALARS:
            continue  # a message type left out of the tables
        item = _value(field.type, wire, value)
        if field.name == "-":
            out.update(item)
        elif field.repeated:
            out.setdefault(field.name, []).append(item)
        else:
            out[field.name] = item
    return _apply_omitempty(table, out)


def _apply_omitempty(table: dict[int, Field], out: dict[str, Any]) -> dict[str, Any]:
    """Drop what Go's encoding/json would omit, add what it would print although absent.

    Go writes every non-pointer field on the wire, so an empty string, 0 or false is
    present and must be dropped when the JSON tag says ``omitempty``; structs are never
    omitted by encoding/json, so decoded messages stay even when empty.  A field without
    ``omitempty`` that is absent on the wire was a nil pointer, slice or map: JSON null.
    """
    for field in table.values():
        if field.name == "-":
            continue
        if field.name not in out:
            if field.keep_zero:
                out[field.name] = None
        elif not field.keep_zero and field.type != "T" and _is_empty(out[field.name]):
            del out[field.name]
    return out


# --------------------------------------------------------------------------- envelope


def unwrap(body: bytes) -> tuple[str, str, bytes]:
    """Split a ``runtime.Unknown`` envelope into ``(apiVersion, kind, raw)``."""
    if not body.startswith(MAGIC):
        raise bad_request("the protobuf body does not start with the Kubernetes magic bytes 'k8s\\x00'")
    api_version = kind = encoding = ""
    raw = b""
    for number, _, value in fields(body[len(MAGIC) :]):
        if number == 1:
            for n, _, v in fields(_bytes(value)):
                if n == 1:
                    api_version = _bytes(v).decode()
                elif n == 2:
                    kind = _bytes(v).decode()
        elif number == 2:
            raw = _bytes(value)
        elif number == 3:
            encoding = _bytes(value).decode()
    if encoding:
        raise unsupported_media_type(f"{MEDIA_TYPE} with contentEncoding {encoding!r}")
    return api_version, kind, raw


def decode(body: bytes) -> dict[str, Any]:
    """The JSON dict of a kubectl protobuf body: ``kind``, ``apiVersion``, then the object's fields.

    Raises ``StatusError`` 415 for a kind without a field table (the hint says to use
    ``kubectl apply -f``, which sends JSON) and 400 for malformed bytes.
    """
    try:
        api_version, kind, raw = unwrap(body)
        if kind not in KINDS:
            raise unsupported_media_type(
                f"{MEDIA_TYPE} ({api_version}, Kind={kind})",
                hint=f"the sandbox decodes protobuf only for {', '.join(KINDS)}; "
                "write the object as YAML and use 'kubectl apply -f', which sends JSON",
            )
        return {"kind": kind, "apiVersion": api_version, **decode_message(kind, raw)}
    except StatusError:
        raise
    except (ValueError, TypeError) as exc:  # WireError, UnicodeDecodeError, a wrong wire type
        raise bad_request(f"unable to decode the protobuf request body: {exc}") from exc
