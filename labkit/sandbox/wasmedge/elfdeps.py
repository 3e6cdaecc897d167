"""The dynamic section of an ELF shared object: what ``ldd`` and ``dlopen`` read (DT_NEEDED, DT_RUNPATH).

Only 64-bit little-endian objects (x86-64, aarch64) are read; anything else is "not an ELF object here",
which is what a loader of those machines would say of it too.

>>> read_dynamic(b"not an elf")
Traceback (most recent call last):
...
labkit.sandbox.wasmedge.elfdeps.NotElf: not a 64-bit little-endian ELF object
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")  # e_ident … e_shstrndx (64 bytes)
_SHDR = struct.Struct("<IIQQQQIIQQ")  # sh_name, type, flags, addr, offset, size, link, info, addralign, entsize
_DYN = struct.Struct("<qQ")
SHT_DYNAMIC = 6
DT_NULL, DT_NEEDED, DT_SONAME, DT_RPATH, DT_RUNPATH = 0, 1, 14, 15, 29
MAX_ENTRIES = 4096  # a hostile file cannot make us loop for long


class NotElf(ValueError):
    """The bytes are not an ELF object this module reads."""


@dataclass
class Dynamic:
    needed: list[str] = field(default_factory=list)
    soname: str | None = None
    rpath: list[str] = field(default_factory=list)
    runpath: list[str] = field(default_factory=list)


def _cstr(table: bytes, offset: int) -> str:
    end = table.find(b"\0", offset)
    return table[offset : end if end >= 0 else len(table)].decode("utf-8", "replace")


def read_dynamic(data: bytes) -> Dynamic:
    """DT_NEEDED (in order), DT_SONAME, DT_RPATH and DT_RUNPATH of an ELF64 LE object."""
    if len(data) < _EHDR.size or data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise NotElf("not a 64-bit little-endian ELF object")
    header = _EHDR.unpack_from(data)
    shoff, shentsize, shnum = header[6], header[11], header[12]
    if shentsize != _SHDR.size or shoff + shnum * shentsize > len(data):
        raise NotElf("truncated section headers")
    sections = [_SHDR.unpack_from(data, shoff + k * shentsize) for k in range(shnum)]
    found = Dynamic()
    for sh in sections:
        if sh[1] != SHT_DYNAMIC:
            continue
        if sh[6] >= len(sections):
            raise NotElf("the dynamic section links no string table")
        strtab = sections[sh[6]]
        strings = data[strtab[4] : strtab[4] + strtab[5]]
        offset, end = sh[4], min(sh[4] + sh[5], len(data))
        for _ in range(MAX_ENTRIES):
            if offset + _DYN.size > end:
                break
            tag, value = _DYN.unpack_from(data, offset)
            offset += _DYN.size
            if tag == DT_NULL:
                break
            if tag == DT_NEEDED:
                found.needed.append(_cstr(strings, value))
            elif tag == DT_SONAME:
                found.soname = _cstr(strings, value)
            elif tag == DT_RPATH:
                found.rpath = _cstr(strings, value).split(":")
            elif tag == DT_RUNPATH:
                found.runpath = _cstr(strings, value).split(":")
    return found
