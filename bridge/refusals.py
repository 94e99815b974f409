"""How a refused request is answered: the standard status line, the reason in the body.

A reason may quote what the client sent (a UID, a zone, a line of its body): it never goes
in the status line or a header (CR/LF there is header injection), and in the body its
control characters are escaped. Where WebDAV names the failed precondition (RFC 4918
section 16), the body is the ``DAV:error`` element clients look for, the reason in its
``DAV:responsedescription``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from http import client

from radicale import types


def printable(text: str) -> str:
    """``text`` with its control characters escaped (``\\n``, ``\\x00``...): a reason that
    quotes the client stays one line of text wherever it is shown."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def refusal(status: int, reason: str) -> types.WSGIResponse:
    """A refused request: the standard status line, the reason (escaped) in the body
    (bytes: Radicale adds a second charset to a text answer's Content-Type)."""
    headers = {"Content-Type": "text/plain; charset=utf-8"}
    text = f"{status} {client.responses.get(status, '')}: {printable(reason)}\n"
    return status, headers, text.encode("utf-8"), None


def precondition(status: int, element: str, reason: str, encoding: str = "utf-8"
                 ) -> types.WSGIResponse:
    """A refusal naming the failed precondition ``element`` (a Clark name such as
    ``{DAV:}supported-report``), the reason beside it."""
    error = ET.Element("{DAV:}error")
    ET.SubElement(error, element)
    ET.SubElement(error, "{DAV:}responsedescription").text = printable(reason)
    body = ET.tostring(error, encoding=encoding, xml_declaration=True)
    return status, {"Content-Type": f"text/xml; charset={encoding}"}, body, None
