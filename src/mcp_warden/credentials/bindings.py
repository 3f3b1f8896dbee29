"""Entry bindings: which envelope mcp-warden wrote under which name.

An envelope has no associated data, and the store stays ``{name: envelope}``
because Node reads it, so an envelope copied from one entry into another, or
an old value copied back from ``.previous``, decrypts without error. The
sidecar ``<store>.bindings`` (0600, beside the store, written under the
store's lock) records a keyed MAC of every (name, envelope) pair mcp-warden
wrote or accepted::

    {"version": 1,
     "entries": {"scavio_api_key": ["<hex>"]},
     "previous": {"scavio_api_key": ["<hex>"]}}

Each MAC is HMAC-SHA256, under a key derived from the master key (`keyed`),
of the section, the name and the envelope text. Nothing secret is in the
file; without the master key nobody can make a MAC that checks. An entry is

* bound: a MAC of its own (name, envelope) is listed under its name;
* swapped: its envelope is bound to another name, or is a kept previous
  value: an error that names both;
* unbound: no MAC for it. A Node service that added or replaced the entry
  (the tutorial's JavaScript writes into the same file) cannot bind it, so
  it stays readable with a warning; the next mcp-warden write, or
  ``mcp-warden cred verify --bind``, binds it. Deleting the sidecar makes
  every entry unbound: warned about, never silently accepted.

A list holds one MAC, or two while a write is in flight. A writer, under
the lock, writes the sidecar listing both the old and the new MACs, then the
credential files, then the sidecar with the new MACs alone. A reader without
the lock (a server's `load`) reads the sidecar, then the store, then checks
that the sidecar did not change meanwhile: every pair it can see is then one
that was on disk at the same moment, and each such pair agrees, so a
rotation never looks like a swapped entry.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Literal

from mcp_warden.credentials import files
from mcp_warden.credentials.errors import CorruptStore
from mcp_warden.credentials.keyed import BINDING_INFO, derive, mac, same

Section = Literal["entries", "previous"]
SECTIONS: tuple[Section, ...] = ("entries", "previous")
VERSION = 1
_MACS = re.compile(r"[0-9a-f]{64}(?:,[0-9a-f]{64})*")
_Macs = dict[str, tuple[str, ...]]


def bindings_path(store_path: Path) -> Path:
    """Where the bindings of `store_path` live (beside it)."""
    return store_path.with_name(store_path.name + ".bindings")


@dataclass(frozen=True)
class Bindings:
    """The MACs of one sidecar file, per section and name."""

    entries: _Macs = field(default_factory=dict)
    previous: _Macs = field(default_factory=dict)

    def section(self, section: Section) -> _Macs:
        return self.entries if section == "entries" else self.previous

    def union(self, other: Bindings) -> Bindings:
        """Every MAC of both: what a writer publishes before it replaces the files."""
        return Bindings(_merge(self.entries, other.entries), _merge(self.previous, other.previous))

    def dump(self) -> bytes:
        document: dict[str, object] = {"version": VERSION}
        for section in SECTIONS:
            document[section] = {name: list(macs) for name, macs in self.section(section).items()}
        return files.dump_object(document)


class Status(Enum):
    BOUND = "bound"
    UNBOUND = "unbound"
    SWAPPED = "swapped"


@dataclass(frozen=True)
class Verdict:
    """What the bindings say of one entry; `source` names whose envelope a swapped one holds."""

    status: Status
    source: str = ""


BOUND = Verdict(Status.BOUND)
UNBOUND = Verdict(Status.UNBOUND)


class Binder:
    """MACs under the binding key of each master key given (the first one writes)."""

    def __init__(self, *master_keys: bytes) -> None:
        self._masters = master_keys
        self._derived: tuple[bytes, ...] | None = None

    def mac(self, section: Section, name: str, envelope: str) -> str:
        """The MAC that binds `envelope` to `name` in `section`, under the writing key."""
        return mac(self._keys()[0], _message(section, name, envelope))

    def verdict(self, section: Section, name: str, envelope: str, bindings: Bindings) -> Verdict:
        """Whether `envelope`, stored as `name` in `section`, is bound, unbound or swapped."""
        listed = bindings.section(section).get(name, ())
        if listed:
            for key in self._keys():
                own = mac(key, _message(section, name, envelope))
                if any(same(own, m) for m in listed):
                    return BOUND
        for key in self._keys():
            for other_section in SECTIONS:
                for other, macs in bindings.section(other_section).items():
                    if other_section == section and other == name:
                        continue
                    theirs = mac(key, _message(other_section, other, envelope))
                    if any(same(theirs, m) for m in macs):
                        return Verdict(Status.SWAPPED, _describe(other_section, other))
        return UNBOUND

    def _keys(self) -> tuple[bytes, ...]:
        if self._derived is None:  # derived on first use: a store that never checks pays nothing
            self._derived = tuple(derive(key, BINDING_INFO) for key in self._masters)
        return self._derived


def read(path: Path) -> tuple[files.Signature, Bindings] | None:
    """The bindings file at `path` and its signature; None when it does not exist."""
    snapshot = files.read_snapshot(path)
    if snapshot is None:
        return None
    return snapshot[0], parse(path, snapshot[1])


def write(path: Path, bindings: Bindings) -> None:
    """Replace the bindings file atomically (0600)."""
    files.write_atomic(path, bindings.dump())


def parse(path: Path, data: bytes) -> Bindings:
    """Strictly parsed bindings; CorruptStore names the file and what to do."""
    fix = (
        "restore it from a backup; or move it aside, check every value "
        "(`mcp-warden cred get NAME`) and bind them again with `mcp-warden cred verify --bind`"
    )
    document = files.parse_object(path, data)
    if document.get("version") != VERSION or set(document) != {"version", *SECTIONS}:
        raise CorruptStore(f"{path} is not a bindings file this mcp-warden wrote; {fix}")
    sections: list[_Macs] = []
    for section in SECTIONS:
        raw = document[section]
        if not isinstance(raw, dict) or not _are_mac_lists(list(raw.values())):
            raise CorruptStore(f"{path} has a malformed {section!r} section; {fix}")
        sections.append({name: tuple(macs) for name, macs in raw.items()})
    return Bindings(*sections)


def signature(path: Path) -> files.Signature | None:
    """The signature of `path` now (None when it does not exist)."""
    try:
        return files.signature(os.stat(path))
    except FileNotFoundError:
        return None


def _are_mac_lists(values: list[object]) -> bool:
    """Whether each value is a non-empty list of MACs (one regex for all: `load` reads this)."""
    if not all(isinstance(v, list) and v for v in values):
        return False
    macs = [m for v in values if isinstance(v, list) for m in v]
    return all(isinstance(m, str) for m in macs) and (
        not macs or _MACS.fullmatch(",".join(macs)) is not None
    )


def _message(section: Section, name: str, envelope: str) -> bytes:
    # Length-prefixed, so no (name, envelope) pair can be read as another.
    encoded = name.encode("utf-8", "surrogatepass")
    return b"%s\n%d\n%s\n%s" % (
        section.encode(),
        len(encoded),
        encoded,
        envelope.encode("utf-8", "surrogatepass"),
    )


def _describe(section: Section, name: str) -> str:
    if section == "previous":
        return f"the previous value of {name!r}"
    return f"the value of credential {name!r}"


def _merge(a: Mapping[str, tuple[str, ...]], b: Mapping[str, tuple[str, ...]]) -> _Macs:
    merged = {name: tuple(macs) for name, macs in a.items()}
    for name, macs in b.items():
        have = merged.get(name, ())
        merged[name] = have + tuple(m for m in macs if m not in have)
    return merged
