"""The sync decision as a table (vdirsyncer-style): source × destination × link → action.

Open pulls (source = the target), close pushes (source = Gestan): one table serves both.
"""

from __future__ import annotations

import pytest

from bridge.sync.decide import (
    ABSENT,
    UNKNOWN,
    Action,
    Decision,
    LinkState,
    Present,
    decide,
    split_occurrences,
)

A, B, C = Present("a"), Present("b"), Present("c")
LINKED = LinkState(source_key="a", dest_key="a")  # both sides were "a" at the last sync

TABLE = [
    # source   dest     link     action           conflict   why
    (UNKNOWN, A, LINKED, Action.NOTHING, False),   # source not listed: unchanged
    (UNKNOWN, ABSENT, LINKED, Action.NOTHING, False),
    (UNKNOWN, UNKNOWN, None, Action.NOTHING, False),
    # never linked
    (A, UNKNOWN, None, Action.CREATE, False),       # new on the source
    (A, ABSENT, None, Action.CREATE, False),
    (A, A, None, Action.LINK, False),               # same appointment found on both sides
    (A, B, None, Action.UPDATE, True),              # found but different: source wins, logged
    (ABSENT, A, None, Action.NOTHING, False),       # a deletion we never knew of
    (ABSENT, UNKNOWN, None, Action.NOTHING, False),
    # linked, source unchanged
    (A, A, LINKED, Action.NOTHING, False),
    (A, B, LINKED, Action.NOTHING, False),          # only the destination changed: other run
    (A, ABSENT, LINKED, Action.NOTHING, False),     # deleted at destination: pending its push
    (A, UNKNOWN, LINKED, Action.NOTHING, False),
    # linked, source changed
    (B, A, LINKED, Action.UPDATE, False),
    (B, UNKNOWN, LINKED, Action.UPDATE, False),
    (B, C, LINKED, Action.UPDATE, True),            # both changed: source wins, logged
    (B, B, LINKED, Action.LINK, False),             # both changed the same way
    (B, ABSENT, LINKED, Action.CREATE, True),       # changed here, deleted there: recreate
    # linked, source deleted
    (ABSENT, A, LINKED, Action.DELETE, False),
    (ABSENT, UNKNOWN, LINKED, Action.DELETE, False),
    (ABSENT, B, LINKED, Action.DELETE, True),       # deleted here, changed there: logged
    (ABSENT, ABSENT, LINKED, Action.FORGET, False),
]


@pytest.mark.parametrize(("source", "dest", "link", "action", "conflict"), TABLE)
def test_decision_table(source, dest, link, action, conflict):
    assert decide(source, dest, link) == Decision(action, conflict)


def test_table_covers_every_state_combination():
    states = [A, B, C, ABSENT, UNKNOWN]
    for source in states:
        for dest in states:
            for link in (None, LINKED):
                decision = decide(source, dest, link)
                if source is UNKNOWN:
                    assert decision.action is Action.NOTHING
                if decision.action in (Action.DELETE, Action.FORGET):
                    assert source is ABSENT and link is not None, "deletes need a signal"


# Per occurrence (DESIGN.md rule 5): agreed, source, destination parts → kept from the
# destination, clashes. "" is the master; a missing key is "as the series generates".
SPLITS = [
    # nothing changed
    ({"": "m"}, {"": "m"}, {"": "m"}, set(), set()),
    # the source moved A, the destination moved B: B stays, no clash
    ({"": "m"}, {"": "m", "A": "a1"}, {"": "m", "B": "b1"}, {"B"}, set()),
    # both moved A, differently: the source wins A, a clash
    ({"": "m"}, {"": "m", "A": "a1"}, {"": "m", "A": "a2"}, set(), {"A"}),
    # both made the same change: no clash
    ({"": "m"}, {"": "m", "A": "a1"}, {"": "m", "A": "a1"}, set(), set()),
    # the destination cancelled C, the source changed the master's title
    ({"": "m"}, {"": "m2"}, {"": "m", "C": "cancelled"}, {"C"}, set()),
    # the destination put A back as generated while the source kept it: A from the dest
    ({"": "m", "A": "a1"}, {"": "m", "A": "a1"}, {"": "m"}, {"A"}, set()),
    # both changed the master differently
    ({"": "m"}, {"": "m2"}, {"": "m3"}, set(), {""}),
]


@pytest.mark.parametrize(("agreed", "source", "dest", "from_dest", "clashes"), SPLITS)
def test_split_occurrences(agreed, source, dest, from_dest, clashes) -> None:
    split = split_occurrences(agreed, source, dest)
    assert (set(split.from_dest), set(split.clashes)) == (from_dest, clashes)
