"""What to do with one calendar object, from what each side looks like now and at the last
agreement (the link). Pure: no I/O, tested as a table (tests/test_sync_decide.py).

A run has a *source* and a *destination*: open pulls (the target is the source, Gestan the
destination), close pushes (the other way round). Only the destination is written; the
source's version wins every conflict, and the destination's version is then reported as
the loser. Each side is seen as

* ``Present(key)``: it exists; ``key`` is its content key (the same normalised form on both
  sides, so equal keys mean the same appointment);
* ``ABSENT``: a positive signal that it was deleted (a tombstone in Gestan's journal, a
  cancelled entry in an incremental listing, a confirmed 404/410);
* ``UNKNOWN``: not looked at in this run (not in an incremental listing: unchanged since the
  last sync token). Absence from a listing is never read as a deletion (rule 4).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


@dataclass(frozen=True)
class Present:
    key: str


class _Marker(StrEnum):
    ABSENT = "absent"
    UNKNOWN = "unknown"


ABSENT = _Marker.ABSENT
UNKNOWN = _Marker.UNKNOWN
SideState = Present | _Marker


@dataclass(frozen=True)
class LinkState:
    """Content keys of the source and destination when the two last agreed."""

    source_key: str
    dest_key: str


class Action(StrEnum):
    NOTHING = "nothing"
    CREATE = "create"     # write the source's version as a new destination object
    UPDATE = "update"     # overwrite the destination with the source's version
    DELETE = "delete"     # delete the destination object
    LINK = "link"         # both already agree: record (or refresh) the link only
    FORGET = "forget"     # both gone: drop the link


@dataclass(frozen=True)
class Decision:
    action: Action
    # The destination had changed too (or was deleted, or was unlinked and different):
    # its version loses and goes to the audit log.
    conflict: bool = False


def decide(source: SideState, dest: SideState, link: LinkState | None) -> Decision:
    """The one decision table of the sync (see the module docstring)."""
    if source is UNKNOWN:
        return Decision(Action.NOTHING)
    if link is None:
        if source is ABSENT:
            return Decision(Action.NOTHING)
        if isinstance(dest, Present):
            if dest.key == source.key:
                return Decision(Action.LINK)
            return Decision(Action.UPDATE, conflict=True)
        return Decision(Action.CREATE)
    source_changed = source is ABSENT or source.key != link.source_key
    if not source_changed:
        if isinstance(dest, Present) and dest.key == source.key and dest.key != link.dest_key:
            return Decision(Action.LINK)  # the destination caught up by itself
        return Decision(Action.NOTHING)
    dest_changed = dest is ABSENT or (isinstance(dest, Present) and dest.key != link.dest_key)
    if source is ABSENT:
        if dest is ABSENT:
            return Decision(Action.FORGET)
        return Decision(Action.DELETE, conflict=dest_changed)
    if dest is ABSENT:
        return Decision(Action.CREATE, conflict=True)
    if isinstance(dest, Present) and dest.key == source.key:
        return Decision(Action.LINK)
    return Decision(Action.UPDATE, conflict=dest_changed)


@dataclass(frozen=True)
class OccurrenceSplit:
    """A series changed on both sides, seen occurrence by occurrence (DESIGN.md rule 5)."""

    from_dest: frozenset[str]  # changed on the destination only: the destination's version stays
    clashes: frozenset[str]    # changed on both sides, differently: the source wins, logged


def split_occurrences(agreed: dict[str, str], source: dict[str, str],
                      dest: dict[str, str]) -> OccurrenceSplit:
    """Which occurrences each side changed since ``agreed`` (part key → content key, as
    :func:`bridge.ical.content.content_of` gives them; a missing key is "as generated")."""
    keys = set(agreed) | set(source) | set(dest)
    source_changed = {k for k in keys if source.get(k) != agreed.get(k)}
    dest_changed = {k for k in keys if dest.get(k) != agreed.get(k)}
    clashes = {k for k in source_changed & dest_changed if source.get(k) != dest.get(k)}
    return OccurrenceSplit(frozenset(dest_changed - source_changed), frozenset(clashes))
