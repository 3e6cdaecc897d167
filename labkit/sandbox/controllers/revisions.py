"""ControllerRevisions: the template history of DaemonSets and StatefulSets (upstream's controller/history).

A revision stores the set's pod template as the patch upstream's ``getPatch`` makes
(``{"spec": {"template": {..., "$patch": "replace"}}}``) and is named ``<set>-<hash>``, the hash being
FNV-1a over that patch and the collision count, spelled as ``rand.SafeEncodeString`` spells it
(``HashControllerRevision``). ``kubectl rollout history`` and ``rollout undo`` read these objects.

>>> len(revision_hash({"spec": {"template": {}}})) <= 10
True
"""

from __future__ import annotations

import copy
import json
import struct
from typing import TYPE_CHECKING, Any

from labkit.sandbox.api.registry import RESOURCES
from labkit.sandbox.api.status import StatusError
from labkit.sandbox.api.store import NAME_ALPHABET
from labkit.sandbox.controllers.deploymentutil import fnv32a
from labkit.sandbox.controllers.podutil import MANAGER, owned, owner_reference

if TYPE_CHECKING:
    from labkit.sandbox.api.apicore import ApiCore

CONTROLLER_REVISIONS = RESOURCES.served("apps", "controllerrevisions")
#: The label on pods (and revisions) naming the revision they were made from (apps/v1 ControllerRevisionHashLabelKey).
REVISION_LABEL = "controller-revision-hash"


def template_patch(owner: dict[str, Any]) -> dict[str, Any]:
    """What a revision stores of *owner*: its pod template as a replacing patch (upstream's getPatch)."""
    template = copy.deepcopy(owner["spec"]["template"])
    template["$patch"] = "replace"
    return {"spec": {"template": template}}


def revision_hash(data: dict[str, Any], collisions: int = 0) -> str:
    """``HashControllerRevision``: FNV-1a of the data's JSON, then the collision count as 4 little-endian bytes."""
    raw = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    digits = str(fnv32a(raw + struct.pack("<I", collisions & 0xFFFFFFFF)))
    return "".join(NAME_ALPHABET[ord(d) % len(NAME_ALPHABET)] for d in digits)


def revisions(core: ApiCore, owner: dict[str, Any]) -> list[dict[str, Any]]:
    """The owner's revisions, oldest first."""
    return sorted(owned(core, CONTROLLER_REVISIONS, owner), key=lambda r: int(r.get("revision", 0)))


def current_revision(core: ApiCore, owner: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The revision of the owner's present template (created, or renumbered as the newest when a rollback
    returns to an older one) and all revisions, oldest first."""
    history = revisions(core, owner)
    data = template_patch(owner)
    newest = max((int(r.get("revision", 0)) for r in history), default=0)
    for found in history:
        if found.get("data") == data:
            if int(found.get("revision", 0)) == newest:
                return found, history
            renumbered = {**copy.deepcopy(found), "revision": newest + 1}
            meta = found["metadata"]
            renumbered = core.replace(
                CONTROLLER_REVISIONS, meta["namespace"], meta["name"], renumbered, manager=MANAGER
            )[0]
            return renumbered, revisions(core, owner)
    collisions = int((owner.get("status") or {}).get("collisionCount") or 0)
    meta = owner["metadata"]
    while True:
        hash_ = revision_hash(data, collisions)
        labels = dict((owner["spec"]["template"].get("metadata") or {}).get("labels") or {})
        labels[REVISION_LABEL] = hash_
        rev = {
            "apiVersion": "apps/v1",
            "kind": "ControllerRevision",
            "metadata": {
                "name": f"{meta['name'][:223]}-{hash_}",
                "namespace": meta["namespace"],
                "labels": labels,
                "ownerReferences": [owner_reference(owner)],
            },
            "data": data,
            "revision": newest + 1,
        }
        try:
            created = core.create(CONTROLLER_REVISIONS, meta["namespace"], rev, manager=MANAGER)[0]
        except StatusError as e:
            if e.code != 409:
                raise
            collisions += 1  # a revision of another template has this name: hash again
            continue
        return created, revisions(core, owner)


def truncate_history(core: ApiCore, owner: dict[str, Any], history: list[dict[str, Any]], keep: set[str]) -> None:
    """Delete the oldest revisions beyond ``spec.revisionHistoryLimit``, never one named in *keep*."""
    limit = int(owner["spec"].get("revisionHistoryLimit", 10))
    old = [r for r in history if r["metadata"]["name"] not in keep]
    for rev in old[: max(len(old) - limit, 0)]:
        try:
            core.delete(CONTROLLER_REVISIONS, rev["metadata"]["namespace"], rev["metadata"]["name"])
        except StatusError as e:
            if e.code != 404:
                raise
