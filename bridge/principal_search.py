"""principal-property-search (RFC 3744 section 9.4) on the user's own principal.

Stock Radicale answers every principal search with an empty multistatus, so clients that
look the user up by name or address (calendar pickers, the caldav library's
``search_principals``) find nobody. Here a search finds the one principal a user may see,
their own, when it matches; other users are never listed (no way to learn who has an
account). The answer is the PROPFIND of that principal, so it carries exactly what a
PROPFIND would.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from radicale import pathutils, xmlutils

from bridge.store import User

_C = xmlutils.make_clark
SEARCH = _C("D:principal-property-search")
PROPERTY_SET = _C("D:principal-search-property-set")
_PROPERTY_SEARCH, _MATCH, _PROP = _C("D:property-search"), _C("D:match"), _C("D:prop")
_APPLY = _C("D:apply-to-principal-collection-set")
DISPLAYNAME, ADDRESSES = _C("D:displayname"), _C("C:calendar-user-address-set")
EMAILS = _C("CS:email-address-set")
_DESCRIPTIONS = {DISPLAYNAME: "Name", ADDRESSES: "Calendar address"}


def in_scope(root: ET.Element, path: str, login: str) -> bool:
    """Whether the search covers the user's principal: asked of the principal collection
    (``/``), of the principal itself, or of the principal collection set."""
    parts = [p for p in pathutils.strip_path(path).split("/") if p]
    return root.find(_APPLY) is not None or parts in ([], [login])


def matches(root: ET.Element, user: User) -> bool:
    """Whether ``user`` matches the searches of ``root`` (all of them, or any with
    ``test="anyof"``); each is a case-insensitive substring of one of the named
    properties. No search at all matches."""
    results = []
    for search in root.findall(_PROPERTY_SEARCH):
        text = (search.findtext(_MATCH) or "").casefold()
        names = [p.tag for prop in search.findall(_PROP) for p in prop]
        values = [v.casefold() for name in names for v in _values(user, name)]
        results.append(any(text in value for value in values))
    if root.get("test", "allof") == "anyof":
        return any(results) or not results
    return all(results)


def _values(user: User, tag: str) -> list[str]:
    if tag == DISPLAYNAME:
        return [user.name, user.login]
    if tag in (ADDRESSES, EMAILS):
        return [f"mailto:{user.email}", user.email] if user.email else []
    return []


def propfind_body(root: ET.Element) -> bytes:
    """The PROPFIND asking what the search asks to be returned (its ``DAV:prop``; some
    clients put the properties straight under the search element)."""
    wanted = root.find(_PROP)
    tags = [p.tag for p in wanted] if wanted is not None else []
    tags += [c.tag for c in root if c.tag not in (_PROPERTY_SEARCH, _PROP, _APPLY)]
    propfind = ET.Element(_C("D:propfind"))
    prop = ET.SubElement(propfind, _PROP)
    for tag in dict.fromkeys(tags or [DISPLAYNAME]):
        ET.SubElement(prop, tag)
    return ET.tostring(propfind, encoding="utf-8", xml_declaration=True)


def property_set() -> ET.Element:
    """What may be searched on (RFC 3744 section 9.5)."""
    answer = ET.Element(PROPERTY_SET)
    for tag, description in _DESCRIPTIONS.items():
        searchable = ET.SubElement(answer, _C("D:principal-search-property"))
        ET.SubElement(ET.SubElement(searchable, _PROP), tag)
        text = ET.SubElement(searchable, _C("D:description"))
        text.set("{http://www.w3.org/XML/1998/namespace}lang", "en")
        text.text = description
    return answer
