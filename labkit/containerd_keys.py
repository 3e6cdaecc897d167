"""How containerd names and reports its config keys: the CRI plugin that holds the runtimes in each config
version, TOML key paths, and the warnings containerd 2 logs for keys it does not know.

>>> dotted(("plugins", "io.containerd.cri.v1.runtime", "containerd"))
'plugins."io.containerd.cri.v1.runtime".containerd'
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

#: CRI plugin id holding ``containerd.runtimes`` per config version.
CRI_RUNTIME_PLUGIN = {1: "cri", 2: "io.containerd.grpc.v1.cri", 3: "io.containerd.cri.v1.runtime"}
IGNORED_KEY_TEXT = "Ignoring unknown key in TOML for plugin"
#: The error containerd 2 attaches to each ignored key (go-toml's strict decoder, in containerd's ``Config.Decode``).
STRICT_MODE_ERROR = "strict mode: fields in the document are missing in the target struct"


def toml_string(value: str) -> str:
    """A TOML basic string (JSON's escapes are a subset TOML accepts)."""
    return json.dumps(value)


def dotted(key: tuple[str, ...] | list[str]) -> str:
    """A table's key path as TOML writes it: bare parts as they are, the others quoted."""
    return ".".join(k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else toml_string(k) for k in key)


_HEADER = re.compile(r"^[ \t]*\[(?!\[)(.+?)\][ \t]*(?:#.*)?$", re.M)
_KEY_PART = re.compile(r"""\s*(?:"((?:[^"\\]|\\.)*)"|'([^']*)'|([A-Za-z0-9_-]+))\s*(?:\.|$)""")


def _table_headers(config_text: str) -> Iterable[tuple[str, ...]]:
    """The key path of each ``[table]`` header (the text already parsed as TOML)."""
    for header in _HEADER.finditer(config_text):
        body, pos, parts = header.group(1), 0, []
        while pos < len(body) and (part := _KEY_PART.match(body, pos)):
            basic, literal, bare = part.groups()
            parts.append(json.loads(f'"{basic}"') if basic is not None else literal if literal is not None else bare)
            pos = part.end()
        yield tuple(parts)


def _logfmt(value: str) -> str:
    """A logrus text-formatter field value: bare when it is safe, else quoted."""
    return value if re.fullmatch(r"[A-Za-z0-9._/@^+-]+", value) else toml_string(value)


def _unknown_tables(key: tuple[str, ...], table: Mapping[str, Any]) -> Iterable[tuple[str, ...]]:
    """*key* and the tables below it as go-toml v2 re-marshals a plugin's map in containerd's ``Config.Decode``:
    keys sorted, "Intermediate tables are always printed" (``marshaler.go``); the strict decode then reports each
    unknown table header, skipping the keys inside it."""
    yield key
    for name in sorted(table):
        if isinstance(table[name], dict):
            yield from _unknown_tables((*key, name), table[name])


def ignored_keys(config_text: str, doc: Mapping[str, Any], version: int) -> list[str]:
    """A line per table under another config version's CRI prefix, from which containerd loads nothing.

    Version 3: containerd 2's ``Config.Decode`` logs one warning per unknown table of a plugin, parents included
    (:func:`_unknown_tables`), the key path joined by spaces (``cmd/containerd/server/config/config.go``); the v2
    grpc plugin still exists (streaming server), so its ``containerd`` tables are those. [inf] Other mismatches
    are in labkit's words.
    """
    found: list[str] = []
    if version == 3:
        legacy = (doc.get("plugins") or {}).get(CRI_RUNTIME_PLUGIN[2]) or {}
        if isinstance(legacy.get("containerd"), dict):
            found += [
                f'level=warning msg="{IGNORED_KEY_TEXT}" error="{STRICT_MODE_ERROR}" '
                f"key={_logfmt(' '.join(key))} plugin={_logfmt(CRI_RUNTIME_PLUGIN[2])}"
                for key in _unknown_tables(("containerd",), legacy["containerd"])
            ]
    for header in _table_headers(config_text):
        if len(header) < 3 or header[0] != "plugins" or header[1] == CRI_RUNTIME_PLUGIN[version]:
            continue
        plugin_id = header[1]
        if plugin_id not in CRI_RUNTIME_PLUGIN.values() or (
            plugin_id == CRI_RUNTIME_PLUGIN[2] and (version == 3 or header[2] != "containerd")
        ):
            continue
        found.append(
            f"table {dotted(header)} is under {plugin_id}, which a version {version} config does not read "
            "for runtimes (labkit's words)"
        )
    return found
