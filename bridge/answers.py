"""Refusals as gestan-bridge answers them: the standard status line, the reason in the body.

A reason may quote what the client sent (a UID, a zone): it is escaped into one line of
text, and never reaches the status line or a header (CR/LF there is header injection)."""

from __future__ import annotations

from http import client

from radicale import types


def printable(text: str) -> str:
    """``text`` with its control characters escaped (``\\n``, ``\\x00``...): a reason that
    quotes the client stays one line of text wherever it is shown."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def refusal(status: int, reason: str) -> types.WSGIResponse:
    """A refused request: the standard status line, the reason (escaped) in the body."""
    headers = {"Content-Type": "text/plain; charset=utf-8"}
    return (status, headers,
            f"{status} {client.responses.get(status, '')}: {printable(reason)}\n", None)
